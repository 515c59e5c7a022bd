"""The in-namespace sniffer and `netdiag capture`: readiness, completeness, drops, Ctrl-C.

Completeness is checked against tcpdump (run inside the namespace through
`ip netns exec`, in the test only) where tcpdump is installed.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netdiag.errors import InputError

pytestmark = pytest.mark.netns

MARKER_ETHERTYPE = b"\x88\xb5"


@pytest.fixture
def seed_up(
    unique_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str, str]]:
    """The seed topology, built and routed; yields (prefix, ns1, veth0)."""
    from netdiag.live.topology import LiveTopology
    from netdiag.topology.loader import load_topology

    monkeypatch.setenv("NETDIAG_RUN_DIR", str(tmp_path / "registry"))
    spec = load_topology(None).with_prefix(unique_prefix)
    with LiveTopology(spec, f"capture-test-{unique_prefix}") as live:
        live.build()
        yield unique_prefix, f"{unique_prefix}ns1", f"{unique_prefix}veth0"
    from pyroute2 import netns

    assert not {f"{unique_prefix}ns1", f"{unique_prefix}ns2"} & set(netns.listnetns())


def read_frames(path: Path) -> list[tuple[float, bytes]]:
    import dpkt

    with open(path, "rb") as handle:
        return [(float(ts), bytes(data)) for ts, data in dpkt.pcap.Reader(handle)]


def start_capture_command(
    namespace: str, interface: str, pcap: Path, *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "netdiag",
            "capture",
            "--ns",
            namespace,
            "--iface",
            interface,
            *extra,
            "-w",
            str(pcap),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ping_and_talk(prefix: str, count: int) -> None:
    from netdiag.traffic.icmp import echo
    from netdiag.traffic.tcp import Listener, exchange_message

    outcome = echo(f"{prefix}ns2", "10.0.2.0", "10.0.1.0", count, 0x4242)
    assert outcome.received == count
    listener = Listener(f"{prefix}ns1", "10.0.1.0", 7096)
    try:
        exchange = exchange_message(listener, f"{prefix}ns2", "10.0.1.0", 7096, b"hello capture")
    finally:
        listener.close()
    assert exchange.message_received == b"hello capture"


def test_sniffer_proves_readiness_and_captures_everything(
    seed_up: tuple[str, str, str], tmp_path: Path
) -> None:
    from netdiag.analysis.analyze import analyze_file
    from netdiag.capture.sniffer import Sniffer

    prefix, namespace, interface = seed_up
    pcap = tmp_path / "out.pcap"
    sniffer = Sniffer(namespace, interface, pcap)
    sniffer.start()
    try:
        ping_and_talk(prefix, 4)
    finally:
        result = sniffer.stop()
    assert result.ready_proven and result.drained
    assert result.kernel_drops == 0
    frames = read_frames(pcap)
    assert len(frames) == result.packets
    assert not any(data[12:14] == MARKER_ETHERTYPE for _ts, data in frames)
    analysis = analyze_file(pcap)
    echoes = [e for e in analysis.icmp_echo if e.id == 0x4242]
    assert len(echoes) == 4 and all(e.frame_rep is not None for e in echoes)
    assert all(e.rtt_ms is not None and e.rtt_ms >= 0 for e in echoes)
    (stream,) = analysis.tcp
    assert stream.bytes_c2s == len(b"hello capture")
    assert stream.history.startswith("ShAD") and stream.fin_seen


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_capture_matches_tcpdump(seed_up: tuple[str, str, str], tmp_path: Path) -> None:
    from netdiag.capture.sniffer import Sniffer

    prefix, namespace, interface = seed_up
    reference = tmp_path / "tcpdump.pcap"
    tcpdump = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            "tcpdump",
            "--immediate-mode",
            "-i",
            interface,
            "-U",
            "-w",
            str(reference),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tcpdump.stderr is not None
        line = tcpdump.stderr.readline()  # "listening on ..." once its socket is bound
        assert "listening on" in line, line
        ours = tmp_path / "netdiag.pcap"
        with Sniffer(namespace, interface, ours):
            ping_and_talk(prefix, 5)
        time.sleep(0.2)  # tcpdump has no drain proof: give it a moment
    finally:
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=10)
    reference_frames = [
        (ts, data) for ts, data in read_frames(reference) if data[12:14] != MARKER_ETHERTYPE
    ]
    our_frames = read_frames(ours)
    # IPv6 neighbour/router chatter may fall outside our capture window: compare IPv4 + ARP.
    wanted = (b"\x08\x00", b"\x08\x06")
    assert [d for _t, d in our_frames if d[12:14] in wanted] == [
        d for _t, d in reference_frames if d[12:14] in wanted
    ]
    # Kernel timestamps both: tcpdump's ring and our SO_TIMESTAMPNS may stamp a
    # frame at slightly different points of its path (measured: mostly < 3 µs, rarely ~20 µs).
    ours_by_bytes = {d: t for t, d in our_frames}
    for ts, data in reference_frames:
        if data[12:14] in wanted:
            assert abs(ours_by_bytes[data] - ts) < 100e-6


def test_missing_interface_is_a_clear_error(seed_up: tuple[str, str, str], tmp_path: Path) -> None:
    from netdiag.capture.sniffer import Sniffer

    _prefix, namespace, _interface = seed_up
    with pytest.raises(InputError, match="cannot capture on nosuch0"):
        Sniffer(namespace, "nosuch0", tmp_path / "x.pcap").start()


def test_capture_command_with_count(seed_up: tuple[str, str, str], tmp_path: Path) -> None:
    prefix, namespace, interface = seed_up
    pcap = tmp_path / "count.pcap"
    process = start_capture_command(namespace, interface, pcap, "--count", "6")
    time.sleep(1.5)  # the command's own start-up; its socket queues from the bind on
    ping_and_talk(prefix, 5)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    document = json.loads(stdout)
    assert document["packets"] == 6
    assert len(read_frames(pcap)) == 6


def test_capture_command_ctrl_c_writes_what_it_had(
    seed_up: tuple[str, str, str], tmp_path: Path
) -> None:
    prefix, namespace, interface = seed_up
    pcap = tmp_path / "interrupted.pcap"
    process = start_capture_command(namespace, interface, pcap)
    time.sleep(1.5)
    ping_and_talk(prefix, 3)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    document = json.loads(stdout)
    frames = read_frames(pcap)
    assert len(frames) == document["packets"] >= 6 + 5  # 3 echoes each way + the TCP exchange


def test_capture_in_a_process_namespace(seed_up: tuple[str, str, str], tmp_path: Path) -> None:
    """`pid:N` reaches the namespace a process lives in (as for a container)."""
    from netdiag.capture.sniffer import Sniffer

    prefix, namespace, interface = seed_up
    sleeper = subprocess.Popen(["ip", "netns", "exec", namespace, "sleep", "30"])
    try:
        time.sleep(0.3)
        pcap = tmp_path / "pid.pcap"
        with Sniffer(f"pid:{sleeper.pid}", interface, pcap, prove_with_marker=False) as sniffer:
            ping_and_talk(prefix, 2)
            time.sleep(0.1)
        assert sniffer.result is not None and sniffer.result.packets >= 4
    finally:
        sleeper.kill()
        sleeper.wait()


def test_capture_command_whose_interface_goes_away_is_an_error(
    seed_up: tuple[str, str, str], tmp_path: Path
) -> None:
    """The interface deleted under a running capture: exit 3 naming why, not a
    capture reported as complete (the file keeps what was read)."""
    from pyroute2 import IPRoute

    prefix, namespace, interface = seed_up
    pcap = tmp_path / "gone.pcap"
    process = start_capture_command(namespace, interface, pcap)
    time.sleep(1.5)
    ping_and_talk(prefix, 2)
    with IPRoute(netns=namespace) as ipr:
        ipr.link("del", index=ipr.link_lookup(ifname=interface)[0])
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 3, stderr
    assert stdout == ""
    assert f"netdiag: error: capture on {interface} in {namespace} stopped:" in stderr
    assert "Traceback" not in stderr
    assert len(read_frames(pcap)) >= 4 + 5


def test_capture_command_stopped_by_sigterm_says_so(
    seed_up: tuple[str, str, str], tmp_path: Path
) -> None:
    prefix, namespace, interface = seed_up
    pcap = tmp_path / "terminated.pcap"
    process = start_capture_command(namespace, interface, pcap)
    time.sleep(1.5)
    ping_and_talk(prefix, 1)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 143, stderr
    document = json.loads(stdout)
    assert document["stopped_by"] == "terminated"
    assert document["packets"] == len(read_frames(pcap)) >= 2 + 5
