"""The in-namespace sniffer and `netdiag capture`: readiness, completeness, drops, Ctrl-C.

Completeness is checked against tcpdump (run inside the namespace through
`ip netns exec`, in the test only) where tcpdump is installed.
"""

from __future__ import annotations

import json
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netdiag.errors import InputError
from tests.helpers import wait_until_capturing

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


def complete_frames(path: Path) -> list[bytes]:
    """The frames of a pcap file still being written (its last record may be partial)."""
    data = path.read_bytes()
    frames = []
    offset = 24  # the file header
    while offset + 16 <= len(data):
        (length,) = struct.unpack_from("=I", data, offset + 8)  # the captured length
        if offset + 16 + length > len(data):
            break
        frames.append(data[offset + 16 : offset + 16 + length])
        offset += 16 + length
    return frames


def wait_until_written(pcap: Path) -> None:
    """Until the capture has written a frame, so that its reader thread runs: a signal
    from then on ends a capture that first writes all the kernel queued for it. The
    file appears at the bind, a moment before that thread starts; a signal inside
    that moment (a loaded machine can stretch it past the traffic) ends the capture
    with nothing read, which is not the Ctrl-C of a running capture these tests mean."""
    deadline = time.monotonic() + 60
    while not complete_frames(pcap):
        assert time.monotonic() < deadline, "the capture never wrote a frame"
        time.sleep(0.01)


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
        our_frames = read_frames(ours)
        # IPv6 neighbour/router chatter may fall outside our capture window: compare IPv4 + ARP.
        wanted = (b"\x08\x00", b"\x08\x06")
        # tcpdump has no drain proof, and on SIGINT it drops what it has not read yet:
        # wait until its file (flushed per frame, -U) holds as many frames as ours.
        expected = sum(1 for _t, d in our_frames if d[12:14] in wanted)
        deadline = time.monotonic() + 60
        while sum(1 for d in complete_frames(reference) if d[12:14] in wanted) < expected:
            if tcpdump.poll() is not None or time.monotonic() > deadline:
                break  # the comparison below says what is missing
            time.sleep(0.01)
    finally:
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=10)
    reference_frames = [
        (ts, data) for ts, data in read_frames(reference) if data[12:14] != MARKER_ETHERTYPE
    ]
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
    wait_until_capturing(process, pcap)
    ping_and_talk(prefix, 5)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    document = json.loads(stdout)
    assert document["packets"] == 6
    assert len(read_frames(pcap)) == 6


def signalled_capture(
    seed_up: tuple[str, str, str], pcap: Path, echoes: int, which: signal.Signals
) -> tuple[int, str, str]:
    """``netdiag capture`` during ``echoes`` pings each way and a TCP exchange, then
    ``which`` once a frame is written; (exit code, stdout, stderr)."""
    prefix, namespace, interface = seed_up
    process = start_capture_command(namespace, interface, pcap)
    wait_until_capturing(process, pcap)
    ping_and_talk(prefix, echoes)
    wait_until_written(pcap)
    process.send_signal(which)
    stdout, stderr = process.communicate(timeout=30)
    return process.returncode, stdout, stderr


def test_capture_command_ctrl_c_writes_what_it_had(
    seed_up: tuple[str, str, str], tmp_path: Path
) -> None:
    pcap = tmp_path / "interrupted.pcap"
    code, stdout, stderr = signalled_capture(seed_up, pcap, 3, signal.SIGINT)
    assert code == 130, stderr
    assert "Traceback" not in stderr
    document = json.loads(stdout)
    frames = read_frames(pcap)
    assert len(frames) == document["packets"] >= 6 + 5  # 3 echoes each way + the TCP exchange


def wait_until_in_namespace(pid: int, namespace: str) -> None:
    """Until process ``pid`` (``ip netns exec``) has entered ``namespace``: before its
    setns, ``pid:N`` names the root namespace, where the interface does not exist."""
    from netdiag.live.namespaces import namespace_path

    wanted = namespace_path(namespace).stat()
    deadline = time.monotonic() + 60
    while True:
        current = namespace_path(f"pid:{pid}").stat()
        if (current.st_dev, current.st_ino) == (wanted.st_dev, wanted.st_ino):
            return
        assert time.monotonic() < deadline, f"process {pid} never entered {namespace}"
        time.sleep(0.01)


def test_capture_in_a_process_namespace(seed_up: tuple[str, str, str], tmp_path: Path) -> None:
    """`pid:N` reaches the namespace a process lives in (as for a container)."""
    from netdiag.capture.sniffer import Sniffer

    prefix, namespace, interface = seed_up
    sleeper = subprocess.Popen(["ip", "netns", "exec", namespace, "sleep", "30"])
    try:
        wait_until_in_namespace(sleeper.pid, namespace)
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
    wait_until_capturing(process, pcap)
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
    pcap = tmp_path / "terminated.pcap"
    code, stdout, stderr = signalled_capture(seed_up, pcap, 1, signal.SIGTERM)
    assert code == 143, stderr
    document = json.loads(stdout)
    assert document["stopped_by"] == "terminated"
    assert document["packets"] == len(read_frames(pcap)) >= 2 + 5


@pytest.mark.parametrize("thread_made", [False, True], ids=["before-thread", "thread-not-started"])
def test_a_capture_stopped_before_its_reader_ran_keeps_what_the_kernel_queued(
    seed_up: tuple[str, str, str], tmp_path: Path, thread_made: bool
) -> None:
    """A Ctrl-C inside ``start()``, after the bind and before the reader thread runs
    (made here by opening the socket and the file as ``start()`` does, then
    stopping): ``stop()`` reads what the kernel queued since the bind, instead of
    losing it (or failing to join a thread that never started)."""
    import threading

    from netdiag.capture.sniffer import Sniffer

    prefix, namespace, interface = seed_up
    pcap = tmp_path / "early.pcap"
    sniffer = Sniffer(namespace, interface, pcap, prove_with_marker=False)
    sniffer._open_socket()
    sniffer._open_file()
    if thread_made:
        sniffer._thread = threading.Thread(target=sniffer._read_loop)
    ping_and_talk(prefix, 2)
    result = sniffer.stop(settle=False)
    assert result.error is None
    assert result.packets == len(read_frames(pcap)) >= 4 + 5  # the echoes, the TCP exchange
