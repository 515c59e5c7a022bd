"""Nothing let out: no packet of the experiment appears in the root namespace.

While a real `netdiag run` goes on in namespaces of its own, a receive-only
AF_PACKET socket in the root namespace listens on every interface (it sends
nothing). Afterwards no frame it saw may carry one of the experiment's
addresses. This is the safety rule of the project, tested.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ETH_P_ALL = 0x0003
EXPERIMENT_NETWORKS = (
    ipaddress.ip_network("10.0.1.0/24"),
    ipaddress.ip_network("10.0.2.0/24"),
)


def addresses_in_frame(frame: bytes) -> list[ipaddress.IPv4Address]:
    """IPv4 source/destination addresses found at any plausible offset.

    Deliberately naive: it scans every offset where an IPv4 header could start
    (any link layer, any tunnel) so that a leak cannot hide behind a link type
    this test does not know.
    """
    found = []
    for offset in range(len(frame) - 20):
        if frame[offset] == 0x45 and header_checksum_ok(frame[offset : offset + 20]):
            for start in (offset + 12, offset + 16):
                found.append(ipaddress.IPv4Address(frame[start : start + 4]))
    return found


def header_checksum_ok(header: bytes) -> bool:
    """A real IPv4 header sums to 0xffff (keeps random payload bytes from matching)."""
    total = sum(int.from_bytes(header[index : index + 2], "big") for index in range(0, 20, 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


@pytest.mark.netns
def test_no_experiment_packet_reaches_the_root_namespace(
    tmp_path: Path, unique_prefix: str
) -> None:
    listener = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    listener.settimeout(0.2)
    frames: list[bytes] = []
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            try:
                frames.append(listener.recv(65535))
            except TimeoutError:
                continue

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "netdiag",
                "run",
                "--prefix",
                unique_prefix,
                "--out",
                str(tmp_path),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        time.sleep(0.3)  # let late frames arrive at the listener
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert result.returncode == 0, result.stderr
    leaked = [
        address
        for frame in frames
        for address in addresses_in_frame(frame)
        if any(address in network for network in EXPERIMENT_NETWORKS)
    ]
    assert leaked == [], f"experiment addresses seen in the root namespace: {leaked[:5]}"
