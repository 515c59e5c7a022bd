"""Agreement with tshark 4.0 on every corpus capture (its ``.truth.json``).

Each corpus file is its own test id. Compared: ICMP echo pairs (frames, id,
seq) and RTTs to 0.001 ms, unanswered requests; TCP streams (count, index,
client/server, roles, handshake frames, iRTT, packets, first/last frame,
payload bytes each way, FIN/RST seen); per-stream and whole-file
``tcp.analysis.*`` counts; ``ack_rtt`` count/min/median/max.

Where netdiag deliberately differs, the test says so:

* ``tcpdump__timestamp_invalid_micro.pcap`` stores microsecond fields of
  1000000 and 2147483648. netdiag's reader carries the excess into the
  seconds (so time goes forward: frame 3 lies 2147 s later); tshark keeps the
  fraction as it is and prints frame 3 *before* frame 2, giving negative RTTs.
  Frame-level facts still agree there; times cannot, and are expected to
  differ (strict xfail, so a change in either tool shows up).
* Per-stream ``rtt_ms`` follows Karn's rule (samples from retransmitted
  segments are reported apart in ``karn_excluded``); Wireshark's ``ack_rtt``
  keeps them. The whole-file ``ack_rtt`` totals are compared with tshark, and
  a test checks that kept + excluded Karn samples add up to tshark's count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from netdiag.analysis.analyze import analyze_file
from netdiag.analysis.model import Analysis
from tests.conftest import corpus_files, load_truth

FILES = [path for path in corpus_files() if Path(f"{path}.truth.json").exists()]
IDS = [path.name for path in FILES]

INVALID_TIMESTAMPS = {"tcpdump__timestamp_invalid_micro.pcap"}
INVALID_TIMESTAMPS_REASON = (
    "invalid microsecond fields (>= 1000000): netdiag carries them into the seconds, tshark "
    "keeps them, so times differ by design (frame facts are compared in the other tests)"
)
TOLERANCE_MS = 0.001 + 1e-9

pytestmark = pytest.mark.skipif(not FILES, reason="shared corpus not found beside the project")


@cache
def analysis_of(path: Path) -> Analysis:
    return analyze_file(path)


def times_comparable(path: Path) -> None:
    if path.name in INVALID_TIMESTAMPS:
        pytest.xfail(INVALID_TIMESTAMPS_REASON)


def close(actual: float | None, expected: float | None) -> bool:
    if actual is None or expected is None:
        return actual is expected
    return abs(actual - expected) <= TOLERANCE_MS


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_icmp_echo_pairs_agree(path: Path) -> None:
    truth = load_truth(path)
    answered = [echo for echo in analysis_of(path).icmp_echo if echo.frame_rep is not None]
    actual = sorted((e.frame_req, e.frame_rep, e.id, e.seq) for e in answered)
    expected = sorted(
        (e["frame_req"], e["frame_rep"], e["id"], e["seq"]) for e in truth["icmp_echo"]
    )
    assert actual == expected


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_icmp_echo_rtts_agree(path: Path) -> None:
    times_comparable(path)
    truth = load_truth(path)
    actual = {e.frame_rep: e.rtt_ms for e in analysis_of(path).icmp_echo if e.frame_rep}
    for echo in truth["icmp_echo"]:
        assert close(actual.get(echo["frame_rep"]), echo["rtt_ms"]), echo


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_unanswered_icmp_requests_agree(path: Path) -> None:
    truth = load_truth(path)
    actual = sorted(
        (e.frame_req, e.id, e.seq) for e in analysis_of(path).icmp_echo if e.frame_rep is None
    )
    expected = sorted((e["frame_req"], e["id"], e["seq"]) for e in truth["icmp_echo_unanswered"])
    assert actual == expected


FRAME_FIELDS = (
    ("stream", "stream"),
    ("ip_version", "ip_version"),
    ("client", "client"),
    ("server", "server"),
    ("roles_from", "roles_from"),
    ("syn_frame", "syn_frame"),
    ("synack_frame", "synack_frame"),
    ("ack_frame", "ack_frame"),
    ("packets", "packets"),
    ("first_frame", "first_frame"),
    ("last_frame", "last_frame"),
    ("bytes_c2s", "bytes_client_to_server"),
    ("bytes_s2c", "bytes_server_to_client"),
    ("fin_seen", "fin_seen"),
    ("rst_seen", "rst_seen"),
)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_tcp_streams_agree(path: Path) -> None:
    truth_streams = load_truth(path)["tcp_streams"]
    streams = analysis_of(path).tcp
    assert len(streams) == len(truth_streams)
    for stream, expected in zip(streams, truth_streams, strict=True):
        actual: dict[str, Any] = {
            name: getattr(stream, attribute) for attribute, name in FRAME_FIELDS
        }
        actual["syn_frames"] = list(stream.syn_frames)
        wanted = {name: expected[name] for _, name in FRAME_FIELDS}
        wanted["syn_frames"] = expected["syn_frames"]
        assert actual == wanted, f"stream {stream.stream}"
        # irtt exists exactly when tshark has one (its value is compared below)
        assert (stream.irtt_ms is None) == (expected["irtt_ms"] is None), f"stream {stream.stream}"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_tcp_handshake_times_agree(path: Path) -> None:
    times_comparable(path)
    truth_streams = load_truth(path)["tcp_streams"]
    for stream, expected in zip(analysis_of(path).tcp, truth_streams, strict=True):
        assert close(stream.irtt_ms, expected["irtt_ms"]), f"stream {stream.stream} irtt"
        assert close(stream.syn_to_synack_ms, expected["syn_to_synack_ms"]), stream.stream
        assert close(stream.synack_to_ack_ms, expected["synack_to_ack_ms"]), stream.stream


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_tcp_analysis_counts_agree(path: Path) -> None:
    truth = load_truth(path)
    analysis = analysis_of(path)
    for stream, expected in zip(analysis.tcp, truth["tcp_streams"], strict=True):
        assert stream.analysis == expected["analysis"], f"stream {stream.stream}"
    expected_totals = {
        name: count
        for name, count in truth["tcp_analysis"].items()
        if not name.startswith("ack_rtt")
    }
    assert analysis.tcp_analysis_totals == expected_totals


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_ack_rtt_count_agrees(path: Path) -> None:
    assert analysis_of(path).ack_rtt_count == load_truth(path)["tcp_analysis"]["ack_rtt_count"]


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_ack_rtt_min_median_max_agree(path: Path) -> None:
    times_comparable(path)
    truth = load_truth(path)["tcp_analysis"]
    analysis = analysis_of(path)
    assert close(analysis.ack_rtt_min_ms, truth["ack_rtt_min_ms"])
    assert close(analysis.ack_rtt_median_ms, truth["ack_rtt_median_ms"])
    assert close(analysis.ack_rtt_max_ms, truth["ack_rtt_max_ms"])


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_karn_rule_differs_from_ack_rtt_only_by_the_excluded_samples(path: Path) -> None:
    """Deliberate difference: Karn's rule sets samples of retransmitted segments apart."""
    analysis = analysis_of(path)
    kept = sum(stream.rtt_ms.samples for stream in analysis.tcp)
    excluded = sum(stream.rtt_ms.karn_excluded for stream in analysis.tcp)
    assert kept + excluded == load_truth(path)["tcp_analysis"]["ack_rtt_count"]
    for stream in analysis.tcp:
        if stream.rtt_ms.samples:
            assert stream.rtt_ms.min is not None and stream.rtt_ms.max is not None
            assert stream.rtt_ms.min <= (stream.rtt_ms.median or 0) <= stream.rtt_ms.max


# -- captures made here by the kernel's own TCP stack ------------------------------------


def _connect(namespace: str, family: int, address: str, port: int, timeout: float) -> Any:
    """A client socket made inside ``namespace``; None when the connection failed."""
    import socket

    from netdiag.live.namespaces import inside

    with inside(namespace):
        client = socket.socket(family, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect((address, port))
    except OSError:
        client.close()
        return None
    return client


def _listen(namespace: str, family: int, address: str, port: int, receive_buffer: int = 0) -> Any:
    import socket

    from netdiag.live.namespaces import inside

    with inside(namespace):
        server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if receive_buffer:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    server.bind((address, port))
    server.listen(4)
    server.settimeout(5)
    return server


def _retransmitted_and_acknowledged(client: Any) -> tuple[int, int]:
    """tcpi_total_retrans and tcpi_bytes_acked of a socket's TCP_INFO (linux/tcp.h)."""
    import socket
    import struct

    info = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 128)
    (retransmitted,) = struct.unpack_from("=I", info, 100)
    (acknowledged,) = struct.unpack_from("=Q", info, 120)
    return int(retransmitted), int(acknowledged)


def _kernel_scenarios(prefix: str, pcap: Path) -> None:
    """Refused port, zero window, IPv6 transfer, unanswered SYN; captured on ns1/veth0."""
    import socket
    import time

    from pyroute2 import IPRoute

    from netdiag.capture.sniffer import Sniffer
    from netdiag.live.namespaces import configure_pyroute2, inside

    ns1, ns2 = f"{prefix}ns1", f"{prefix}ns2"
    configure_pyroute2()
    for namespace, interface, address in (
        (ns1, "veth0", "fd00:db8::1"),
        (ns2, "veth1", "fd00:db8::2"),
    ):
        with inside(namespace):
            route = IPRoute()
        try:
            index = route.link_lookup(ifname=f"{prefix}{interface}")[0]
            route.addr("add", index=index, address=address, prefixlen=64, flags=0x02)  # nodad
        finally:
            route.close()
    with Sniffer(ns1, f"{prefix}veth0", pcap):
        # 1. A port nothing listens on: SYN answered by RST.
        assert _connect(ns2, socket.AF_INET, "10.0.1.0", 7097, 2.0) is None
        # 2. A receiver that does not read: its window closes, the sender probes.
        server = _listen(ns1, socket.AF_INET, "10.0.1.0", 7096, receive_buffer=4096)
        client = _connect(ns2, socket.AF_INET, "10.0.1.0", 7096, 2.0)
        assert client is not None
        accepted, _ = server.accept()
        client.setblocking(False)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                client.send(b"z" * 65536)
            except BlockingIOError:
                time.sleep(0.05)
        client.close()
        accepted.close()
        server.close()
        # 3. IPv6: a small transfer closed with FIN both ways.
        server6 = _listen(ns1, socket.AF_INET6, "fd00:db8::1", 7098)
        client6 = _connect(ns2, socket.AF_INET6, "fd00:db8::1", 7098, 2.0)
        assert client6 is not None
        accepted6, _ = server6.accept()
        client6.sendall(b"this is a test message")
        assert accepted6.recv(100) == b"this is a test message"
        client6.close()
        accepted6.recv(100)
        accepted6.close()
        server6.close()
        # 4. No route back from ns1: the SYN arrives, no SYN-ACK can leave.
        with inside(ns1):
            route = IPRoute()
        try:
            index = route.link_lookup(ifname=f"{prefix}veth0")[0]
            # the seed's `ip route add 10.0.2.0/24 dev veth0`: scope link (253)
            route.route("del", dst="10.0.2.0/24", oif=index, scope=253)
        finally:
            route.close()
        listener = _listen(ns1, socket.AF_INET, "10.0.1.0", 7099)
        assert _connect(ns2, socket.AF_INET, "10.0.1.0", 7099, 3.5) is None  # SYN, +1 s, +2 s
        listener.close()


@pytest.mark.netns
def test_kernel_made_capture_is_explained_and_agrees_with_tshark(
    unique_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netdiag.live.topology import LiveTopology
    from netdiag.topology.loader import load_topology
    from tests.test_tcp import TSHARK, netdiag_per_frame, tshark_per_frame

    monkeypatch.setenv("NETDIAG_RUN_DIR", str(tmp_path / "registry"))
    spec = load_topology(None).with_prefix(unique_prefix)
    pcap = tmp_path / "kernel.pcap"
    with LiveTopology(spec, f"agreement-{unique_prefix}") as live:
        live.build()
        _kernel_scenarios(unique_prefix, pcap)

    analysis = analyze_file(pcap)
    by_port = {int(stream.server.rpartition(":")[2]): stream for stream in analysis.tcp}
    codes = {(finding.code, finding.stream) for finding in analysis.findings}

    refused = by_port[7097]
    assert (refused.state, refused.history) == ("REJ", "Sr")
    assert ("tcp.rejected", refused.stream) in codes

    slow_reader = by_port[7096]
    assert slow_reader.count("zero_window") >= 1
    assert ("tcp.zero-window", slow_reader.stream) in codes
    assert slow_reader.irtt_ms is not None and slow_reader.irtt_ms > 0

    ipv6 = by_port[7098]
    assert (ipv6.ip_version, ipv6.state, ipv6.bytes_c2s) == (6, "SF", 22)
    assert ipv6.client.startswith("[fd00:db8::2]:")

    unanswered = by_port[7099]
    assert unanswered.state == "S0"
    assert len(unanswered.syn_frames) >= 2
    (finding,) = [f for f in analysis.findings if f.stream == unanswered.stream]
    assert finding.code == "tcp.syn-unanswered"
    assert "retried after" in finding.message

    if TSHARK is not None:
        expected = tshark_per_frame(pcap)
        actual = netdiag_per_frame(pcap)
        assert {
            frame: actual.get(frame) for frame in expected if expected[frame][0] is not None
        } == {frame: value for frame, value in expected.items() if value[0] is not None}


@pytest.mark.netns
def test_transfer_through_a_router_that_stops_forwarding_for_a_while(
    unique_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retransmissions made by the kernel after real loss, checked against tshark."""
    import socket
    import threading
    import time

    from netdiag.capture.sniffer import Sniffer
    from netdiag.live.topology import LiveTopology
    from netdiag.topology.loader import load_topology
    from tests.test_tcp import TSHARK, netdiag_per_frame, tshark_per_frame

    monkeypatch.setenv("NETDIAG_RUN_DIR", str(tmp_path / "registry"))
    spec = load_topology("routed").with_prefix(unique_prefix)
    pcap = tmp_path / "router.pcap"
    received = bytearray()
    with LiveTopology(spec, f"agreement-{unique_prefix}") as live:
        live.build()
        router = f"{unique_prefix}router"
        server = _listen(f"{unique_prefix}server", socket.AF_INET, "10.0.2.2", 7100)
        with Sniffer(f"{unique_prefix}client", f"{unique_prefix}cli0", pcap):
            client = _connect(f"{unique_prefix}client", socket.AF_INET, "10.0.2.2", 7100, 5.0)
            assert client is not None
            accepted, _ = server.accept()

            def drain() -> None:
                while chunk := accepted.recv(65536):
                    received.extend(chunk)

            reader = threading.Thread(target=drain)
            reader.start()
            client.setblocking(False)

            def send_until(done: Callable[[], bool], what: str) -> None:
                # Phases end on events, not at set times: with a fixed outage window,
                # a loop stalled on a loaded machine could step over it (no loss at all).
                deadline = time.monotonic() + 60
                while not done():
                    assert time.monotonic() < deadline, f"never {what}"
                    with contextlib.suppress(BlockingIOError):  # the outage fills the buffer
                        client.send(b"d" * 4096)
                    time.sleep(0.005)

            # Before the loss: data acknowledged (the ACKs, captured here, give RTT samples).
            send_until(lambda: _retransmitted_and_acknowledged(client)[1] > 0, "acknowledged")
            live.set_forwarding(router, False)  # the router drops everything
            try:
                send_until(lambda: _retransmitted_and_acknowledged(client)[0] > 0, "retransmitted")
            finally:
                live.set_forwarding(router, True)
            # After the loss: the retransmissions get through and the transfer goes on.
            delivered = len(received)
            send_until(lambda: len(received) > delivered, "delivered after the outage")
            client.setblocking(True)
            client.shutdown(socket.SHUT_WR)
            reader.join(timeout=10)
            client.close()
            accepted.close()
            server.close()
    analysis = analyze_file(pcap)
    (stream,) = [s for s in analysis.tcp if s.server == "10.0.2.2:7100"]
    assert stream.bytes_c2s >= len(received) > 0  # retransmitted bytes count again
    assert stream.count("retransmission") >= 1
    assert stream.rtt_ms.karn_excluded >= 0 and stream.rtt_ms.samples > 0
    codes = {(finding.code, finding.stream) for finding in analysis.findings}
    assert ("tcp.retransmission", stream.stream) in codes
    if TSHARK is not None:
        expected = tshark_per_frame(pcap)
        actual = netdiag_per_frame(pcap)
        tcp_frames = [frame for frame, value in expected.items() if value[0] is not None]
        assert {frame: actual.get(frame) for frame in tcp_frames} == {
            frame: expected[frame] for frame in tcp_frames
        }


def test_analyze_files_in_a_process_pool_gives_the_same_records_in_order() -> None:
    from netdiag.analysis.analyze import analyze_files

    paths = FILES[:6]
    if len(paths) < 2:
        pytest.skip("needs two corpus files")
    pooled = analyze_files(paths, jobs=2)
    assert [analysis.file.path for analysis in pooled] == [str(path) for path in paths]
    assert [a.to_json() for a in pooled] == [analysis_of(path).to_json() for path in paths]
