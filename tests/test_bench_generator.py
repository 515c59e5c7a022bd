"""The benchmark's capture generator (bench/gen.py) writes what it claims.

The benchmark's figures are only worth something if its input is a valid,
reproducible trace: the same seed gives the same bytes, dpkt reads every record
with consistent IP and TCP lengths, and tshark (where installed) reads the file
and sees as many TCP conversations as the generator's sidecar says. No timing here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

from tests.helpers import BENCH_GENERATOR, load_bench_generator

PACKETS = 2000

gen = load_bench_generator()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    path = tmp_path_factory.mktemp("gen") / "small.pcap"
    sidecar = gen.generate(path, PACKETS, seed=7)
    return path, sidecar


def test_same_seed_gives_same_bytes(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "c.pcap"
    gen.generate(first, PACKETS, seed=11)
    gen.generate(second, PACKETS, seed=11)
    gen.generate(other, PACKETS, seed=12)
    assert _sha256(first) == _sha256(second)
    assert _sha256(first) != _sha256(other)
    assert Path(f"{first}.gen.json").read_text() == Path(f"{second}.gen.json").read_text()


def test_command_line_writes_file_and_sidecar(tmp_path: Path) -> None:
    out = tmp_path / "cli.pcap"
    subprocess.run(
        [
            sys.executable,
            str(BENCH_GENERATOR),
            "--packets",
            "500",
            "--out",
            str(out),
            "--seed",
            "3",
        ],
        check=True,
        capture_output=True,
    )
    sidecar = json.loads(Path(f"{out}.gen.json").read_text())
    assert sidecar["packets"] == 500
    assert sidecar["seed"] == 3
    assert out.stat().st_size > 24 + 500 * 16


def test_sidecar_is_consistent(capture: tuple[Path, dict[str, object]]) -> None:
    _, sidecar = capture
    assert sidecar["packets"] == PACKETS
    by_end = sidecar["tcp_conversations_by_planned_end"]
    assert isinstance(by_end, dict)
    assert sum(by_end.values()) == sidecar["tcp_conversations"]
    assert isinstance(sidecar["tcp_conversations"], int)
    assert sidecar["tcp_conversations"] > 10


def test_dpkt_reads_every_record_with_valid_headers(
    capture: tuple[Path, dict[str, object]],
) -> None:
    path, sidecar = capture
    count = 0
    tcp_count = 0
    ipv6_count = 0
    previous_ts = 0.0
    syn_endpoints: set[tuple[bytes, int, bytes, int]] = set()
    with path.open("rb") as handle:
        reader = dpkt.pcap.Reader(handle)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        for timestamp, buffer in reader:
            count += 1
            assert timestamp >= previous_ts, f"record {count} goes back in time"
            previous_ts = timestamp
            ethernet = dpkt.ethernet.Ethernet(buffer)
            ip = ethernet.data
            if isinstance(ip, dpkt.ip.IP):
                assert ip.v == 4 and ip.hl == 5
                assert ip.len == len(buffer) - 14
                transport_length = ip.len - 20
            else:
                assert isinstance(ip, dpkt.ip6.IP6)
                ipv6_count += 1
                assert ip.plen == len(buffer) - 54
                transport_length = ip.plen
            segment = ip.data
            if isinstance(segment, dpkt.tcp.TCP):
                tcp_count += 1
                header_length = segment.off * 4
                assert 20 <= header_length <= transport_length
                assert len(segment.data) == transport_length - header_length
                if segment.flags & dpkt.tcp.TH_SYN and not segment.flags & dpkt.tcp.TH_ACK:
                    syn_endpoints.add((ip.src, segment.sport, ip.dst, segment.dport))
                    options = dict(dpkt.tcp.parse_opts(segment.opts))
                    assert struct.unpack("!H", options[dpkt.tcp.TCP_OPT_MSS])[0] == 1460
                    assert dpkt.tcp.TCP_OPT_SACKOK in options
                    assert dpkt.tcp.TCP_OPT_WSCALE in options
                    assert dpkt.tcp.TCP_OPT_TIMESTAMP in options
            else:
                assert isinstance(segment, dpkt.icmp.ICMP | dpkt.icmp6.ICMP6)
    assert count == PACKETS
    assert tcp_count > PACKETS * 0.9
    assert ipv6_count == sidecar["ipv6_frames"]
    # Every conversation starts with a SYN from the client, on its own 4-tuple.
    assert len(syn_endpoints) == sidecar["tcp_conversations"]


@pytest.mark.parametrize("file_format", ["pcap-ns", "pcapng", "pcapng-ns"])
def test_other_formats_hold_the_same_frames(tmp_path: Path, file_format: str) -> None:
    plain = tmp_path / "plain.pcap"
    other = tmp_path / f"other.{file_format}"
    gen.generate(plain, 300, seed=5)
    gen.generate(other, 300, seed=5, file_format=file_format)
    with plain.open("rb") as handle:
        expected = [(ts, bytes(buffer)) for ts, buffer in dpkt.pcap.Reader(handle)]
    with other.open("rb") as handle:
        reader_class = dpkt.pcapng.Reader if file_format.startswith("pcapng") else dpkt.pcap.Reader
        found = [(ts, bytes(buffer)) for ts, buffer in reader_class(handle)]
    assert [buffer for _, buffer in found] == [buffer for _, buffer in expected]
    # Same instants to the microsecond (the -ns forms keep the nanoseconds too).
    assert all(
        abs(float(got) - want) < 2e-6 for (got, _), (want, _) in zip(found, expected, strict=True)
    )


def _tshark_conversations(path: Path) -> int:
    result = subprocess.run(
        ["tshark", "-n", "-q", "-z", "conv,tcp", "-r", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return sum(1 for line in result.stdout.splitlines() if "<->" in line)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_it_and_counts_the_same_conversations(
    capture: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    path, sidecar = capture
    assert _tshark_conversations(path) == sidecar["tcp_conversations"]
    pcapng = tmp_path / "small.pcapng"
    ng_sidecar = gen.generate(pcapng, PACKETS, seed=7, file_format="pcapng-ns")
    assert ng_sidecar["tcp_conversations"] == sidecar["tcp_conversations"]
    frames = subprocess.run(
        ["tshark", "-n", "-r", str(pcapng), "-T", "fields", "-e", "frame.number"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(frames) == PACKETS
    assert _tshark_conversations(pcapng) == sidecar["tcp_conversations"]
