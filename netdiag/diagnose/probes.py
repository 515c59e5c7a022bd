"""Probes that confirm a diagnosis, sent only from inside the source namespace.

Every socket here is created while the thread is inside the source namespace
(a socket stays in the namespace it was made in), so what is sent follows that
namespace's routes and never leaves through the root namespace. The caller
refuses to probe when the source *is* the root namespace (safety rule).

- Echo: scapy's ``L3RawSocket`` with an explicit source address. For a route
  added with only a device scapy would pick 0.0.0.0 as the source, the kernel
  would fill in the real one on the wire, and scapy's matcher would drop the
  reply (notes: "scapy picks source address 0.0.0.0").
- A full-size echo with Don't Fragment set, as large as the sending interface's
  MTU: a link whose far end has a smaller MTU drops it (a veth refuses frames
  larger than the receiving end's MTU) while small echoes pass.
- TCP: a kernel socket's ``connect`` with a short timeout (a crafted SYN would
  draw a RST from the sender's own kernel); refused means a RST came back.
"""

from __future__ import annotations

import errno
import os
import random
import socket

from netdiag.diagnose.model import EchoProbe, TcpProbe
from netdiag.live.namespaces import inside

IP_AND_ICMP_HEADER_BYTES = 28
ICMP_ECHO_REPLY = 0


def echo_probe(
    namespace: str,
    source: str,
    destination: str,
    count: int = 3,
    size: int = 84,
    dont_fragment: bool = False,
    timeout: float = 1.0,
) -> EchoProbe:
    """Send ``count`` ICMP echo requests of ``size`` IP bytes and count the replies."""
    from scapy.layers.inet import ICMP, IP
    from scapy.packet import Raw
    from scapy.supersocket import L3RawSocket

    identifier = random.randrange(1, 0xFFFF)
    payload = bytes(max(0, size - IP_AND_ICMP_HEADER_BYTES))
    requests = [
        IP(src=source, dst=destination, flags="DF" if dont_fragment else 0)
        / ICMP(id=identifier, seq=sequence)
        / Raw(payload)
        for sequence in range(1, count + 1)
    ]
    with inside(namespace):
        sock = L3RawSocket()
    try:
        answers = sock.sr(requests, timeout=timeout, verbose=0)[0]
    except OSError as error:
        return EchoProbe(
            source, destination, size, dont_fragment, 0, 0, os.strerror(error.errno or errno.EIO)
        )
    finally:
        sock.close()
    # scapy also matches ICMP errors quoting a request (frag-needed from a router):
    # only an echo reply (type 0) counts as answered.
    answered = {
        int(query[ICMP].seq)
        for query, reply in answers
        if reply.haslayer(ICMP) and int(reply[ICMP].type) == ICMP_ECHO_REPLY
    }
    return EchoProbe(source, destination, size, dont_fragment, count, len(answered))


def tcp_probe(namespace: str, destination: str, port: int, timeout: float = 2.0) -> TcpProbe:
    """``connect`` from inside ``namespace``; closed at once (nothing is sent)."""
    with inside(namespace):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect((destination, port))
    except ConnectionRefusedError:
        return TcpProbe(destination, port, "refused", "refused (the destination answered RST)")
    except TimeoutError:
        return TcpProbe(destination, port, "timed-out", f"no answer within {timeout:g} s")
    except OSError as error:
        detail = os.strerror(error.errno) if error.errno else str(error)
        return TcpProbe(destination, port, "error", detail)
    finally:
        client.close()
    return TcpProbe(destination, port, "connected", "connected (handshake completed)")
