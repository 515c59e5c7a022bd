"""Floods of unanswered echo requests: bounded memory, the same pairs (issue 6).

``IcmpTracker`` retires requests that wait too long (or too many) to a store
and a ``DiskIndex`` (analysis/icmp.py, analysis/diskindex.py); a late reply
revives them. Whatever the thresholds, the echoes (in their order), the
unmatched replies and the findings must be those of the in-memory path, and
the pairs those of tshark. The captures come from bench/echo_flood.py: many
unanswered requests over IPv4 and IPv6, replies a millisecond and seconds
later, requests and replies sent twice, sequence numbers used again.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
from array import array
from pathlib import Path

import pytest

from netdiag.analysis.analyze import analyze_file
from netdiag.analysis.decode import Decoder
from netdiag.analysis.diskindex import DiskIndex
from netdiag.analysis.icmp import (
    LARGE_ORDER_COUNT,
    RETIRE_IDLE_NS,
    ArpTracker,
    IcmpTracker,
    _frame_order,
)
from netdiag.analysis.model import Analysis
from netdiag.analysis.reader import CaptureReader
from netdiag.analysis.scan import scan_frames
from netdiag.analysis.store import SPILL_AFTER_VARIABLE, SpilledRecords
from netdiag.analysis.tcp import TcpTracker
from netdiag.report import json_text, report_document
from netdiag.report.jsonstream import write_analyses_json
from tests.helpers import BENCH_GENERATOR, load_bench_generator
from tests.test_fast_path import _corpus_results
from tests.test_icmp import A, B, C, echo, icmp_error
from tests.test_tcp import T0_NS

TSHARK = shutil.which("tshark")
HORIZON_MS = RETIRE_IDLE_NS / 1e6
IN_MEMORY = 10**9


echo_flood = load_bench_generator("bench_echo_flood", BENCH_GENERATOR.parent / "echo_flood.py")


def flood_capture(path: Path, requests: int, seed: int, late_after_s: float = 3.0) -> Path:
    """``requests`` echo requests from 18 hosts at 1,000 a second (~1 % answered)."""
    frames = echo_flood.flood_frames(
        requests, seed, rate=1000.0, hosts=16, late_after_ns=round(late_after_s * 1e9)
    )
    echo_flood.write_pcap(path, frames)
    return path


def tracker_results(
    path: Path, retire_after: int, max_pending: int = IN_MEMORY
) -> tuple[list[object], object, int]:
    """The echoes, unmatched replies and revivals of one pass with these thresholds."""
    icmp = IcmpTracker(retire_after, retire_after, max_pending)
    with CaptureReader(path) as reader:
        origin_ns = scan_frames(reader, Decoder(), TcpTracker(False), icmp, ArpTracker())
    echoes = icmp.echoes(origin_ns or 0)
    return list(echoes), icmp.unmatched_replies(), icmp.revived


@pytest.mark.parametrize("seed", [1, 2])
def test_flood_pairs_the_same_whatever_the_thresholds(tmp_path: Path, seed: int) -> None:
    path = flood_capture(tmp_path / f"flood-{seed}.pcap", 6000, seed)
    expected, expected_unmatched, revived = tracker_results(path, IN_MEMORY)
    assert revived == 0
    answered = [echo for echo in expected if echo.frame_rep is not None]
    late = [echo for echo in answered if echo.rtt_ms is not None and echo.rtt_ms > HORIZON_MS]
    # One record per request, those sent twice included.
    assert 6000 < len(expected) < 6100 and len(answered) > 50 and len(late) > 5
    assert {echo.family for echo in expected} == {"icmp", "icmpv6"}
    assert [echo.frame_req for echo in expected] == sorted(echo.frame_req for echo in expected)
    assert expected_unmatched  # the duplicate replies
    # 0: every waiting request retired before every echo, so every reply goes
    # through the index; 3 and 40: those idle at a scan (every 4,096 echoes);
    # max_pending: the oldest too, idle or not.
    for retire_after, max_pending in ((0, IN_MEMORY), (3, IN_MEMORY), (40, IN_MEMORY), (40, 100)):
        echoes, unmatched, revived = tracker_results(path, retire_after, max_pending)
        assert echoes == expected, (retire_after, max_pending)
        assert unmatched == expected_unmatched, (retire_after, max_pending)
        if retire_after == 0:
            assert revived == len(answered)
        else:
            assert 0 < revived < len(answered), (retire_after, max_pending)


def test_retired_requests_pair_as_waiting_ones_do() -> None:
    """The corner cases by hand: late, repeated and replaced requests, repeated replies."""
    late_ms = 3 * HORIZON_MS
    packets = [
        echo(1, 0.0, A, B, 8, seq=1),
        echo(2, 1.0, A, B, 8, seq=2),
        echo(3, 2.0, A, B, 8, seq=3),
        echo(4, 3.0, A, C, 8, seq=1),
        echo(5, late_ms, B, A, 0, seq=1),  # long after its request: answers frame 1
        echo(6, late_ms + 1, B, A, 0, seq=1),  # again: answers nothing
        echo(7, late_ms + 2, A, B, 8, seq=2),  # replaces frame 2 (retired by now)
        echo(8, late_ms + 3, B, A, 0, seq=2),  # answers frame 7, not 2
        echo(9, late_ms + 4, B, A, 0, seq=2),  # answers nothing: 7 is answered
        echo(10, 2 * late_ms, A, B, 8, seq=3),  # replaces frame 3, itself retired later
        echo(11, 4 * late_ms, B, A, 0, seq=3),  # answers frame 10
        echo(12, 4 * late_ms, C, A, 0, seq=1, payload=b"pong"),  # another payload
        echo(13, 4 * late_ms + 1, C, A, 0, seq=1),  # answers frame 4, much later
    ]
    expected_pairs = [
        (1, 5),
        (2, None),
        (3, None),
        (4, 13),
        (7, 8),
        (10, 11),
    ]
    results = []
    for spill_after in (IN_MEMORY, 0):
        tracker = IcmpTracker(spill_after=spill_after)
        for packet in packets:
            tracker.process(packet)
        echoes = list(tracker.echoes(T0_NS))
        assert [(e.frame_req, e.frame_rep) for e in echoes] == expected_pairs, spill_after
        results.append((echoes, tracker.unmatched_replies()))
        # 0 retires every waiting request before every echo: each pair was revived.
        assert tracker.revived == (0 if spill_after else 4)
    assert results[0] == results[1]
    unmatched = results[0][1]
    assert sorted(frame for group in unmatched for frame in group.frames) == [6, 9, 12]


def test_a_second_reply_does_not_reach_an_older_retired_request() -> None:
    """Retired at a scan, then asked again and answered in memory: the retired one stays out.

    A scan comes every 4,096 echoes unless the threshold is 0 (which retires
    every request before every echo, so that the newer one would be retired
    too): 4,096 replies from another host bring one.
    """
    filler = [echo(frame, 3000.0, C, A, 0, seq=frame) for frame in range(3, 4099)]
    packets = [
        echo(1, 0.0, A, B, 8, seq=1),
        echo(2, 0.0, A, C, 8, seq=2),
        *filler,  # the scan at the last one retires frames 1 and 2 (idle, two > one)
        echo(4099, 3001.0, A, B, 8, seq=1),  # the same request again, in memory
        echo(4100, 3002.0, B, A, 0, seq=1),  # answers frame 4099
        echo(4101, 3003.0, B, A, 0, seq=1),  # answers nothing: tshark finds 4099, answered
    ]
    results = []
    for retire_after in (IN_MEMORY, 1):
        tracker = IcmpTracker(retire_after=retire_after)
        for packet in packets:
            tracker.process(packet)
        echoes = [(e.frame_req, e.frame_rep) for e in tracker.echoes(T0_NS)]
        assert echoes == [(1, None), (2, None), (4099, 4100)], retire_after
        unmatched = {(r.replier, r.requester): r for r in tracker.unmatched_replies()}
        assert unmatched[("10.0.2.1", "10.0.1.1")].frames == (4101,), retire_after
        assert tracker.revived == 0
        results.append((echoes, tracker.unmatched_replies()))
    assert results[0] == results[1]


def _analysis(path: Path, spill_after: int, monkeypatch: pytest.MonkeyPatch) -> Analysis:
    monkeypatch.setenv(SPILL_AFTER_VARIABLE, str(spill_after))
    return analyze_file(path)


def test_flood_analysis_and_json_are_the_same_spilled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = flood_capture(tmp_path / "flood.pcap", 4000, 3)
    memory = _analysis(path, IN_MEMORY, monkeypatch)
    spilled = _analysis(path, 0, monkeypatch)
    assert isinstance(memory.icmp_echo, tuple) and isinstance(spilled.icmp_echo, SpilledRecords)
    assert list(spilled.icmp_echo) == list(memory.icmp_echo)
    assert spilled.icmp_echo_summary == memory.icmp_echo_summary
    assert list(spilled.findings) == list(memory.findings)
    assert spilled == memory
    out = io.StringIO()
    write_analyses_json([spilled], out)
    assert out.getvalue() == json_text(report_document([memory]))


def tshark_echo_pairs(path: Path) -> tuple[dict[tuple[int, int], float], set[int]]:
    """tshark's (request, reply) -> RTT in ms, ICMP and ICMPv6, and its unmatched replies."""
    assert TSHARK is not None
    fields = []
    for name in ("frame.number", "icmp.resp_to", "icmpv6.resp_to", "icmp.resptime"):
        fields += ["-e", name]
    for name in ("icmpv6.resptime", "icmp.type", "icmpv6.type"):
        fields += ["-e", name]
    output = subprocess.run(
        [TSHARK, "-n", "-r", str(path), "-T", "fields", *fields],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pairs = {}
    unmatched = set()
    for line in output.splitlines():
        frame, request, request6, rtt, rtt6, icmp_type, icmp6_type = line.split("\t")
        if request or request6:
            pairs[(int(request or request6), int(frame))] = float(rtt or rtt6)
        elif icmp_type == "0" or icmp6_type == "129":
            unmatched.add(int(frame))
    return pairs, unmatched


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (cross-check only)")
@pytest.mark.parametrize("seed", [4, 5])
def test_flood_pairs_as_tshark_does(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = flood_capture(tmp_path / f"flood-{seed}.pcap", 8000, seed, late_after_s=5.0)
    expected, expected_unmatched = tshark_echo_pairs(path)
    assert len(expected) > 50 and expected_unmatched
    for spill_after in (0, 40, IN_MEMORY):
        analysis = _analysis(path, spill_after, monkeypatch)
        actual = {(e.frame_req, e.frame_rep): e.rtt_ms for e in analysis.icmp_echo if e.frame_rep}
        assert set(actual) == set(expected), spill_after
        for key, rtt in expected.items():
            assert actual[key] == pytest.approx(rtt, abs=1e-6)
        unmatched = [f for f in analysis.findings if f.code == "icmp.reply-unmatched"]
        assert {frame for finding in unmatched for frame in finding.frames} == expected_unmatched
        assert analysis.icmp_unmatched_replies == len(expected_unmatched)


def test_compiled_flood_gives_the_pure_python_results(tmp_path: Path) -> None:
    """The retiring path through the mypyc build and through pure Python (cf. test_fast_path)."""
    from netdiag.analysis._compiled import fresh_build

    if not fresh_build():
        pytest.skip("no mypyc build of the current sources (make builds one: build_mypyc.py)")
    folder = tmp_path / "floods"
    folder.mkdir()
    flood_capture(folder / "flood.pcap", 3000, 6)
    for spill_after in (None, "0"):
        compiled = _corpus_results(folder, pure_python=False, spill_after=spill_after)
        pure = _corpus_results(folder, pure_python=True, spill_after=spill_after)
        assert compiled["compiled"] is True and pure["compiled"] is False
        assert compiled["files"] == pure["files"]


def _descriptor_targets() -> set[str]:
    targets = set()
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            targets.add(os.readlink(f"/proc/self/fd/{descriptor}"))
        except FileNotFoundError:
            continue
    return targets


def test_disk_index_maps_pops_and_forgets() -> None:
    index = DiskIndex()
    assert index.pop(b"absent") is None
    index.discard(b"absent")  # no database yet: nothing happens
    index.insert_many([(b"a", 1), (b"b", 2), (bytes(40), 3)])
    index.insert_many([(b"a", 7)])  # remapped
    assert index.pop(b"a") == 7
    assert index.pop(b"a") is None
    index.discard(b"b")
    assert index.pop(b"b") is None
    assert index.pop(bytes(40)) == 3
    index.close()
    assert index.pop(b"c") is None


def test_disk_index_file_has_no_name_and_goes_with_it() -> None:
    def key(value: int) -> bytes:
        return bytes([value % 251]) * 36 + value.to_bytes(4, "big")

    before = _descriptor_targets()
    index = DiskIndex()
    count = 150_000  # ~6 MB of keys: past SQLite's page cache, so on disk
    index.insert_many((key(value), value) for value in range(count))
    opened = _descriptor_targets() - before
    assert opened and all(target.endswith("(deleted)") for target in opened)
    assert [index.pop(key(value)) for value in (0, 77_777, count - 1)] == [0, 77_777, count - 1]
    assert index.pop(key(77_777)) is None
    index.close()
    assert _descriptor_targets() - before == set()


@pytest.mark.parametrize(
    ("count", "spread"),
    [
        (1000, 3),  # sorted()
        (LARGE_ORDER_COUNT + 1000, 1.02),  # one array of slots, as in a flood
        (LARGE_ORDER_COUNT + 1000, 10),  # five windows of slots
        (LARGE_ORDER_COUNT + 1000, 40),  # too sparse: sorted()
    ],
)
def test_rows_are_ordered_by_request_frame_without_the_dropped_ones(
    count: int, spread: float
) -> None:
    """The order sorted() gives, whatever the way taken."""
    generator = random.Random(count)
    frames = array("q", generator.sample(range(1, round(spread * count)), count))
    for position in generator.sample(range(count), count // 10):
        frames[position] = -1  # rows dropped when their request was revived
    expected = sorted((p for p in range(count) if frames[p] >= 0), key=frames.__getitem__)
    assert list(_frame_order([array("q", frames)])) == expected


def test_a_tracker_left_without_echoes_keeps_the_errors() -> None:
    """What a share other than the first runs (shares.py): the same errors, no echoes."""
    packets = [
        echo(1, 0.0, A, B, 8),
        icmp_error(2, 3, 1, (A, B, 17, 5000, 53)),
        echo(3, 1.0, B, A, 0),
        echo(4, 2.0, C, A, 0),
        icmp_error(5, 11, 0, (A, C, 6, 40000, 80)),
    ]
    results = []
    for track_echoes in (True, False):
        tracker = IcmpTracker(track_echoes=track_echoes)
        for packet in packets:
            tracker.process(packet)
        results.append((tracker.echoes(T0_NS), tracker.unmatched_replies(), tracker.errors()))
    (echoes, unmatched, errors), (no_echoes, no_unmatched, same_errors) = results
    assert [(e.frame_req, e.frame_rep) for e in echoes] == [(1, 3)] and len(unmatched) == 1
    assert tuple(no_echoes) == () and no_unmatched == ()
    assert [error.frame for error in errors] == [2, 5]
    assert same_errors == errors
