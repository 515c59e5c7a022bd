"""The run's capture-complete step, on captures written here (no namespaces).

The step compares what the traffic steps saw (scapy's answered requests, the
message the server read, the bulk bytes) with what the capture holds. What it
says when they differ is what a user (or CI) has to go on, so it names the
echoes that went unpaired.
"""

from __future__ import annotations

from pathlib import Path

from netdiag.analysis.analyze import analyze_file
from netdiag.analysis.packet import ACK, FIN, PSH, SYN
from netdiag.experiment.model import PingResult, TcpExchange
from netdiag.experiment.runner import ExperimentRunner, RunOptions
from netdiag.topology.loader import load_topology
from tests.test_icmp import echo_bytes
from tests.test_tcp import T0_NS, ipv4_tcp, write_pcap

NS1 = bytes([10, 0, 1, 0])
NS2 = bytes([10, 0, 2, 0])
IDENTIFIER = 0x4321


def runner_after_pings(tmp_path: Path, received: int) -> ExperimentRunner:
    runner = ExperimentRunner(load_topology(None), RunOptions(count=3, out=tmp_path))
    runner.progress.pings.append(
        PingResult(
            from_ns="ns2", to="10.0.1.0", sent=3, received=received, loss_pct=0.0, rtt_ms=None
        )
    )
    runner.progress.echo_identifiers.append(IDENTIFIER)
    return runner


def capture(tmp_path: Path, replies_to: tuple[int, ...]) -> Path:
    frames = []
    for seq in (1, 2, 3):
        frames.append((T0_NS + seq * 1000, echo_bytes(NS2, NS1, 8, IDENTIFIER, seq, b"ping")))
        if seq in replies_to:
            frames.append(
                (T0_NS + seq * 1000 + 10, echo_bytes(NS1, NS2, 0, IDENTIFIER, seq, b"ping"))
            )
    path = tmp_path / "veth0.pcap"
    write_pcap(path, frames)
    return path


def test_every_echo_captured_holds(tmp_path: Path) -> None:
    runner = runner_after_pings(tmp_path, received=3)
    ok, detail = runner._completeness(analyze_file(capture(tmp_path, (1, 2, 3))))
    assert ok, detail
    assert "3+3 echoes ns2 -> 10.0.1.0" in detail


def test_a_reply_missing_from_the_capture_is_named(tmp_path: Path) -> None:
    runner = runner_after_pings(tmp_path, received=3)
    ok, detail = runner._completeness(analyze_file(capture(tmp_path, (1, 3))))
    assert not ok
    assert "3/3 requests and 2/3 replies captured" in detail
    assert "no reply paired with seq 2 (frame 3)" in detail


def conversation(
    client_port: int, segments: list[tuple[int, int]], t0_ns: int
) -> list[tuple[int, bytes]]:
    """Handshake, the client's data segments (offset, length) as given, FINs both ways."""
    client, server = (NS2, client_port), (NS1, 7096)
    c_isn, s_isn = 1000, 5000
    end = max(offset + length for offset, length in segments)
    rows = [
        (client, server, SYN, c_isn, 0, b""),
        (server, client, SYN | ACK, s_isn, c_isn + 1, b""),
        (client, server, ACK, c_isn + 1, s_isn + 1, b""),
    ]
    rows += [
        (client, server, PSH | ACK, c_isn + 1 + offset, s_isn + 1, b"x" * length)
        for offset, length in segments
    ]
    rows += [
        (server, client, ACK, s_isn + 1, c_isn + 1 + end, b""),
        (client, server, FIN | ACK, c_isn + 1 + end, s_isn + 1, b""),
        (server, client, FIN | ACK, s_isn + 1, c_isn + 2 + end, b""),
        (client, server, ACK, c_isn + 2 + end, s_isn + 2, b""),
    ]
    return [
        (t0_ns + index * 1000, ipv4_tcp(source, destination, flags, seq, ack, 65535, payload))
        for index, (source, destination, flags, seq, ack, payload) in enumerate(rows)
    ]


def bulk_exchange(message: str, bulk_bytes: int) -> TcpExchange:
    return TcpExchange(
        from_ns="ns2",
        to="10.0.1.0:7096",
        connected=True,
        message_sent=message,
        message_received=message,
        bulk_bytes=bulk_bytes,
        bulk_verified=True,
    )


def test_bulk_segments_sent_again_after_reordering_still_hold(tmp_path: Path) -> None:
    # What veth did in CI: two segments swapped, TCP sent the later one again.
    message = "this is a test message"
    runner = ExperimentRunner(load_topology(None), RunOptions(out=tmp_path, bulk=3000))
    runner.progress.tcp.append(bulk_exchange(message, 3000))
    bulk = [(0, 1000), (2000, 1000), (1000, 1000), (2000, 1000)]
    frames = conversation(40000, [(0, len(message))], T0_NS)
    frames += conversation(40001, bulk, T0_NS + 10**9)
    path = tmp_path / "veth0.pcap"
    write_pcap(path, frames)
    analysis = analyze_file(path)
    assert analysis.tcp[1].bytes_c2s == 4000  # the copy counts in the bytes sent
    ok, detail = runner._completeness(analysis)
    assert ok, detail
    assert "bulk 3000 bytes" in detail

    runner.progress.tcp[0] = bulk_exchange(message, 4000)
    ok, detail = runner._completeness(analysis)
    assert not ok
    assert "bulk stream: 3000/4000 bytes captured" in detail
