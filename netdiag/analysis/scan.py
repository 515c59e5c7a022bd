"""The per-packet loop of ``analyze_file``, in a module of its own so mypyc compiles it.

Interpreted, this loop cost about a tenth of a compiled run at 1M packets,
and every call from it into the compiled reader, decoder and trackers went
through the generic object protocol. Compiled with them (``_compiled.py``),
the calls and the packet's attribute reads are native. Frames come as the
reader's plain ``Record`` tuples, not ``RawFrame`` objects (see reader.py).
Same code either way.
"""

from __future__ import annotations

from typing import Final

from netdiag.analysis.decode import Decoder
from netdiag.analysis.icmp import ArpTracker, IcmpTracker
from netdiag.analysis.packet import DecodedPacket, FrameClass
from netdiag.analysis.reader import CaptureReader
from netdiag.analysis.tcp import TcpTracker

PROTO_TCP: Final = 6
PROTO_ICMP: Final = 1
PROTO_ICMPV6: Final = 58
_ARP_CLASS: Final = FrameClass.ARP


def scan_frames(
    reader: CaptureReader,
    decoder: Decoder,
    tcp: TcpTracker,
    icmp: IcmpTracker,
    arp: ArpTracker,
) -> int | None:
    """Every frame of ``reader`` to its tracker; the first non-zero timestamp (ns), if any."""
    origin_ns: int | None = None
    # Methods are called on their objects, not cached as bound methods:
    # compiled, that is a direct C call.
    cursor = reader.pcap_cursor()
    if cursor is not None:
        linktype = cursor.linktype
        while True:
            number, ts_ns, caplen, wirelen, buffer, start = cursor.next_record()
            if not number:
                break
            if origin_ns is None and ts_ns:
                origin_ns = ts_ns
            _scan_frame(
                number, ts_ns, linktype, caplen, wirelen, buffer, start, decoder, tcp, icmp, arp
            )
        return origin_ns
    for number, ts_ns, linktype, caplen, wirelen, buffer, start, _interface in reader.records():
        if origin_ns is None and ts_ns:
            origin_ns = ts_ns
        _scan_frame(
            number, ts_ns, linktype, caplen, wirelen, buffer, start, decoder, tcp, icmp, arp
        )
    return origin_ns


def _scan_frame(
    number: int,
    ts_ns: int,
    linktype: int,
    caplen: int,
    wirelen: int,
    buffer: bytes,
    start: int,
    decoder: Decoder,
    tcp: TcpTracker,
    icmp: IcmpTracker,
    arp: ArpTracker,
) -> None:
    """One frame (``buffer[start:start + caplen]``) to its tracker."""
    end = start + caplen
    if linktype == 1:
        # Ethernet/IP/TCP, nearly every frame of a big capture: its fields go
        # straight to the tracker, no DecodedPacket is built.
        # The tracker's share of the conversations (shares.py): the decoder
        # counts the other shares' frames and leaves them unread.
        fields = decoder.fast_tcp_fields(caplen, wirelen, buffer, start, end, tcp.share, tcp.shares)
        version = fields[0]
        if version:
            if version > 0:  # else another share's (decode.OTHER_SHARE)
                tcp.process_fields(number, ts_ns, fields)
            return
    packet = decoder.decode_general(number, ts_ns, linktype, caplen, wirelen, buffer, start, end)
    protocol = packet.proto
    if protocol == PROTO_TCP:
        # l4_truncated first: the call is skipped for nearly every packet.
        if packet.fragment is None or (packet.l4_truncated and tcp_header_missing(packet)):
            return
        tcp.process(packet)
    elif protocol in (PROTO_ICMP, PROTO_ICMPV6):
        icmp.process(packet, tcp.stream_of)
    elif packet.frame_class == _ARP_CLASS:
        arp.process(packet)


def tcp_header_missing(packet: DecodedPacket) -> bool:
    """True when not even the fixed 20-byte TCP header was captured.

    The decoder then fills only the ports (flagging ``l4_truncated``);
    Wireshark gives such a frame no ``tcp.stream`` either, because reading
    the sequence number throws before the conversation is looked up.
    """
    return (
        packet.l4_truncated
        and not packet.tcp_flags
        and not packet.seq
        and not packet.ack
        and not packet.window
        and not packet.tcp_options
    )
