"""One file split by conversation over processes (analysis/shares.py): the one pass's result.

``analyze_in_shares`` is compared with ``analyze_file(plot_data=False)``, the
whole ``Analysis`` (every record, the findings, the totals, the ack_rtt
statistics): on every corpus capture, with records in memory and with every
record spilled and every conversation retired at each packet; on the bench
generator's capture (thousands of conversations, retransmissions, SACK, zero
windows, echo sessions); and on a capture made here with ICMP errors quoting
conversations of every share, reused ports and IPv6. Then through the CLI:
``--jobs 2`` on a file above the threshold writes the same JSON as ``--jobs 1``.
"""

from __future__ import annotations

import json
import os
import random
import struct
from array import array
from collections import Counter
from pathlib import Path

import pytest

from netdiag.analysis import shares as shares_module
from netdiag.analysis.analyze import analyze_file
from netdiag.analysis.packet import packed_endpoints
from netdiag.analysis.shares import (
    MAX_SHARES,
    SHARE_MIN_BYTES,
    ShareResult,
    analyze_in_shares,
    follow_share,
    plot_cut,
    shares_for,
)
from netdiag.analysis.store import SPILL_AFTER_VARIABLE
from netdiag.analysis.tcp import MAX_POINTS_TOTAL, conversation_share
from netdiag.errors import AnalysisProcessError, NetdiagError, OutputError
from tests.conftest import corpus_files
from tests.helpers import interrupt_at_moments, load_bench_generator, netdiag, reading
from tests.test_tcp import T0_NS, ipv4_tcp, write_pcap

CORPUS = corpus_files()
ACK, PSH, SYN, FIN = 0x10, 0x08, 0x02, 0x01
HOSTS = [bytes([10, 0, 1, n]) for n in range(1, 7)]
ROUTER = bytes([10, 0, 9, 1])


def assert_same_as_one_pass(path: Path, shares: int, plot_data: bool = False) -> None:
    single = analyze_file(path, plot_data=plot_data)
    split = analyze_in_shares(path, shares, plot_data)
    assert split.tcp == single.tcp
    assert split.icmp_errors == single.icmp_errors
    assert split.findings == single.findings
    assert split == single
    assert split.to_json() == single.to_json()


@pytest.mark.parametrize("spill_after", [None, "0"], ids=["in-memory", "spilled"])
@pytest.mark.parametrize("capture", CORPUS, ids=[path.name for path in CORPUS])
def test_corpus_captures_split_in_shares_equal_one_pass(
    capture: Path, spill_after: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if spill_after is not None:
        monkeypatch.setenv(SPILL_AFTER_VARIABLE, spill_after)
    try:
        analyze_file(capture, plot_data=False)
    except NetdiagError:
        pytest.skip("not a capture the reader opens")
    assert_same_as_one_pass(capture, 2)


def icmp_unreachable(source: bytes, destination: bytes, quoted: bytes) -> bytes:
    """An ICMP port/host unreachable from ``source`` quoting a packet's first 28 bytes."""
    message = struct.pack("!BBHI", 3, 1, 0, 0) + quoted[:28]
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(message), 7, 0, 64, 1, 0, source, destination
    )
    return header + message


def many_conversations(seed: int) -> list[tuple[int, bytes]]:
    """Interleaved conversations between a few hosts, some of them quoted by ICMP errors."""
    pick = random.Random(seed)
    frames: list[tuple[int, bytes]] = []
    for index in range(120):
        client, server = pick.sample(HOSTS, 2)
        # Few client ports: some 4-tuples come back with a new SYN (reused ports).
        endpoint_c = (client, pick.choice([40000, 40001, 40002, 50000 + index]))
        endpoint_s = (server, pick.choice([443, 7096]))
        now = T0_NS + pick.randrange(0, 5_000_000_000)
        isn_c, isn_s = pick.randrange(2**32), pick.randrange(2**32)
        syn = ipv4_tcp(endpoint_c, endpoint_s, SYN, isn_c, 0, 64240, b"")
        frames.append((now, syn))
        if pick.random() < 0.15:
            frames.append((now + 1000, icmp_unreachable(ROUTER, client, syn)))
            continue
        frames.append(
            (
                now + 100_000,
                ipv4_tcp(endpoint_s, endpoint_c, SYN | ACK, isn_s, isn_c + 1, 65160, b""),
            )
        )
        seq, ack = isn_c + 1, isn_s + 1
        frames.append((now + 200_000, ipv4_tcp(endpoint_c, endpoint_s, ACK, seq, ack, 502, b"")))
        for round_ in range(pick.randrange(0, 6)):
            now += pick.choice([300_000, 1_000_000, 40_000_000])
            payload = bytes(pick.randrange(1, 200))
            segment = ipv4_tcp(endpoint_c, endpoint_s, PSH | ACK, seq, ack, 502, payload)
            frames.append((now, segment))
            if pick.random() < 0.1:
                frames.append((now + 50, segment))  # a retransmission
            if pick.random() < 0.1:
                frames.append((now + 70, icmp_unreachable(ROUTER, client, segment)))
            seq += len(payload)
            frames.append((now + 90_000, ipv4_tcp(endpoint_s, endpoint_c, ACK, ack, seq, 509, b"")))
            if round_ == 2 and pick.random() < 0.3:
                break
        else:
            now += 1_000_000
            frames.append((now, ipv4_tcp(endpoint_c, endpoint_s, FIN | ACK, seq, ack, 502, b"")))
    frames.sort(key=lambda frame: frame[0])
    return frames


@pytest.mark.parametrize("shares", [2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_many_conversations_and_quoting_errors_equal_one_pass(
    tmp_path: Path, seed: int, shares: int
) -> None:
    path = tmp_path / f"conversations-{seed}.pcap"
    write_pcap(path, many_conversations(seed))
    single = analyze_file(path, plot_data=False)
    # What the comparison rests on: errors quoting conversations of every share,
    # and streams in every share.
    quoted = [error.stream for error in single.icmp_errors if error.stream is not None]
    assert len(quoted) >= 5
    owners = Counter(
        conversation_share(
            packed_endpoints(
                bytes(map(int, stream.client.split(":")[0].split("."))),
                int(stream.client.split(":")[1]),
                bytes(map(int, stream.server.split(":")[0].split("."))),
                int(stream.server.split(":")[1]),
            ),
            shares,
        )
        for stream in single.tcp
    )
    assert len(owners) == shares and min(owners.values()) >= 5
    assert_same_as_one_pass(path, shares)


@pytest.mark.parametrize("spill_after", [None, "0"], ids=["in-memory", "spilled"])
def test_bench_capture_split_in_shares_equals_one_pass(
    tmp_path: Path, spill_after: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if spill_after is not None:
        monkeypatch.setenv(SPILL_AFTER_VARIABLE, spill_after)
    path = tmp_path / "bench.pcap"
    load_bench_generator("bench_gen_for_shares").generate(path, 30_000, seed=5)
    single = analyze_file(path, plot_data=False)
    assert len(single.tcp) > 200 and single.ack_rtt_count > 1000
    assert sum(single.tcp_analysis_totals.values()) > 0
    assert_same_as_one_pass(path, 2)


@pytest.mark.parametrize("capture", CORPUS, ids=[path.name for path in CORPUS])
def test_corpus_plot_points_split_in_shares_equal_one_pass(capture: Path) -> None:
    try:
        analyze_file(capture, plot_data=False)
    except NetdiagError:
        pytest.skip("not a capture the reader opens")
    assert_same_as_one_pass(capture, 2, plot_data=True)


@pytest.mark.parametrize("shares", [2, 3])
def test_plot_points_cut_where_one_pass_cuts_them(tmp_path: Path, shares: int) -> None:
    """More plot points than MAX_POINTS_TOTAL: the shares together keep more, and
    the merge must keep exactly the first ones of the file, as one pass does,
    here where the cut falls between a frame's RTT sample and its point."""
    path = tmp_path / "bench.pcap"
    # Seed 15: the cap is reached at the RTT sample of a frame that also has a point.
    load_bench_generator("bench_gen_for_plot_cut").generate(path, 90_000, seed=15)
    single = analyze_file(path, plot_data=True)
    kept = sum(len(stream.seq_points) + len(stream.rtt_samples) for stream in single.tcp)
    assert kept == MAX_POINTS_TOTAL  # the file has more: one pass stopped at the cap
    results = [follow_share(str(path), share, shares, True) for share in range(shares)]
    cut = plot_cut(results)
    assert cut is not None and cut.taken == 1
    assert max(array("q", result.plot_frames).count(cut.frame) for result in results) == 2
    split = analyze_in_shares(path, shares, plot_data=True)
    assert [stream.seq_points for stream in split.tcp] == [
        stream.seq_points for stream in single.tcp
    ]
    assert [stream.rtt_samples for stream in split.tcp] == [
        stream.rtt_samples for stream in single.tcp
    ]
    assert split == single


def test_small_files_stay_in_one_process(tmp_path: Path) -> None:
    small = tmp_path / "small.pcap"
    write_pcap(small, many_conversations(0))
    assert shares_for(small, 2) == 1
    big = tmp_path / "big.pcap"
    with open(big, "wb") as handle:
        handle.truncate(SHARE_MIN_BYTES)  # sparse: no disk used
    assert shares_for(big, 2) == 2
    assert shares_for(big, 64) == 2  # one share more per SHARE_MIN_BYTES
    assert shares_for(big, 1) == 1
    huge = tmp_path / "huge.pcap"
    with open(huge, "wb") as handle:
        handle.truncate(100 * SHARE_MIN_BYTES)
    assert shares_for(huge, 3) == 3
    assert shares_for(huge, 64) == MAX_SHARES
    assert shares_for(tmp_path / "missing.pcap", 2) == 1


def test_cli_jobs_on_one_big_file_writes_the_same_json(tmp_path: Path) -> None:
    path = tmp_path / "big.pcap"
    frames = many_conversations(7)
    # Repeated with later timestamps until past the threshold: the same
    # endpoints come back, so streams are revived and ports reused.
    span = frames[-1][0] - frames[0][0] + 1_000_000_000
    size = sum(16 + 14 + len(packet) for _ts, packet in frames)
    copies = SHARE_MIN_BYTES // size + 1
    write_pcap(
        path,
        [(ts + copy * span, packet) for copy in range(copies) for ts, packet in frames],
    )
    assert shares_for(path, 2) == 2
    one = netdiag("analyze", str(path), "--json", "--jobs", "1")
    two = netdiag("analyze", str(path), "--json", "--jobs", "2")
    assert one.returncode == two.returncode == 0, two.stderr
    assert two.stdout == one.stdout
    assert '"icmp_errors": [' in one.stdout and '"stream": 1' in one.stdout


@pytest.fixture(scope="module")
def big_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("interrupts") / "big.pcap"
    load_bench_generator("bench_gen_for_interrupts").generate(path, 150_000, seed=9)
    assert shares_for(path, 2) == 2
    return path


def test_ctrl_c_during_the_analysis_ends_every_process_with_130(big_capture: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) at moments
    through the pass, the merge and the JSON: exit 130 with netdiag's one line, never
    an abort (mypyc once turned a KeyboardInterrupt inside CPython's multiplication
    into "fatal: out of memory"), and no process of the group left behind."""
    interrupted = interrupt_at_moments(
        ["analyze", str(big_capture), "--json", "--jobs", "2"],
        lambda pid: reading(pid, big_capture),  # until the pass has begun
        (0.0, 0.05, 0.1, 0.2, 0.3, 0.45),
        lambda stdout: json.loads(stdout)["file"]["packets"] == 150_000,
    )
    assert interrupted >= 3


def test_an_error_in_a_share_is_raised_by_the_first_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "conversations.pcap"
    write_pcap(path, many_conversations(1))

    def fails(path: str, share: int, shares: int, plot_data: bool) -> ShareResult:
        raise OutputError(f"share {share} of {shares} cannot spill", "free some space")

    monkeypatch.setattr(shares_module, "follow_share", fails)  # the forked child's too
    with pytest.raises(OutputError) as raised:
        analyze_in_shares(path, 2, plot_data=False)
    assert (raised.value.message, raised.value.advice) == (
        "share 1 of 2 cannot spill",
        "free some space",
    )


def test_a_share_process_that_dies_is_an_environment_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "conversations.pcap"
    write_pcap(path, many_conversations(1))

    def dies(path: str, share: int, shares: int, plot_data: bool) -> ShareResult:
        os._exit(9)  # as if the kernel's OOM killer had taken it

    monkeypatch.setattr(shares_module, "follow_share", dies)
    with pytest.raises(AnalysisProcessError, match="exit code 9"):
        analyze_in_shares(path, 2, plot_data=False)
