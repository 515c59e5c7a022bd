"""Inputs that fuzzing (issue 7) found crashing the analyzer, kept as regression tests.

Each is rebuilt here from its essence rather than stored as a mutated file:
the test says what about the input was hostile.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

from netdiag.analysis.analyze import analyze_file


def pcapng_block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


def pcapng(frames: list[tuple[int, bytes]]) -> bytes:
    """One section, one Ethernet interface (microsecond timestamps), one EPB per frame."""
    data = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    data += pcapng_block(1, struct.pack("<HHI", 1, 0, 0))
    for stamp, frame in frames:
        header = struct.pack("<IIIII", 0, stamp >> 32, stamp & 0xFFFFFFFF, len(frame), len(frame))
        data += pcapng_block(6, header + frame)
    return data


def handshake_and_data(stamps: list[int]) -> list[tuple[int, bytes]]:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    ether = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    client = IP(src="10.0.2.0", dst="10.0.1.0")
    server = IP(src="10.0.1.0", dst="10.0.2.0")
    packets = [
        ether / client / TCP(sport=40000, dport=80, flags="S", seq=0),
        ether / server / TCP(sport=80, dport=40000, flags="SA", seq=0, ack=1),
        ether / client / TCP(sport=40000, dport=80, flags="A", seq=1, ack=1),
        ether / client / TCP(sport=40000, dport=80, flags="PA", seq=1, ack=1) / b"data",
        ether / server / TCP(sport=80, dport=40000, flags="A", seq=1, ack=5),
    ]
    return [(stamp, bytes(packet)) for stamp, packet in zip(stamps, packets, strict=True)]


def test_an_ack_stamped_centuries_later(tmp_path: Path) -> None:
    """An RTT beyond int64 nanoseconds (the ACK at 2**62 µs) raised OverflowError."""
    capture = tmp_path / "far-future-ack.pcapng"
    capture.write_bytes(pcapng(handshake_and_data([0, 1, 2, 3, 2**62])))
    (stream,) = analyze_file(capture).tcp
    assert stream.bytes_c2s == 4
    assert stream.rtt_ms is not None and stream.rtt_ms.samples >= 1
    result = subprocess.run(
        [sys.executable, "-m", "netdiag", "analyze", str(capture), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert json.loads(result.stdout)["tcp"][0]["packets"] == 5
