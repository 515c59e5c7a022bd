"""The decode boundary's types: raw frames in, decoded packets out.

``reader`` yields one ``RawFrame`` per record of the file (frame numbers are
1-based, as Wireshark numbers them). ``decode`` turns a ``RawFrame`` into a
``DecodedPacket`` holding only the header fields the analysis needs; the
original bytes stay in ``RawFrame`` for hex dumps (dpkt's ``bytes(pkt)``
re-serialises, so dumps must never come from a decoded object). The analysis
pass itself builds no ``RawFrame``: it reads the reader's plain tuples
(``Record``, ``PcapRecord``: scan.py). Nor, for an Ethernet frame carrying an
IPv4 or IPv6 TCP segment that the decoder's hot path takes
(``Decoder.fast_tcp_fields``, ``_fast_ipv6_tcp_fields``, ``_fast_tcp``), a
``DecodedPacket``: the fields go to the TCP tracker as a ``TcpFields`` tuple
(below).

A ``DecodedPacket`` lives for one packet: conversation trackers copy what they
keep into their own compact state, so memory grows with live conversations,
never with packets. Timestamps are integer nanoseconds since the epoch so that
RTTs are exact differences (a float epoch keeps only ~0.24 us).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final


class FrameClass(IntEnum):
    """How the decode boundary classified a frame (each frame exactly one)."""

    IPV4 = 4
    IPV6 = 6
    ARP = 1
    OTHER = 2  # a link layer we know, carrying neither IP nor ARP (STP, CDP, SLARP...)
    UNDECODABLE = 3  # unknown link type, or headers too short / inconsistent


@dataclass(frozen=True, slots=True)
class RawFrame:
    number: int  # 1-based position among the file's packets
    ts_ns: int  # epoch nanoseconds
    linktype: int  # LINKTYPE_* of the interface that captured it
    caplen: int
    wirelen: int  # original length on the wire
    data: bytes  # exactly the captured bytes
    interface: int = 0  # pcapng interface id (0 for pcap)

    @property
    def truncated(self) -> bool:
        return self.caplen < self.wirelen


# A TCP segment's fields as the decoder's hot path gives them to the TCP
# tracker without building a DecodedPacket (``Decoder.fast_tcp_fields``,
# ``TcpTracker.process_fields``): (ip_version, endpoints, ttl, sport, dport,
# seq, ack, tcp_flags, window, payload_len, options_data, options_start,
# options_end), DecodedPacket's values; ip_version 0 when the hot path did not
# take the frame. The TCP options are ``options_data[options_start:options_end]``:
# the hot path gives the frame's bytes and offsets, no slice (nearly every
# segment carries timestamps, and the tracker reads the options of a SYN only,
# or of a segment holding bytes 03 03). ``endpoints``
# is ``packed_endpoints(src, sport, dst, dport)``: the 12 (IPv4) or 36 (IPv6)
# bytes that source address, destination address and the two ports are in
# the headers, one slice of the frame for the hot path, and the tracker's
# conversation key as it is (issue 6). A tuple of fixed types: mypyc passes it
# as a C struct, not an object.
TcpFields = tuple[int, bytes, int, int, int, int, int, int, int, int, bytes, int, int]


def packed_endpoints(source: bytes, sport: int, destination: bytes, dport: int) -> bytes:
    """Both addresses (of one length), then both ports (16 bits each, big-endian)."""
    return source + destination + (sport << 16 | dport).to_bytes(4, "big")


def endpoints_share(data: bytes, start: int, address_length: int, shares: int) -> int:
    """The share (0 to ``shares - 1``) of the conversation whose ``packed_endpoints``
    are at ``data[start:]`` (addresses of ``address_length`` bytes), the same both
    ways: one file analysed by several processes (analysis/shares.py).

    The ports and the addresses' last bytes, combined symmetrically: ephemeral
    ports spread conversations evenly, and every frame of one conversation
    (and an ICMP error quoting it) lands in the same share.
    """
    ports = big_endian_u32(data, start + 2 * address_length)
    low_bytes = 0
    if address_length:
        low_bytes = data[start + address_length - 1] ^ data[start + 2 * address_length - 1]
    return ((ports >> 16) ^ (ports & 0xFFFF) ^ low_bytes) % shares


def big_endian_u32(data: bytes, offset: int) -> int:
    """The big-endian 32-bit number at ``offset`` (in range).

    Compiled, four native byte loads and shifts: no ``bytes`` slice, no int object.
    """
    return data[offset] << 24 | data[offset + 1] << 16 | data[offset + 2] << 8 | data[offset + 3]


# True when this module runs compiled by mypyc (``_compiled.py``: the hot
# modules all are, or none). The byte-by-byte reads of the hot path are then
# native loads and ints; interpreted, they cost more than the ``struct`` and
# ``bytes`` builtins they replace, so the hottest spots keep those for the
# interpreter. Same results either way (tests/test_fast_path.py).
COMPILED: Final = not __file__.endswith((".py", ".pyc"))  # else the extension's path

# TCP flag bits, as in the TCP header's flags byte.
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80


class DecodedPacket:
    """Header fields of one frame, outermost link layer to innermost L4.

    When IP is carried in a tunnel (GRE, GTP-U, VXLAN, PPPoE, MPLS), the fields
    describe the innermost IP packet that carries TCP/UDP/ICMP, as Wireshark
    reports endpoints. Addresses are kept as packed bytes (4 or 16) for cheap
    hashing; ``netdiag.analysis.addr.format_addr`` renders them.

    A plain ``__slots__`` class rather than a dataclass: it is built once per
    packet on the hot path and never crosses a stage boundary.
    """

    __slots__ = (
        "ack",
        "arp_op",
        "dport",
        "dst",
        "fragment",
        "frame",
        "frame_class",
        "icmp_checksum",
        "icmp_code",
        "icmp_id",
        "icmp_mtu",
        "icmp_quoted",
        "icmp_seq",
        "icmp_type",
        "ip_version",
        "l4_truncated",
        "link_header_len",
        "payload_len",
        "proto",
        "seq",
        "sport",
        "src",
        "tcp_flags",
        "tcp_options",
        "ts_ns",
        "ttl",
        "tunnelled",
        "window",
    )

    def __init__(self, frame: int, ts_ns: int, frame_class: FrameClass) -> None:
        self.frame = frame
        self.ts_ns = ts_ns
        self.frame_class = frame_class
        # Length of the link-layer header as tcpdump counts it (Ethernet: 14
        # plus VLAN tags; SLL: 16; NULL: 4; raw IP: 0): where `tcpdump -X`
        # starts its dump. -1 when the link type is unknown.
        self.link_header_len = -1
        self.ip_version = 0
        self.src = b""
        self.dst = b""
        self.proto = -1  # IP protocol of the innermost payload (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6)
        self.ttl = 0
        self.tunnelled = False
        # True when this packet is a reassembled datagram (reported on the last
        # fragment's frame, as Wireshark does) -- or None when it is a
        # non-final fragment whose L4 fields are not available.
        self.fragment: bool | None = False
        # TCP/UDP
        self.sport = 0
        self.dport = 0
        # TCP
        self.seq = 0
        self.ack = 0
        self.tcp_flags = 0
        self.window = 0  # raw window field (unscaled)
        self.payload_len = 0  # TCP/UDP payload length claimed by the IP header
        self.tcp_options = b""  # raw option bytes (parse with analysis.tcpopts)
        self.l4_truncated = False  # L4 header itself not fully captured
        # ICMP / ICMPv6
        self.icmp_type = -1
        self.icmp_code = -1
        self.icmp_id = 0
        self.icmp_seq = 0
        self.icmp_mtu = 0  # next-hop MTU of frag-needed / packet-too-big
        # The ICMP checksum field: Wireshark pairs an echo reply with a request
        # only when the reply's checksum is the request's adjusted for the type
        # change, i.e. when the payload is the same.
        self.icmp_checksum = 0
        # For ICMP errors: the quoted packet's (src, dst, proto, sport, dport)
        self.icmp_quoted: tuple[bytes, bytes, int, int, int] | None = None
        # ARP: the opcode (1 request, 2 reply); src/dst then hold the sender and
        # target protocol (IPv4) addresses. 0 for every other frame.
        self.arp_op = 0

    def tcp_fields(self) -> TcpFields:
        """This packet's ``TcpFields`` (``TcpTracker.process`` hands them on)."""
        return (
            self.ip_version,
            packed_endpoints(self.src, self.sport, self.dst, self.dport),
            self.ttl,
            self.sport,
            self.dport,
            self.seq,
            self.ack,
            self.tcp_flags,
            self.window,
            self.payload_len,
            self.tcp_options,
            0,
            len(self.tcp_options),
        )
