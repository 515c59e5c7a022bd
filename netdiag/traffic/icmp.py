"""ICMP echo from inside a namespace, with scapy.

The sockets are scapy's ``L3RawSocket`` (a raw IP socket to send, an
AF_PACKET socket to receive) created while the thread is inside the
namespace, so sending follows that namespace's routes and receiving sees its
interfaces; scapy's own global routing table (read from the root namespace at
import) is never consulted.

The source address is always given: for a route added with only a device
(``10.0.2.0/24 dev veth0``) scapy would put 0.0.0.0 in the packet, the kernel
would fill in the real source on the wire, and scapy's matcher would then drop
the reply (notes: "scapy picks source address 0.0.0.0").

Round-trip times are *not* taken from here: the experiment computes them from
the capture's kernel timestamps. This module reports which sequence numbers
were answered.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from typing import Any

from netdiag.live.namespaces import inside


@dataclass(frozen=True, slots=True)
class EchoOutcome:
    namespace: str
    source: str
    destination: str
    identifier: int
    sent: int
    received: int  # requests that got a reply (each sequence number counted once)
    error: str | None = None


def _route_error(namespace: str, destination: str) -> int | None:
    """The errno sending to ``destination`` would fail with, found without sending.

    ``connect`` on a UDP socket only looks the route up: nothing goes on the wire.
    """
    with inside(namespace):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((destination, 9))
    except OSError as error:
        return error.errno or errno.EIO
    finally:
        probe.close()
    return None


def _raw_socket(namespace: str) -> Any:
    from scapy.supersocket import L3RawSocket

    with inside(namespace):
        return L3RawSocket()


def echo(
    namespace: str,
    source: str,
    destination: str,
    count: int,
    identifier: int,
    timeout: float = 2.0,
    interval: float = 0.0,
) -> EchoOutcome:
    """Send ``count`` echo requests from ``namespace`` and collect the replies.

    ``timeout`` runs from the last request sent; scapy returns as soon as every
    request is answered, so a generous one costs nothing on a healthy path and
    keeps a busy machine from turning a late reply into a loss.
    """
    from scapy.layers.inet import ICMP, IP

    sock = _raw_socket(namespace)
    try:
        requests = [
            IP(src=source, dst=destination) / ICMP(id=identifier, seq=sequence)
            for sequence in range(1, count + 1)
        ]
        unreachable = _route_error(namespace, destination)
        if unreachable is not None:
            return EchoOutcome(
                namespace, source, destination, identifier, 0, 0, error=os.strerror(unreachable)
            )
        answers = sock.sr(requests, timeout=timeout, inter=interval, verbose=0, chainCC=True)[0]
        sequences = {int(query[ICMP].seq) for query, _reply in answers}
        return EchoOutcome(namespace, source, destination, identifier, count, len(sequences))
    finally:
        sock.close()


def send_attempt(namespace: str, source: str, destination: str) -> int | None:
    """Try to send one echo request from ``namespace``; the errno the kernel gave, or None."""
    from scapy.layers.inet import ICMP, IP

    sock = _raw_socket(namespace)
    try:
        sock.outs.sendto(
            bytes(IP(src=source, dst=destination) / ICMP(id=1, seq=1)), (destination, 0)
        )
    except OSError as error:
        return error.errno
    finally:
        sock.close()
    return None
