"""Rendering of packed addresses for reports, the way Wireshark prints them.

The decode boundary keeps addresses as packed bytes (4 bytes for IPv4, 16 for
IPv6) so that conversation keys hash cheaply; they are turned into text only
when a record leaves the analysis stage. IPv6 uses the RFC 5952 form that
``socket.inet_ntop`` produces (``2001:db8::1``), and an endpoint with an IPv6
address is bracketed (``[2001:db8::1]:80``) as in tshark's truth files.
Renderings are memoised: a capture has few distinct addresses and a report
asks for the same ones again and again. The memo is small on purpose: a
miss costs well under a microsecond, while a memo of every address of a big
capture grew memory with the file (issue 6; 65,536 entries cost ~2 MB at 2M
packets, much of it scattered where the allocator cannot give it back).
"""

from __future__ import annotations

import socket
from functools import lru_cache


@lru_cache(maxsize=256)
def format_addr(packed: bytes) -> str:
    """Render a 4-byte or 16-byte address; anything else as hex (never raises)."""
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed)
    if len(packed) == 16:
        return socket.inet_ntop(socket.AF_INET6, packed)
    return packed.hex() if packed else "?"


def format_endpoint(packed: bytes, port: int) -> str:
    """``10.0.0.1:80`` for IPv4, ``[2001:db8::1]:80`` for IPv6."""
    if len(packed) == 16:
        return f"[{format_addr(packed)}]:{port}"
    return f"{format_addr(packed)}:{port}"
