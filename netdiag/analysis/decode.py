"""The decode boundary: a frame's bytes in, its header fields out.

The decoder reads only the header fields the analysis needs, straight from
the frame's bytes (byte by byte on the hot path, precompiled ``struct``
objects elsewhere): building dpkt objects for every packet is four times
slower and would dominate the run time of a large capture. The common case,
an Ethernet frame carrying IPv4 without options or IPv6 without extension
headers and an unfragmented TCP segment, is read by
``Decoder.fast_tcp_fields`` (with ``_fast_ipv6_tcp_fields`` and
``_fast_tcp``) into a plain ``TcpFields`` tuple that the analysis pass
(scan.py, fed the reader's plain record tuples) hands straight to the TCP
tracker, no ``DecodedPacket`` built. Every other frame goes through
``decode_general`` and small functions that are cheap to follow, into a
``DecodedPacket``; ``decode`` (one ``RawFrame`` in, one ``DecodedPacket``
out) tries both, for the callers that want a packet (hex dumps).

It opens what Wireshark opens: VLAN tags (802.1Q, 802.1ad, QinQ), LLC/SNAP,
Linux cooked captures (SLL, SLL2), BSD and OpenBSD loopback, raw IP, Cisco
HDLC, PPP, IP over InfiniBand, Solaris ipnet, unencrypted 802.11 data
frames (bare or behind radiotap); tunnels (GRE with its optional fields,
ERSPAN, PPPoE, L2TPv2, MPLS, VXLAN, GTP-U, IP-in-IP, 6in4, IPComp with
DEFLATE) down to the innermost IP packet carrying TCP, UDP or ICMP.
``tunnelled`` and its count mean an IP header inside another protocol's
payload (VLAN tags and Cisco metadata are tags, not tunnels).

IPv4 and IPv6 fragments are reassembled in bounded memory; the frame
that completes a datagram carries its transport fields (``fragment=True``),
as tshark reports a fragmented ping on its last fragment.

Every frame is counted in exactly one class (IPv4, IPv6, ARP, other,
undecodable) by its outermost network layer, so the classes add up to the
file's frame count; nothing is dropped silently. Malformed input never
raises: a header that is too short or inconsistent makes the frame
undecodable (or, inside a tunnel, leaves the outer fields in place).
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from netdiag.analysis.model import DecodeCounts
from netdiag.analysis.packet import (
    COMPILED,
    DecodedPacket,
    FrameClass,
    RawFrame,
    TcpFields,
    big_endian_u32,
    endpoints_share,
)
from netdiag.analysis.reader import LINKTYPE_NONE

# Precompiled header layouts (network byte order unless said otherwise).
_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_U32_LE: Final = struct.Struct("<I")
_U16_LE: Final = struct.Struct("<H")
# version/IHL, TOS, total length, id, flags/fragment offset, TTL, protocol, checksum, src, dst
_IPV4: Final = struct.Struct("!BBHHHBBH4s4s")
# version/class/flow, payload length, next header, hop limit, src, dst
_IPV6: Final = struct.Struct("!IHBB16s16s")
# ports, seq, ack, data offset, flags, window
_TCP: Final = struct.Struct("!HHIIBBH")
_PORTS: Final = struct.Struct("!HH")
# type, code, checksum, identifier, sequence (echo) / unused+MTU (errors)
_ICMP: Final = struct.Struct("!BBHHH")
_ARP: Final = struct.Struct("!HHBBH")  # hardware type, protocol type, hlen, plen, opcode

_IPV4_CLASS: Final = FrameClass.IPV4
_IPV6_CLASS: Final = FrameClass.IPV6
_UNDECODABLE: Final = FrameClass.UNDECODABLE
_OTHER: Final = FrameClass.OTHER
_ARP_CLASS: Final = FrameClass.ARP
_NOT_FAST: Final[TcpFields] = (0, b"", 0, 0, 0, 0, 0, 0, 0, 0, b"", 0, 0)
# IP version -1: a frame the hot path counted, of another share's conversation.
OTHER_SHARE: Final[TcpFields] = (-1, b"", 0, 0, 0, 0, 0, 0, 0, 0, b"", 0, 0)

# Ethertypes
ETH_IPV4: Final = 0x0800
ETH_ARP: Final = 0x0806
ETH_IPV6: Final = 0x86DD
ETH_VLAN_TYPES: Final = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
ETH_PPPOE_SESSION: Final = 0x8864
ETH_MPLS: Final = frozenset((0x8847, 0x8848))
ETH_TRANSPARENT_BRIDGING: Final = 0x6558
ETH_ERSPAN_2: Final = 0x88BE
ETH_ERSPAN_3: Final = 0x22EB
ETH_PPP: Final = 0x880B
ETH_CISCO_METADATA: Final = 0x8909

# IP protocols
PROTO_ICMP: Final = 1
PROTO_IPIP: Final = 4
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_IPV6: Final = 41
PROTO_GRE: Final = 47
PROTO_ESP: Final = 50
PROTO_AH: Final = 51
PROTO_ICMPV6: Final = 58
PROTO_IPCOMP: Final = 108
# IPv6 extension headers walked to the upper-layer protocol (fragment handled apart).
_IPV6_EXTENSIONS: Final = frozenset((0, 43, 60, 135, 139, 140))
IPV6_FRAGMENT: Final = 44

UDP_VXLAN: Final = 4789
UDP_GTP_U: Final = 2152
UDP_L2TP: Final = 1701

# ICMP errors quoting the offending packet's header.
_ICMP_ERRORS: Final = frozenset((3, 4, 5, 11, 12))
_ICMPV6_ERRORS: Final = frozenset((1, 2, 3, 4))

# Encapsulations nested deeper than this are not followed (malicious input).
MAX_DEPTH: Final = 8

# Reassembly bounds: memory stays small whatever the capture holds.
MAX_PENDING_DATAGRAMS: Final = 256
MAX_PENDING_BYTES: Final = 16 << 20
# 64 KiB in 8-byte fragments is 8192 of them; more than this is a flood, and
# each new fragment re-sorts the pieces.
MAX_FRAGMENTS_PER_DATAGRAM: Final = 1024
MAX_DATAGRAM: Final = 65535 + 40  # an IPv6 payload (65535) after its unfragmentable headers
REASSEMBLY_TIMEOUT_NS: Final = 60 * 1_000_000_000  # Linux ipfrag_time is 30 s
REASSEMBLY_TIMEOUT_FRAMES: Final = 100_000

# BSD loopback address families meaning IPv6 on the various systems.
_AF_INET: Final = 2
_AF_INET6: Final = frozenset((10, 24, 28, 30))


class _Datagram:
    """Fragments of one IP datagram waiting for the rest."""

    __slots__ = ("captured", "first_frame", "first_ts", "pieces", "total")

    def __init__(self, frame: int, ts_ns: int) -> None:
        self.first_frame = frame
        self.first_ts = ts_ns
        self.pieces: list[tuple[int, int, bytes]] = []  # (offset, claimed length, captured bytes)
        self.total = -1  # payload length, known once the last fragment is seen
        self.captured = 0


class Reassembler:
    """IP fragment reassembly in bounded memory.

    A datagram is complete when the fragments' claimed lengths cover
    ``0..total`` (fragments may come in any order, may overlap or repeat). Its
    bytes are those captured: when a fragment was cut by the snapshot length,
    the reassembled payload stops at the first byte not captured, and the
    transport header is read from what is there.

    Datagrams waiting longer than ``REASSEMBLY_TIMEOUT_NS`` (capture time) or
    ``REASSEMBLY_TIMEOUT_FRAMES`` frames are dropped, as are the oldest ones
    when more than ``MAX_PENDING_DATAGRAMS`` or ``MAX_PENDING_BYTES`` wait.
    """

    def __init__(self) -> None:
        # Keyed by (src, dst, identification, protocol); oldest first.
        self._pending: OrderedDict[tuple[object, ...], _Datagram] = OrderedDict()
        self._pending_bytes = 0
        self.expired = 0  # datagrams given up on

    def add(
        self,
        key: tuple[object, ...],
        offset: int,
        more: bool,
        claimed_length: int,
        captured: bytes,
        frame: int,
        ts_ns: int,
    ) -> tuple[bytes, int] | None:
        """Add one fragment; when this one completes the datagram, its payload as captured
        and its full length (larger than the bytes when a fragment was snaplen-cut)."""
        self._expire(frame, ts_ns)
        if offset + claimed_length > MAX_DATAGRAM:
            return None
        datagram = self._pending.get(key)
        if datagram is None:
            datagram = _Datagram(frame, ts_ns)
            self._pending[key] = datagram
        if len(datagram.pieces) >= MAX_FRAGMENTS_PER_DATAGRAM:
            self._drop(key)  # a flood of tiny or repeated fragments: give up on it
            return None
        datagram.pieces.append((offset, claimed_length, captured))
        datagram.captured += len(captured)
        self._pending_bytes += len(captured)
        if not more:
            datagram.total = offset + claimed_length
        if datagram.total < 0 or not _covers(datagram.pieces, datagram.total):
            self._evict_over_budget()
            return None
        del self._pending[key]
        self._pending_bytes -= datagram.captured
        return _assemble(datagram.pieces, datagram.total), datagram.total

    def _expire(self, frame: int, ts_ns: int) -> None:
        pending = self._pending
        while pending:
            key, oldest = next(iter(pending.items()))
            if (
                frame - oldest.first_frame <= REASSEMBLY_TIMEOUT_FRAMES
                and ts_ns - oldest.first_ts <= REASSEMBLY_TIMEOUT_NS
            ):
                return
            self._drop(key)

    def _evict_over_budget(self) -> None:
        while self._pending and (
            len(self._pending) > MAX_PENDING_DATAGRAMS or self._pending_bytes > MAX_PENDING_BYTES
        ):
            self._drop(next(iter(self._pending)))

    def _drop(self, key: tuple[object, ...]) -> None:
        datagram = self._pending.pop(key)
        self._pending_bytes -= datagram.captured
        self.expired += 1

    @property
    def pending(self) -> int:
        return len(self._pending)


def _covers(pieces: list[tuple[int, int, bytes]], total: int) -> bool:
    reached = 0
    for offset, length, _ in sorted(pieces, key=lambda piece: piece[0]):
        if offset > reached:
            return False
        reached = max(reached, offset + length)
    return reached >= total


def _assemble(pieces: list[tuple[int, int, bytes]], total: int) -> bytes:
    buffer = bytearray(total)
    captured_until = 0  # first byte not captured, scanning in offset order
    for offset, _length, data in sorted(pieces, key=lambda piece: piece[0]):
        chunk = data[: max(0, total - offset)]  # nothing past the last fragment's end
        buffer[offset : offset + len(chunk)] = chunk  # same length: the buffer never resizes
        if offset <= captured_until:
            captured_until = max(captured_until, offset + len(chunk))
    return bytes(buffer[: min(total, captured_until)])


def _fast_packet(number: int, ts_ns: int, fields: TcpFields) -> DecodedPacket:
    """The DecodedPacket of a frame ``Decoder.fast_tcp_fields`` took."""
    version = fields[0]
    packet = DecodedPacket(number, ts_ns, _IPV4_CLASS if version == 4 else _IPV6_CLASS)
    packet.link_header_len = 14
    packet.ip_version = version
    packet.proto = PROTO_TCP
    endpoints = fields[1]
    address_length = (len(endpoints) - 4) >> 1
    packet.src = endpoints[:address_length]
    packet.dst = endpoints[address_length : 2 * address_length]
    packet.ttl = fields[2]
    packet.sport = fields[3]
    packet.dport = fields[4]
    packet.seq = fields[5]
    packet.ack = fields[6]
    packet.tcp_flags = fields[7]
    packet.window = fields[8]
    packet.payload_len = fields[9]
    packet.tcp_options = fields[10][fields[11] : fields[12]]
    return packet


class Decoder:
    """Stateful decoder of one capture: fragment reassembly and classification counts."""

    def __init__(self) -> None:
        self._class_counts = {klass: 0 for klass in FrameClass}
        # Frames counted by the hot path (``fast_tcp_fields``), by IP version
        self._fast_ipv4 = 0
        self._fast_ipv6 = 0
        self._truncated = 0
        self._tunnelled = 0
        self._fragments = 0
        self._reassembler = Reassembler()
        self._link_decoders: dict[int, Callable[[DecodedPacket, bytes], FrameClass]] = {
            0: self._link_null,
            108: self._link_loop,
            113: self._link_sll,
            276: self._link_sll2,
            101: self._link_raw,
            12: self._link_raw,
            14: self._link_raw,
            228: self._link_raw_ipv4,
            229: self._link_raw_ipv6,
            104: self._link_chdlc,
            9: self._link_ppp,
            50: self._link_ppp,
            242: self._link_ipoib,
            226: self._link_ipnet,
            105: self._link_ieee80211,
            127: self._link_radiotap,
            LINKTYPE_NONE: _link_none,
        }

    def counts(self) -> DecodeCounts:
        counts = self._class_counts
        return DecodeCounts(
            ipv4=counts[_IPV4_CLASS] + self._fast_ipv4,
            ipv6=counts[_IPV6_CLASS] + self._fast_ipv6,
            arp=counts[_ARP_CLASS],
            other=counts[_OTHER],
            undecodable=counts[_UNDECODABLE],
            truncated=self._truncated,
            tunnelled=self._tunnelled,
            fragments=self._fragments,
        )

    # -- entry point -----------------------------------------------------------

    def decode(self, frame: RawFrame) -> DecodedPacket:
        data = frame.data
        caplen = frame.caplen
        wirelen = frame.wirelen
        if frame.linktype == 1:
            fields = self.fast_tcp_fields(caplen, wirelen, data, 0, len(data), 0, 1)
            if fields[0]:
                return _fast_packet(frame.number, frame.ts_ns, fields)
        return self.decode_general(
            frame.number, frame.ts_ns, frame.linktype, caplen, wirelen, data, 0, len(data)
        )

    def fast_tcp_fields(
        self,
        caplen: int,
        wirelen: int,
        buffer: bytes,
        start: int,
        end: int,
        share: int,
        shares: int,
    ) -> TcpFields:
        """The hot path: an Ethernet frame (``buffer[start:end]``) carrying IPv4 without
        options or IPv6 without extension headers, and an unfragmented TCP segment
        whose header was captured, read byte by byte; or ``_NOT_FAST`` (IP
        version 0) for anything else or any doubt.

        When the IP version is not 0, the frame is decoded and counted (its class
        is IPv4 or IPv6, link header 14 bytes, proto TCP, not tunnelled): the
        analysis pass gives the fields straight to the TCP tracker, ``decode``
        fills a ``DecodedPacket`` with them. Otherwise nothing is counted, and the
        general path gives the same result more slowly. With ``shares`` above 1,
        a frame of a conversation outside ``share`` is counted and its fields
        left unread: ``OTHER_SHARE`` (one file analysed by several processes,
        each of which reads every frame: shares.py).
        """
        if end - start < 54:
            return _NOT_FAST
        # The header is read byte by byte: compiled, each index is a native
        # load and each field a native int, where struct.unpack_from made a
        # tuple and an int object for every field above 256 (issue 6).
        ethertype_high = buffer[start + 12]
        if ethertype_high == 0x86 and buffer[start + 13] == 0xDD:
            return self._fast_ipv6_tcp_fields(caplen, wirelen, buffer, start, end, share, shares)
        total_length = buffer[start + 16] << 8 | buffer[start + 17]
        if not (
            ethertype_high == 0x08
            and buffer[start + 13] == 0x00
            and buffer[start + 14] == 0x45  # IPv4, header without options
            and buffer[start + 23] == PROTO_TCP
            and not buffer[start + 20] & 0x3F  # fragment offset and MF: 0
            and not buffer[start + 21]
            and total_length >= 40
        ):
            return _NOT_FAST
        return self._fast_tcp(
            4,
            caplen < wirelen,
            buffer,
            start + 34,
            min(start + 14 + total_length, end),
            total_length - 20,
            start + 26,  # addresses and ports: packed_endpoints
            buffer[start + 22],
            share,
            shares,
        )

    def _fast_ipv6_tcp_fields(
        self,
        caplen: int,
        wirelen: int,
        buffer: bytes,
        start: int,
        end: int,
        share: int,
        shares: int,
    ) -> TcpFields:
        """``fast_tcp_fields`` of an Ethernet frame carrying IPv6 (as ``_ipv6`` and
        ``_tcp`` decode it when the TCP header follows the IPv6 header directly)."""
        if end - start < 74:
            return _NOT_FAST
        payload_length = buffer[start + 18] << 8 | buffer[start + 19]
        # A payload length of 0 (jumbogram, offload) is left to the general path.
        if buffer[start + 14] >> 4 != 6 or buffer[start + 20] != PROTO_TCP or payload_length < 20:
            return _NOT_FAST
        return self._fast_tcp(
            6,
            caplen < wirelen,
            buffer,
            start + 54,
            min(start + 54 + payload_length, end),
            payload_length,
            start + 22,  # addresses and ports: packed_endpoints
            buffer[start + 21],
            share,
            shares,
        )

    def _fast_tcp(
        self,
        version: int,
        truncated: bool,
        buffer: bytes,
        tcp_start: int,
        ip_end: int,
        claimed: int,
        endpoints_start: int,
        ttl: int,
        share: int,
        shares: int,
    ) -> TcpFields:
        """The TCP part of the hot path, as ``_tcp`` reads it: the segment at
        ``tcp_start`` in an IP packet whose captured bytes end at ``ip_end`` and
        whose header claims ``claimed`` bytes of payload, its ``packed_endpoints``
        at ``endpoints_start``. The caller made sure that the fixed 20-byte
        header is in ``buffer``. Counts the frame when it takes it."""
        header_length = (buffer[tcp_start + 12] >> 4) << 2
        if header_length < 20 or tcp_start + header_length > ip_end:
            return _NOT_FAST  # cut or bogus: the general path flags it
        if version == 4:
            self._fast_ipv4 += 1
        else:
            self._fast_ipv6 += 1
        if truncated:
            self._truncated += 1
        address_length = 4 if version == 4 else 16
        if shares > 1 and endpoints_share(buffer, endpoints_start, address_length, shares) != share:
            return OTHER_SHARE  # counted; another process follows its conversation
        endpoints = buffer[endpoints_start : endpoints_start + 2 * address_length + 4]
        payload = claimed - header_length
        sport: int
        dport: int
        seq: int
        ack: int
        flags: int
        window: int
        if COMPILED:
            sport = buffer[tcp_start] << 8 | buffer[tcp_start + 1]
            dport = buffer[tcp_start + 2] << 8 | buffer[tcp_start + 3]
            seq = big_endian_u32(buffer, tcp_start + 4)
            ack = big_endian_u32(buffer, tcp_start + 8)
            flags = buffer[tcp_start + 13]
            window = buffer[tcp_start + 14] << 8 | buffer[tcp_start + 15]
        else:  # one unpack is the interpreter's faster way (packet.COMPILED)
            sport, dport, seq, ack, _, flags, window = _TCP.unpack_from(buffer, tcp_start)
        return (
            version,
            endpoints,
            ttl,
            sport,
            dport,
            seq,
            ack,
            flags,
            window,
            payload if payload > 0 else 0,
            buffer,
            tcp_start + 20,
            tcp_start + header_length,
        )

    def decode_general(
        self,
        number: int,
        ts_ns: int,
        linktype: int,
        caplen: int,
        wirelen: int,
        buffer: bytes,
        start: int,
        end: int,
    ) -> DecodedPacket:
        """``decode`` of a frame given as the fields of its ``RawFrame``, its bytes being
        ``buffer[start:end]``, that ``fast_tcp_fields`` did not take."""
        packet = DecodedPacket(number, ts_ns, _UNDECODABLE)
        if caplen < wirelen:
            self._truncated += 1
        data = buffer if start == 0 and end == len(buffer) else buffer[start:end]
        if linktype == 1:
            klass = self._ethernet(packet, data, 0, 0)
        else:
            link_decoder = self._link_decoders.get(linktype)
            if link_decoder is None:
                klass = _OTHER if linktype in _KNOWN_NON_IP_LINKS else _UNDECODABLE
            else:
                klass = link_decoder(packet, data)
        packet.frame_class = klass
        self._class_counts[klass] += 1
        if packet.tunnelled:
            self._tunnelled += 1
        return packet

    # -- link layers -----------------------------------------------------------

    def _ethernet(self, packet: DecodedPacket, data: bytes, offset: int, depth: int) -> FrameClass:
        """Ethernet II / 802.3 at ``offset``; VLAN tags count into the link header."""
        if len(data) < offset + 14:
            if depth == 0:
                packet.link_header_len = min(len(data), 14)
            return _UNDECODABLE
        ethertype = _U16.unpack_from(data, offset + 12)[0]
        offset += 14
        while ethertype in ETH_VLAN_TYPES:
            if len(data) < offset + 4:
                return _UNDECODABLE
            ethertype = _U16.unpack_from(data, offset + 2)[0]
            offset += 4
        if depth == 0:
            packet.link_header_len = offset
        if ethertype == ETH_IPV4:
            # Tested first, the most common ethertype here too (IPv4 frames the
            # fast path left: UDP, ICMP, options, fragments), straight to IPv4.
            return self._ipv4(packet, data, offset, depth)
        if ethertype < 0x0600:
            # 802.3 length field: LLC. IP only behind a SNAP header with a zero
            # OUI (RFC 1042); STP, CDP, DTP and the rest are "other".
            snap_type = _snap_ethertype(data, offset)
            if snap_type < 0:
                return _OTHER
            if depth == 0:
                packet.link_header_len = offset + 8  # tcpdump dumps after LLC/SNAP
            return self._ethertype(packet, data, offset + 8, snap_type, depth)
        return self._ethertype(packet, data, offset, ethertype, depth)

    def _ethertype(
        self, packet: DecodedPacket, data: bytes, offset: int, ethertype: int, depth: int
    ) -> FrameClass:
        """Dispatch on an ethertype found after a link header or inside a tunnel."""
        if depth > MAX_DEPTH:
            return _UNDECODABLE
        # VLAN tags and Cisco metadata are tags, not tunnels: looped over, and
        # the IP behind them is not "tunnelled".
        while ethertype in ETH_VLAN_TYPES or ethertype == ETH_CISCO_METADATA:
            if ethertype == ETH_CISCO_METADATA:
                # version, length, option type/length, SGT, then the ethertype
                if len(data) < offset + 8:
                    return _UNDECODABLE
                ethertype = _U16.unpack_from(data, offset + 6)[0]
                offset += 8
            else:
                if len(data) < offset + 4:
                    return _UNDECODABLE
                ethertype = _U16.unpack_from(data, offset + 2)[0]
                offset += 4
        if ethertype == ETH_IPV4:
            return self._ipv4(packet, data, offset, depth)
        if ethertype == ETH_IPV6:
            return self._ipv6(packet, data, offset, depth)
        if ethertype == ETH_ARP:
            return _arp(packet, data, offset)
        if ethertype == ETH_PPPOE_SESSION:
            # version/type, code, session id, length; then a 2-byte PPP protocol
            if len(data) < offset + 8:
                return _UNDECODABLE
            return self._ppp_protocol(packet, data, offset + 6, depth + 1)
        if ethertype in ETH_MPLS:
            return self._mpls(packet, data, offset, depth + 1)
        return _OTHER

    def _ppp_protocol(
        self, packet: DecodedPacket, data: bytes, offset: int, depth: int
    ) -> FrameClass:
        """A PPP protocol field (1 byte when compressed: odd first byte)."""
        if len(data) < offset + 1:
            return _UNDECODABLE
        if data[offset] & 1:
            protocol = data[offset]
            offset += 1
        else:
            if len(data) < offset + 2:
                return _UNDECODABLE
            protocol = _U16.unpack_from(data, offset)[0]
            offset += 2
        if protocol == 0x0021:
            return self._ipv4(packet, data, offset, depth)
        if protocol == 0x0057:
            return self._ipv6(packet, data, offset, depth)
        if protocol == 0x0281:  # MPLS unicast over PPP
            return self._mpls(packet, data, offset, depth + 1)
        return _OTHER

    def _mpls(self, packet: DecodedPacket, data: bytes, offset: int, depth: int) -> FrameClass:
        """An MPLS label stack; the payload after bottom-of-stack is guessed by its first nibble,
        as Wireshark does (4: IPv4, 6: IPv6, 0: pseudowire control word + Ethernet)."""
        while True:
            if len(data) < offset + 4:
                return _UNDECODABLE
            entry = _U32.unpack_from(data, offset)[0]
            offset += 4
            if entry & 0x100:  # bottom of stack
                break
        if len(data) <= offset:
            return _OTHER
        nibble = data[offset] >> 4
        if nibble == 4:
            return self._ipv4(packet, data, offset, depth)
        if nibble == 6:
            return self._ipv6(packet, data, offset, depth)
        if nibble == 0:
            return self._ethernet(packet, data, offset + 4, depth + 1)
        return _OTHER

    def _link_null(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        """BSD loopback: a 4-byte address family in the capturing host's byte order.

        Guessed the way Wireshark's null dissector guesses on a little-endian
        host: an IRIX-style 16-bit family in the first two bytes, a swapped
        family, and a value above 1500 taken as an ethertype (its low 16 bits).
        """
        packet.link_header_len = 4
        if len(data) < 4:
            return _UNDECODABLE
        value = _U32_LE.unpack_from(data, 0)[0]
        if value & 0xFFFF0000:
            if not value & 0xFF000000 and value & 0x00FF0000 < 0x00060000:
                value >>= 16
            else:
                value = _U32.unpack_from(data, 0)[0]
        elif not value & 0xFF and value & 0xFF00:
            value >>= 8  # a 16-bit family, byte-swapped
        if value > 1500:
            ethertype = value & 0xFFFF
            if ethertype < 0x0600:
                return _OTHER
            return self._ethertype(packet, data, 4, ethertype, 0)
        return self._loopback_family(packet, data, value)

    def _link_loop(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        """OpenBSD loopback: like NULL, but the family is always big-endian."""
        packet.link_header_len = 4
        if len(data) < 4:
            return _UNDECODABLE
        return self._loopback_family(packet, data, _U32.unpack_from(data, 0)[0])

    def _loopback_family(self, packet: DecodedPacket, data: bytes, family: int) -> FrameClass:
        if family == _AF_INET:
            return self._ipv4(packet, data, 4, 0)
        if family in _AF_INET6:
            return self._ipv6(packet, data, 4, 0)
        return _OTHER

    def _link_sll(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        """Linux cooked capture v1: 16 bytes, protocol at offset 14."""
        packet.link_header_len = 16
        if len(data) < 16:
            return _UNDECODABLE
        return self._cooked_protocol(packet, data, 16, _U16.unpack_from(data, 14)[0])

    def _link_sll2(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        """Linux cooked capture v2 (``tcpdump -i any``): 20 bytes, protocol first."""
        packet.link_header_len = 20
        if len(data) < 20:
            return _UNDECODABLE
        return self._cooked_protocol(packet, data, 20, _U16.unpack_from(data, 0)[0])

    def _cooked_protocol(
        self, packet: DecodedPacket, data: bytes, offset: int, protocol: int
    ) -> FrameClass:
        if protocol < 0x0600:
            return _OTHER  # 802.2 LLC, 802.3, CAN and other pseudo protocols
        return self._ethertype(packet, data, offset, protocol, 0)

    def _link_raw(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        """Raw IP: the version nibble tells IPv4 from IPv6."""
        packet.link_header_len = 0
        if not data:
            return _UNDECODABLE
        version = data[0] >> 4
        if version == 4:
            return self._ipv4(packet, data, 0, 0)
        if version == 6:
            return self._ipv6(packet, data, 0, 0)
        return _UNDECODABLE

    def _link_raw_ipv4(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        packet.link_header_len = 0
        return self._ipv4(packet, data, 0, 0)

    def _link_raw_ipv6(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        packet.link_header_len = 0
        return self._ipv6(packet, data, 0, 0)

    def _link_chdlc(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        """Cisco HDLC: address, control, then an ethertype (0x8035 SLARP is "other")."""
        packet.link_header_len = 4
        if len(data) < 4:
            return _UNDECODABLE
        ethertype = _U16.unpack_from(data, 2)[0]
        if ethertype < 0x0600:
            return _OTHER
        return self._ethertype(packet, data, 4, ethertype, 0)

    def _link_ppp(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        """PPP (9) and PPP in HDLC-like framing (50); address/control 0xff 0x03 optional.

        libpcap also writes Cisco HDLC frames (address 0x0f/0x8f) as link type 50.
        """
        if len(data) < 2:
            packet.link_header_len = len(data)
            return _UNDECODABLE
        if data[0] in (0x0F, 0x8F):
            return self._link_chdlc(packet, data)
        offset = 2 if data[0] == 0xFF and data[1] == 0x03 else 0
        packet.link_header_len = offset + (1 if len(data) > offset and data[offset] & 1 else 2)
        return self._ppp_protocol(packet, data, offset, 0)

    def _link_ipnet(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        """Solaris ipnet (226): a 24-byte header whose second byte is the address family
        (2 IPv4, 26 IPv6 on Solaris)."""
        packet.link_header_len = 24
        if len(data) < 24:
            return _UNDECODABLE
        if data[1] == _AF_INET:
            return self._ipv4(packet, data, 24, 0)
        if data[1] == 26:
            return self._ipv6(packet, data, 24, 0)
        return _OTHER

    def _link_radiotap(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        """Radiotap (127): a little-endian length at offset 2, then an 802.11 frame."""
        if len(data) < 8:
            return _UNDECODABLE
        length = _U16_LE.unpack_from(data, 2)[0]
        if length < 8 or length > len(data):
            return _UNDECODABLE
        return self._ieee80211(packet, data, length)

    def _link_ieee80211(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        return self._ieee80211(packet, data, 0)

    def _ieee80211(self, packet: DecodedPacket, data: bytes, offset: int) -> FrameClass:
        """802.11: unprotected data frames with an RFC 1042 SNAP header carry IP or ARP;
        management, control and encrypted frames are "other"."""
        if len(data) < offset + 10:
            return _UNDECODABLE
        control, flags = data[offset], data[offset + 1]
        frame_type = (control >> 2) & 0x3
        subtype = control >> 4
        if frame_type == 1:  # control frames: ACK and CTS have 10 bytes, the rest 16
            packet.link_header_len = offset + (10 if subtype in (12, 13) else 16)
            return _OTHER
        header = 24
        if frame_type == 2:
            if flags & 0x03 == 0x03:  # to and from the distribution system: 4 addresses
                header += 6
            if subtype & 0x8:  # QoS data
                header += 2
                if flags & 0x80:  # +HTC
                    header += 4
        packet.link_header_len = offset + header
        if frame_type != 2 or subtype & 0x4 or flags & 0x40:  # not data, null data, protected
            return _OTHER
        ethertype = _snap_ethertype(data, offset + header)
        if ethertype < 0:
            return _OTHER
        packet.link_header_len = offset + header + 8
        return self._ethertype(packet, data, offset + header + 8, ethertype, 0)

    def _link_ipoib(self, packet: DecodedPacket, data: bytes) -> FrameClass:
        """IP over InfiniBand (242): a 44-byte pseudo header (source and destination
        hardware addresses), the ethertype at offset 40, 2 reserved bytes."""
        packet.link_header_len = 44
        if len(data) < 44:
            return _UNDECODABLE
        ethertype = _U16.unpack_from(data, 40)[0]
        return self._ethertype(packet, data, 44, ethertype, 0)

    # -- network layer -----------------------------------------------------------

    def _ipv4(self, packet: DecodedPacket, data: bytes, offset: int, depth: int) -> FrameClass:
        if len(data) - offset < 20:
            return _UNDECODABLE
        (
            version_ihl,
            _tos,
            total_length,
            identification,
            flags_fragment,
            ttl,
            protocol,
            _checksum,
            source,
            destination,
        ) = _IPV4.unpack_from(data, offset)
        header_length = (version_ihl & 0x0F) << 2
        if version_ihl >> 4 != 4 or header_length < 20 or offset + header_length > len(data):
            return _UNDECODABLE
        if total_length < header_length:
            if total_length:
                return _UNDECODABLE
            # 0: TCP segmentation offload left the length out; use what was captured.
            total_length = len(data) - offset
        if depth:
            _enter_tunnel(packet)
        packet.ip_version = 4
        packet.src = source
        packet.dst = destination
        packet.proto = protocol
        packet.ttl = ttl
        start = offset + header_length
        claimed = total_length - header_length  # payload length the header claims
        # Ending at the claimed length drops Ethernet padding; the capture may end earlier.
        end = min(offset + total_length, len(data))
        if flags_fragment & 0x3FFF:  # more fragments, or a non-zero offset
            self._fragments += 1
            reassembled = self._reassembler.add(
                (source, destination, identification, protocol),
                (flags_fragment & 0x1FFF) << 3,
                bool(flags_fragment & 0x2000),
                claimed,
                data[start:end],
                packet.frame,
                packet.ts_ns,
            )
            if reassembled is None:
                packet.fragment = None
                return _IPV4_CLASS
            packet.fragment = True
            data, claimed = reassembled
            start, end = 0, len(data)
        if protocol == PROTO_TCP:
            _tcp(packet, data, start, end, claimed)
        else:
            self._transport(packet, data, start, end, claimed, protocol, depth)
        return _IPV4_CLASS

    def _ipv6(self, packet: DecodedPacket, data: bytes, offset: int, depth: int) -> FrameClass:
        if len(data) - offset < 40:
            return _UNDECODABLE
        version_flow, payload_length, next_header, hop_limit, source, destination = (
            _IPV6.unpack_from(data, offset)
        )
        if version_flow >> 28 != 6:
            return _UNDECODABLE
        if depth:
            _enter_tunnel(packet)
        packet.ip_version = 6
        packet.src = source
        packet.dst = destination
        packet.ttl = hop_limit
        start = offset + 40
        if payload_length == 0:  # jumbogram or offloaded: use what was captured
            payload_length = len(data) - start
        claimed_end = start + payload_length
        end = min(claimed_end, len(data))
        # Walk the extension headers to the upper-layer protocol.
        while True:
            if next_header in _IPV6_EXTENSIONS or next_header == PROTO_AH:
                if end - start < 8:
                    break
                length_field = data[start + 1]
                if next_header == PROTO_AH:
                    length = (length_field + 2) * 4
                else:
                    length = (length_field + 1) * 8
                next_header = data[start]
                start += length
                continue
            if next_header == IPV6_FRAGMENT:
                if end - start < 8:
                    break
                following = data[start]
                offset_flags = _U16.unpack_from(data, start + 2)[0]
                identification = _U32.unpack_from(data, start + 4)[0]
                start += 8
                next_header = following
                if offset_flags & 0xFFF9 == 0:
                    continue  # atomic fragment (offset 0, no more fragments)
                self._fragments += 1
                reassembled = self._reassembler.add(
                    (source, destination, identification, 6),
                    offset_flags & 0xFFF8,
                    bool(offset_flags & 1),
                    claimed_end - start,
                    data[start:end],
                    packet.frame,
                    packet.ts_ns,
                )
                if reassembled is None:
                    packet.proto = next_header
                    packet.fragment = None
                    return _IPV6_CLASS
                packet.fragment = True
                data, claimed_end = reassembled
                start, end = 0, len(data)
                continue
            break
        packet.proto = next_header
        if start > end:
            packet.l4_truncated = True
            return _IPV6_CLASS
        claimed = claimed_end - start
        if next_header == PROTO_TCP:
            _tcp(packet, data, start, end, claimed)
        else:
            self._transport(packet, data, start, end, claimed, next_header, depth)
        return _IPV6_CLASS

    # -- transport layer -----------------------------------------------------------

    def _transport(
        self,
        packet: DecodedPacket,
        data: bytes,
        start: int,
        end: int,
        claimed: int,
        protocol: int,
        depth: int,
    ) -> None:
        """Anything but TCP after an IP header: UDP (and its tunnels), ICMP, IP tunnels."""
        if protocol == PROTO_UDP:
            if end - start < 8:
                packet.l4_truncated = True
                if end - start >= 4:
                    packet.sport, packet.dport = _PORTS.unpack_from(data, start)
                return
            sport, dport = _PORTS.unpack_from(data, start)
            packet.sport = sport
            packet.dport = dport
            packet.payload_len = max(0, claimed - 8)
            if depth < MAX_DEPTH:
                if dport == UDP_VXLAN and end - start >= 16 + 14:
                    self._ethernet(packet, data, start + 16, depth + 1)
                elif UDP_GTP_U in (sport, dport):
                    self._gtp_u(packet, data, start + 8, end, depth + 1)
                elif UDP_L2TP in (sport, dport):
                    self._l2tp(packet, data, start + 8, end, depth + 1)
            return
        if protocol == PROTO_ICMP:
            _icmp(packet, data, start, end, claimed)
            return
        if protocol == PROTO_ICMPV6:
            _icmp(packet, data, start, end, claimed, 6)
            return
        if depth >= MAX_DEPTH:
            return
        if protocol == PROTO_IPIP:
            self._ipv4(packet, data[:end], start, depth + 1)
        elif protocol == PROTO_IPV6:
            self._ipv6(packet, data[:end], start, depth + 1)
        elif protocol == PROTO_GRE:
            self._gre(packet, data[:end], start, depth + 1)
        elif protocol == PROTO_IPCOMP:
            self._ipcomp(packet, data, start, end, depth + 1)

    def _gre(self, packet: DecodedPacket, data: bytes, offset: int, depth: int) -> None:
        """GRE (RFC 2784/2890, and PPTP's enhanced version 1) with its optional fields."""
        if len(data) < offset + 4:
            return
        flags_version, protocol = _PORTS.unpack_from(data, offset)
        version = flags_version & 0x7
        length = 4
        if version == 0:
            if flags_version & 0xC000:  # checksum or routing present: checksum + offset
                length += 4
            if flags_version & 0x2000:  # key
                length += 4
            if flags_version & 0x1000:  # sequence number
                length += 4
            if flags_version & 0x4000:
                return  # source routing entries (RFC 1701): not followed
        elif version == 1:
            length += 4  # payload length and call id
            if flags_version & 0x1000:
                length += 4
            if flags_version & 0x0080:  # acknowledgment number
                length += 4
        else:
            return
        offset += length
        if len(data) < offset:
            return
        if protocol == ETH_TRANSPARENT_BRIDGING:
            self._ethernet(packet, data, offset, depth)
        elif protocol == ETH_ERSPAN_2:
            # ERSPAN type I has no header (and no sequence number); type II has 8 bytes.
            self._ethernet(packet, data, offset + (8 if flags_version & 0x1000 else 0), depth)
        elif protocol == ETH_ERSPAN_3:
            if len(data) >= offset + 12:
                optional = 8 if data[offset + 11] & 0x01 else 0
                self._ethernet(packet, data, offset + 12 + optional, depth)
        elif protocol == ETH_PPP:
            skip = 2 if data[offset : offset + 2] == b"\xff\x03" else 0
            self._ppp_protocol(packet, data, offset + skip, depth)
        elif protocol == ETH_CISCO_METADATA:
            # In GRE the Cisco metadata header starts with the inner ethertype.
            if len(data) >= offset + 8:
                inner = _U16.unpack_from(data, offset)[0]
                self._ethertype(packet, data, offset + 8, inner, depth)
        else:
            self._ethertype(packet, data, offset, protocol, depth)

    def _gtp_u(self, packet: DecodedPacket, data: bytes, offset: int, end: int, depth: int) -> None:
        """GTP-U (version 1) G-PDU: the user's IP packet after the header and extensions."""
        if end - offset < 8:
            return
        flags = data[offset]
        if flags >> 5 != 1 or data[offset + 1] != 0xFF:  # not GTPv1, or not a G-PDU
            return
        position = offset + 8
        if flags & 0x07:  # sequence number, N-PDU number, next extension type present
            if end - position < 4:
                return
            next_extension = data[position + 3]
            position += 4
            while next_extension and flags & 0x04:
                if end - position < 4:
                    return
                length = data[position] * 4
                if length == 0:
                    return
                next_extension = data[position + length - 1] if end - position >= length else 0
                position += length
        if end <= position:
            return
        version = data[position] >> 4
        if version == 4:
            self._ipv4(packet, data[:end], position, depth)
        elif version == 6:
            self._ipv6(packet, data[:end], position, depth)

    def _l2tp(self, packet: DecodedPacket, data: bytes, offset: int, end: int, depth: int) -> None:
        """L2TPv2 (RFC 2661) data messages carry a PPP frame; control messages are skipped."""
        if end - offset < 6:
            return
        flags = _U16.unpack_from(data, offset)[0]
        if flags & 0x8000 or flags & 0x000F != 2:  # control message, or not version 2
            return
        position = offset + 2
        if flags & 0x4000:  # length
            position += 2
        position += 4  # tunnel id, session id
        if flags & 0x0800:  # Ns, Nr
            position += 4
        if flags & 0x0200:  # offset size, then that much padding
            if end - position < 2:
                return
            position += 2 + _U16.unpack_from(data, position)[0]
        if end - position < 2:
            return
        if data[position] == 0xFF and data[position + 1] == 0x03:
            position += 2
        self._ppp_protocol(packet, data[:end], position, depth)

    def _ipcomp(self, packet: DecodedPacket, data: bytes, start: int, end: int, depth: int) -> None:
        """IPComp (RFC 3173) with DEFLATE, as Wireshark decompresses it: the payload is
        usually a whole tunnelled IP packet."""
        if end - start < 4:
            return
        next_header = data[start]
        try:
            inflated = zlib.decompressobj(-15).decompress(data[start + 4 : end], MAX_DATAGRAM)
        except zlib.error:
            return
        if next_header == PROTO_IPV6:
            self._ipv6(packet, inflated, 0, depth)
        elif next_header == PROTO_IPIP:
            self._ipv4(packet, inflated, 0, depth)
        elif next_header == PROTO_TCP:
            packet.proto = PROTO_TCP
            _tcp(packet, inflated, 0, len(inflated), len(inflated))
        else:
            packet.proto = next_header
            self._transport(packet, inflated, 0, len(inflated), len(inflated), next_header, depth)


# Link types Wireshark knows but that carry no IP for netdiag's purposes: their
# frames are "other", not undecodable. Prism and AVS radio headers, PPI,
# Bluetooth HCI (two kinds) and LE, netlink, USB (two kinds), 802.15.4 (two
# kinds), SocketCAN.
_KNOWN_NON_IP_LINKS: Final = frozenset((119, 163, 192, 187, 201, 251, 253, 220, 189, 195, 215, 227))


def _snap_ethertype(data: bytes, offset: int) -> int:
    """The ethertype behind an RFC 1042 LLC/SNAP header at ``offset``, or -1."""
    if data[offset : offset + 6] != b"\xaa\xaa\x03\x00\x00\x00" or len(data) < offset + 8:
        return -1
    ethertype: int = _U16.unpack_from(data, offset + 6)[0]
    return ethertype


def _link_none(packet: DecodedPacket, data: bytes) -> FrameClass:
    """A pcapng custom block listed as a frame: no packet in it."""
    return _OTHER


def _enter_tunnel(packet: DecodedPacket) -> None:
    """An inner IP header was found: the packet now describes it, not the outer one."""
    packet.tunnelled = True
    packet.sport = packet.dport = 0
    packet.payload_len = 0
    packet.l4_truncated = False
    packet.fragment = False


def _arp(packet: DecodedPacket, data: bytes, offset: int) -> FrameClass:
    """ARP: sender and target protocol addresses into src/dst when they are IPv4."""
    if len(data) < offset + 8:
        return _UNDECODABLE
    _hardware, protocol, hardware_length, protocol_length, opcode = _ARP.unpack_from(data, offset)
    packet.arp_op = opcode
    if protocol == ETH_IPV4 and protocol_length == 4:
        sender = offset + 8 + hardware_length
        target = sender + 4 + hardware_length
        if len(data) >= target + 4:
            packet.src = data[sender : sender + 4]
            packet.dst = data[target : target + 4]
    return _ARP_CLASS


def _tcp(packet: DecodedPacket, data: bytes, start: int, end: int, claimed: int) -> None:
    if end - start < 20:
        packet.l4_truncated = True
        if end - start >= 4:
            packet.sport, packet.dport = _PORTS.unpack_from(data, start)
        return
    (
        packet.sport,
        packet.dport,
        packet.seq,
        packet.ack,
        data_offset,
        packet.tcp_flags,
        packet.window,
    ) = _TCP.unpack_from(data, start)
    header_length = (data_offset >> 4) << 2
    if header_length > 20:
        if start + header_length > end:
            packet.l4_truncated = True
        packet.tcp_options = data[start + 20 : min(start + header_length, end)]
    elif header_length < 20:
        packet.l4_truncated = True  # bogus data offset: header unusable beyond the fixed part
        header_length = 20
    payload = claimed - header_length
    packet.payload_len = payload if payload > 0 else 0


def _icmp(
    packet: DecodedPacket, data: bytes, start: int, end: int, claimed: int, version: int = 4
) -> None:
    """ICMP (``version`` 4) or ICMPv6 (6): type, code, echo id/seq, MTU, quoted header."""
    if end - start < 8:
        packet.l4_truncated = True
        if end - start >= 2:
            packet.icmp_type = data[start]
            packet.icmp_code = data[start + 1]
        return
    icmp_type, code, checksum, identifier, sequence = _ICMP.unpack_from(data, start)
    packet.icmp_type = icmp_type
    packet.icmp_code = code
    packet.icmp_checksum = checksum
    packet.payload_len = max(0, claimed - 8)
    if version == 4:
        if icmp_type in (0, 8):
            packet.icmp_id = identifier
            packet.icmp_seq = sequence
        elif icmp_type in _ICMP_ERRORS:
            if icmp_type == 3 and code == 4:
                packet.icmp_mtu = sequence  # next-hop MTU (RFC 1191) in the low 16 bits
            packet.icmp_quoted = _quoted_ipv4(data, start + 8, end)
    elif icmp_type in (128, 129):
        packet.icmp_id = identifier
        packet.icmp_seq = sequence
    elif icmp_type in _ICMPV6_ERRORS:
        if icmp_type == 2:  # packet too big: a 32-bit MTU
            packet.icmp_mtu = (identifier << 16) | sequence
        packet.icmp_quoted = _quoted_ipv6(data, start + 8, end)


def _quoted_ports(data: bytes, start: int, end: int, protocol: int) -> tuple[int, int]:
    if protocol in (PROTO_TCP, PROTO_UDP, 132, 33) and end - start >= 4:
        ports: tuple[int, int] = _PORTS.unpack_from(data, start)
        return ports
    return 0, 0


def _quoted_ipv4(data: bytes, start: int, end: int) -> tuple[bytes, bytes, int, int, int] | None:
    """(src, dst, proto, sport, dport) of the IPv4 header an ICMP error quotes."""
    if end - start < 20:
        return None
    version_ihl, *_, protocol, _checksum, source, destination = _IPV4.unpack_from(data, start)
    header_length = (version_ihl & 0x0F) << 2
    if version_ihl >> 4 != 4 or header_length < 20:
        return None
    sport, dport = _quoted_ports(data, start + header_length, end, protocol)
    return source, destination, protocol, sport, dport


def _quoted_ipv6(data: bytes, start: int, end: int) -> tuple[bytes, bytes, int, int, int] | None:
    """(src, dst, proto, sport, dport) of the IPv6 header an ICMPv6 error quotes."""
    if end - start < 40:
        return None
    version_flow, _length, next_header, _hops, source, destination = _IPV6.unpack_from(data, start)
    if version_flow >> 28 != 6:
        return None
    position = start + 40
    while next_header in _IPV6_EXTENSIONS or next_header in (PROTO_AH, IPV6_FRAGMENT):
        if end - position < 8:
            break
        if next_header == IPV6_FRAGMENT:
            length = 8
        elif next_header == PROTO_AH:
            length = (data[position + 1] + 2) * 4
        else:
            length = (data[position + 1] + 1) * 8
        next_header = data[position]
        position += length
    sport, dport = _quoted_ports(data, position, end, next_header)
    return source, destination, next_header, sport, dport
