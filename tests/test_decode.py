"""The decode boundary against tshark's truth and hand-built packets.

On every corpus file the decoder must classify each frame exactly once, find
the same TCP segments tshark gives a ``tcp.stream`` (endpoints, count and
payload bytes, tunnels opened, quoted headers in ICMP errors left out) and
the same ICMP echo requests (fragmented ones on their last fragment). Packets
built here byte by byte pin down each link layer, tunnel and header quirk;
random bytes under every link type must never raise.
"""

from __future__ import annotations

import ast
import shutil
import socket
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import pytest
from conftest import corpus_files, load_truth
from hypothesis import given, settings
from hypothesis import strategies as st

import netdiag
from netdiag.analysis import decode as decode_module
from netdiag.analysis.addr import format_addr, format_endpoint
from netdiag.analysis.decode import OTHER_SHARE, Decoder
from netdiag.analysis.packet import ACK, PSH, SYN, DecodedPacket, FrameClass, RawFrame
from netdiag.analysis.reader import LINKTYPE_NONE, CaptureReader
from netdiag.analysis.tcp import conversation_share

CORPUS = corpus_files()


def decode_file(path: Path) -> tuple[list[DecodedPacket], Decoder, int]:
    decoder = Decoder()
    with CaptureReader(path) as reader:
        packets = [decoder.decode(frame) for frame in reader]
        return packets, decoder, reader.info().packets


def is_tcp_segment(packet: DecodedPacket) -> bool:
    """A frame tshark gives a tcp.stream: TCP ports decoded (not a quoted header)."""
    return packet.proto == 6 and packet.fragment is not None and packet.sport != 0


def is_echo_request(packet: DecodedPacket) -> bool:
    return (packet.proto, packet.icmp_type) in ((1, 8), (58, 128))


@pytest.mark.parametrize("capture", CORPUS, ids=[path.name for path in CORPUS])
def test_corpus_decode_agrees_with_tshark(capture: Path) -> None:
    truth = load_truth(capture)
    packets, decoder, frame_count = decode_file(capture)
    counts = decoder.counts()

    classes = Counter(packet.frame_class for packet in packets)
    assert counts.ipv4 + counts.ipv6 + counts.arp + counts.other + counts.undecodable == frame_count
    assert counts.ipv4 == classes[FrameClass.IPV4] and counts.ipv6 == classes[FrameClass.IPV6]
    assert counts.truncated == truth["frames_caplen_lt_len"]
    assert counts.tunnelled == sum(packet.tunnelled for packet in packets)

    streams = truth["tcp_streams"]
    tcp = [packet for packet in packets if is_tcp_segment(packet)]
    assert len(tcp) == sum(stream["packets"] for stream in streams)
    assert sum(packet.payload_len for packet in tcp) == sum(
        stream["bytes_client_to_server"] + stream["bytes_server_to_client"] for stream in streams
    )
    endpoints = {
        frozenset((format_endpoint(p.src, p.sport), format_endpoint(p.dst, p.dport))) for p in tcp
    }
    assert endpoints == {frozenset((s["client"], s["server"])) for s in streams}
    assert {p.ip_version for p in tcp} == {s["ip_version"] for s in streams}

    requests = [packet for packet in packets if is_echo_request(packet)]
    assert len(requests) == truth["icmp_echo_requests"]
    expected = {(e["frame_req"], e["id"], e["seq"]) for e in truth["icmp_echo"]}
    expected |= {(e["frame_req"], e["id"], e["seq"]) for e in truth["icmp_echo_unanswered"]}
    assert {(p.frame, p.icmp_id, p.icmp_seq) for p in requests} == expected
    replies = {
        (p.frame, p.icmp_id, p.icmp_seq)
        for p in packets
        if (p.proto, p.icmp_type) in ((1, 0), (58, 129))
    }
    assert {(e["frame_rep"], e["id"], e["seq"]) for e in truth["icmp_echo"]} <= replies


ETHERNET_CORPUS = [path for path in CORPUS if load_truth(path)["header"].get("linktype") == 1]


def packet_fields() -> list[str]:
    """Every attribute ``DecodedPacket.__init__`` sets, read from packet.py's source.

    Not ``DecodedPacket.__slots__``: compiled by mypyc (``_compiled.py``) the
    class is native and has none.
    """
    # netdiag/analysis/packet.py (the compiled module's __file__ is under build/)
    source = (Path(netdiag.__file__).parent / "analysis" / "packet.py").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "DecodedPacket":
            init = next(
                item
                for item in node.body
                if isinstance(item, ast.FunctionDef) and item.name == "__init__"
            )
            return [
                target.attr
                for statement in ast.walk(init)
                if isinstance(statement, (ast.Assign, ast.AnnAssign))
                for target in (
                    statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                )
                if isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ]
    raise AssertionError("no DecodedPacket.__init__ in packet.py")


def test_packet_fields_are_every_attribute() -> None:
    fields = packet_fields()
    assert len(fields) == len(set(fields)) >= 28
    packet = DecodedPacket(1, 2, FrameClass.IPV4)
    assert all(hasattr(packet, name) for name in fields)
    # In pure Python, __slots__ lists exactly these (so nothing is left unset).
    slots = getattr(DecodedPacket, "__slots__", None)
    assert slots is None or sorted(slots) == sorted(fields)


@pytest.mark.parametrize("capture", ETHERNET_CORPUS, ids=[p.name for p in ETHERNET_CORPUS])
def test_hot_path_equals_general_path(capture: Path) -> None:
    """``decode`` writes Ethernet/IPv4/TCP out inline; the general path must agree."""
    decoder, general = Decoder(), Decoder()
    fields = packet_fields()
    with CaptureReader(capture) as reader:
        for frame in reader:
            fast = decoder.decode(frame)
            slow = DecodedPacket(frame.number, frame.ts_ns, FrameClass.UNDECODABLE)
            slow.frame_class = general._ethernet(slow, frame.data, 0, 0)
            for name in fields:
                assert getattr(fast, name) == getattr(slow, name), (frame.number, name)


def test_corpus_gtp_u_exposes_inner_ip(corpus_dir: Path) -> None:
    packets, decoder, _ = decode_file(corpus_dir / "pcapplusplus__gtp-u.pcap")
    assert decoder.counts().tunnelled == len(packets) == 102
    assert all(p.tunnelled and p.proto == 1 and p.icmp_type in (0, 8) for p in packets)
    # the outer UDP ports are gone: the fields describe the inner ICMP packet
    assert all(p.sport == 0 and p.dport == 0 for p in packets)


def test_corpus_gre_exposes_inner_icmp(corpus_dir: Path) -> None:
    packets, decoder, _ = decode_file(corpus_dir / "tcpdump__various_gre.pcap")
    icmp = [p for p in packets if p.proto == 1]
    assert len(icmp) == 10 and all(p.tunnelled for p in icmp)
    assert {format_addr(p.src) for p in icmp} == {"172.17.1.54", "172.17.1.55"}
    assert decoder.counts().other == 70  # STP, CDP, DTP, loopback: counted, not errors


def test_corpus_pppoe_behind_two_vlan_tags(corpus_dir: Path) -> None:
    packets, _, _ = decode_file(corpus_dir / "pcapplusplus__one_http_stream_rst.pcap")
    assert all(p.tunnelled and is_tcp_segment(p) for p in packets)
    assert {p.link_header_len for p in packets} == {22}  # 14 + two 4-byte tags


def test_corpus_fragmented_pings_are_reported_on_the_last_fragment(corpus_dir: Path) -> None:
    packets, decoder, _ = decode_file(corpus_dir / "markofu__ipfragments.pcap")
    complete = [p for p in packets if p.fragment is True]
    waiting = [p for p in packets if p.fragment is None]
    assert len(complete) == 8 and len(waiting) == 16
    assert all(p.proto == 1 and p.icmp_type in (0, 8) for p in complete)
    assert all(p.icmp_type == -1 for p in waiting)
    assert decoder.counts().fragments == 24


def test_corpus_link_header_lengths(corpus_dir: Path) -> None:
    expected = {
        "tcpdump__ipoib.pcap": 44,
        "tcpdump__HDLC.pcap": 4,
        "pcapplusplus__null_loopback.pcap": 4,
        "pcapplusplus__raw_ip.pcap": 0,
        "filesamples__simple_http_sll2.pcap": 20,
        "tcpdump__tcp-handshake-nano.pcap": 16,
        "pcapplusplus__VlanPackets.pcap": 22,  # two 802.1Q tags, as tcpdump -X starts
    }
    for name, length in expected.items():
        packets, _, _ = decode_file(corpus_dir / name)
        ip_packets = [p for p in packets if p.ip_version]
        assert ip_packets and {p.link_header_len for p in ip_packets} == {length}, name


def test_corpus_custom_block_is_other(corpus_dir: Path) -> None:
    packets, decoder, _ = decode_file(corpus_dir / "gopacket__test202.pcapng")
    assert [p.frame for p in packets if p.frame_class is FrameClass.OTHER] == [1, 7, 10]
    assert decoder.counts().ipv4 == 8


# -- hand-built packets -----------------------------------------------------------------

SRC4 = socket.inet_aton("10.0.1.1")
DST4 = socket.inet_aton("10.0.2.1")
SRC6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
DST6 = socket.inet_pton(socket.AF_INET6, "2001:db8::2")
MAC = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"


def tcp_header(flags: int = SYN, options: bytes = b"", payload: bytes = b"") -> bytes:
    offset = (20 + len(options)) // 4
    header = struct.pack("!HHIIBBHHH", 40000, 7096, 1000, 2000, offset << 4, flags, 65535, 0, 0)
    return header + options + payload


def ipv4(
    payload: bytes,
    proto: int = 6,
    *,
    src: bytes = SRC4,
    dst: bytes = DST4,
    ident: int = 1,
    fragment: int = 0,
    total: int | None = None,
    options: bytes = b"",
) -> bytes:
    ihl = 5 + len(options) // 4
    length = ihl * 4 + len(payload) if total is None else total
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, length, ident, fragment, 64, proto, 0, src, dst
    )
    return header + options + payload


def ipv6(payload: bytes, next_header: int = 6, *, src: bytes = SRC6, dst: bytes = DST6) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, 64, src, dst) + payload


def ether(payload: bytes, ethertype: int = 0x0800, tags: tuple[tuple[int, int], ...] = ()) -> bytes:
    header = MAC
    for tpid, vid in tags:
        header += struct.pack("!HH", tpid, vid)
    return header + struct.pack("!H", ethertype) + payload


def decode_one(data: bytes, linktype: int = 1, wirelen: int | None = None) -> DecodedPacket:
    frame = RawFrame(1, 5, linktype, len(data), len(data) if wirelen is None else wirelen, data)
    return Decoder().decode(frame)


def assert_tcp_to_7096(packet: DecodedPacket, src: bytes = SRC4, dst: bytes = DST4) -> None:
    assert (packet.src, packet.dst, packet.proto) == (src, dst, 6)
    assert (packet.sport, packet.dport, packet.seq, packet.ack) == (40000, 7096, 1000, 2000)


def test_address_and_endpoint_formatting() -> None:
    assert format_addr(SRC4) == "10.0.1.1"
    assert format_addr(SRC6) == "2001:db8::1"
    assert format_endpoint(SRC4, 7096) == "10.0.1.1:7096"
    assert format_endpoint(SRC6, 80) == "[2001:db8::1]:80"
    assert format_addr(socket.inet_pton(socket.AF_INET6, "::ffff:10.0.0.1")) == "::ffff:10.0.0.1"
    assert format_addr(b"") == "?" and format_addr(b"\x01\x02") == "0102"  # never raises


def test_ethernet_ipv4_tcp_fields() -> None:
    options = b"\x02\x04\x05\xb4\x01\x01\x04\x02"
    data = ether(ipv4(tcp_header(PSH | ACK, options, b"this is a test message")))
    packet = decode_one(data + b"\x00" * 6)  # Ethernet padding must not count as payload
    assert packet.frame_class is FrameClass.IPV4 and packet.link_header_len == 14
    assert_tcp_to_7096(packet)
    assert packet.tcp_flags == PSH | ACK and packet.window == 65535 and packet.ttl == 64
    assert packet.tcp_options == options
    assert packet.payload_len == len(b"this is a test message")
    assert packet.fragment is False and not packet.tunnelled and not packet.l4_truncated


def _general(data: bytes, wirelen: int | None = None) -> tuple[DecodedPacket, Decoder]:
    """``data`` through the general Ethernet path only (no hot path)."""
    decoder = Decoder()
    frame = RawFrame(1, 5, 1, len(data), len(data) if wirelen is None else wirelen, data)
    packet = decoder.decode_general(1, 5, 1, frame.caplen, frame.wirelen, data, 0, len(data))
    return packet, decoder


@pytest.mark.parametrize("version", [4, 6])
def test_hot_path_equals_general_path_on_edge_frames(version: int) -> None:
    """Hand-built frames at the hot path's edges (the corpus holds few IPv6 ones)."""
    options = b"\x01\x01\x08\x0a" + bytes(range(8))
    segment = tcp_header(PSH | ACK, options, b"payload")

    def framed(segment: bytes) -> bytes:
        return ether(ipv4(segment)) if version == 4 else ether(ipv6(segment), 0x86DD)

    cases = [
        (framed(segment), None),  # options and payload
        (framed(tcp_header(ACK)) + b"\x00" * 6, None),  # Ethernet padding
        (framed(segment)[:70], len(framed(segment))),  # snaplen cut in the payload
        (framed(segment)[:60], len(framed(segment))),  # cut inside the TCP options
        (framed(tcp_header(ACK))[:50], 54 + 40),  # cut inside the TCP header
        (framed(segment[:12]), None),  # a TCP header shorter than 20 bytes
        (framed(b"\x00" * 12 + b"\x40" + segment[13:]), None),  # bogus data offset (16)
    ]
    if version == 6:
        jumbo = bytearray(framed(segment))
        jumbo[18:20] = b"\x00\x00"  # payload length 0: what was captured counts
        cases.append((bytes(jumbo), None))
        cases.append((ether(ipv6(segment, next_header=0), 0x86DD), None))  # not TCP next
    fields = packet_fields()
    for data, wirelen in cases:
        decoder = Decoder()
        fast = decoder.decode(
            RawFrame(1, 5, 1, len(data), len(data) if wirelen is None else wirelen, data)
        )
        slow, general = _general(data, wirelen)
        for name in fields:
            assert getattr(fast, name) == getattr(slow, name), (data.hex(), name)
        assert decoder.counts() == general.counts()
    # The first case is the hot path's (the others may or may not be).
    assert (
        Decoder().fast_tcp_fields(
            len(cases[0][0]), len(cases[0][0]), cases[0][0], 0, len(cases[0][0]), 0, 1
        )[0]
        == version
    )


@pytest.mark.parametrize("version", [4, 6])
def test_hot_path_counts_but_leaves_other_shares_frames_unread(version: int) -> None:
    """One file in several processes: a frame of another share's conversation is
    counted as the share's own would be, and its fields are not read."""
    segment = tcp_header(ACK, payload=b"x" * 10)
    data = ether(ipv4(segment)) if version == 4 else ether(ipv6(segment), 0x86DD)
    own = Decoder()
    fields = own.fast_tcp_fields(len(data), len(data), data, 0, len(data), 0, 1)
    assert fields[0] == version
    mine = conversation_share(fields[1], 3)
    for share in range(3):
        decoder = Decoder()
        found = decoder.fast_tcp_fields(len(data), len(data), data, 0, len(data), share, 3)
        assert found == (fields if share == mine else OTHER_SHARE)
        assert decoder.counts() == own.counts()


def test_ipv4_options_are_skipped() -> None:
    packet = decode_one(ether(ipv4(tcp_header(), options=b"\x01\x01\x01\x00")))
    assert_tcp_to_7096(packet)


def test_snaplen_cut_tcp_uses_ip_claimed_length() -> None:
    data = ether(ipv4(tcp_header(ACK, payload=b"x" * 1000)))
    packet = decode_one(data[: 14 + 20 + 20 + 10], wirelen=len(data))
    assert packet.payload_len == 1000 and not packet.l4_truncated
    decoder = Decoder()
    decoder.decode(RawFrame(1, 0, 1, 64, len(data), data[:64]))
    assert decoder.counts().truncated == 1


def test_vlan_stacks() -> None:
    for tags in (((0x8100, 5),), ((0x88A8, 1), (0x8100, 2)), ((0x9100, 1), (0x8100, 2))):
        packet = decode_one(ether(ipv4(tcp_header()), tags=tags))
        assert_tcp_to_7096(packet)
        assert packet.link_header_len == 14 + 4 * len(tags)


@pytest.mark.parametrize(
    ("linktype", "header", "length"),
    [
        (113, b"\x00\x00\x00\x01\x00\x06" + b"\x00" * 8 + b"\x08\x00", 16),
        (276, b"\x08\x00\x00\x00" + b"\x00" * 16, 20),
        (101, b"", 0),
        (12, b"", 0),
        (228, b"", 0),
        (0, struct.pack("<I", 2), 4),
        (0, struct.pack(">I", 2), 4),
        (0, b"\x0f\x00\x08\x00", 4),  # read as Wireshark does: an ethertype in the low bits
        (108, struct.pack(">I", 2), 4),
        (104, b"\x0f\x00\x08\x00", 4),
        (9, b"\xff\x03\x00\x21", 4),
        (9, b"\x00\x21", 2),
        (50, b"\xff\x03\x00\x21", 4),
        (242, b"\x00" * 40 + b"\x08\x00\x00\x00", 44),
        (226, b"\x01\x02" + b"\x00" * 22, 24),
    ],
)
def test_link_types_carrying_ipv4(linktype: int, header: bytes, length: int) -> None:
    packet = decode_one(header + ipv4(tcp_header()), linktype)
    assert packet.frame_class is FrameClass.IPV4
    assert packet.link_header_len == length
    assert_tcp_to_7096(packet)


@pytest.mark.parametrize(
    ("linktype", "header"),
    [
        (229, b""),
        (101, b""),
        (0, struct.pack("<I", 24)),
        (0, struct.pack("<I", 28)),
        (0, struct.pack(">I", 30)),
        (0, struct.pack("<I", 10)),
        (108, struct.pack(">I", 24)),
        (276, b"\x86\xdd\x00\x00" + b"\x00" * 16),
    ],
)
def test_link_types_carrying_ipv6(linktype: int, header: bytes) -> None:
    packet = decode_one(header + ipv6(tcp_header()), linktype)
    assert packet.frame_class is FrameClass.IPV6 and packet.ip_version == 6
    assert_tcp_to_7096(packet, SRC6, DST6)


def test_unknown_link_type_and_non_ip_frames_are_counted() -> None:
    decoder = Decoder()
    frames = [
        (147, b"\x00" * 40),  # a user link type: undecodable
        (127, RADIOTAP + b"\x80\x00" + b"\x00" * 30),  # radiotap beacon: other
        (1, MAC + b"\x00\x26" + b"\x42" * 38),  # 802.3 + LLC (STP): other
        (1, ether(b"\x00" * 28, 0x88CC)),  # LLDP: other
        (1, MAC[:10]),  # runt: undecodable
        (LINKTYPE_NONE, b"custom"),  # pcapng custom block: other
        (1, ether(ipv4(b"")[:12])),  # IPv4 header cut short: undecodable
    ]
    for number, (linktype, data) in enumerate(frames, 1):
        decoder.decode(RawFrame(number, 0, linktype, len(data), len(data), data))
    counts = decoder.counts()
    assert (counts.other, counts.undecodable, counts.ipv4) == (4, 3, 0)


RADIOTAP = struct.pack("<BBHI", 0, 0, 8, 0)  # version, pad, length 8, no fields
LLC_SNAP_IPV4 = b"\xaa\xaa\x03\x00\x00\x00\x08\x00"
WLAN_ADDRESSES = b"\x02" * 6 + b"\x04" * 6 + b"\x06" * 6 + b"\x00\x00"


@pytest.mark.parametrize(
    ("linktype", "frame", "length"),
    [
        (127, RADIOTAP + b"\x88\x01\x00\x00" + WLAN_ADDRESSES + b"\x00\x00", 8 + 26 + 8),
        (105, b"\x08\x02\x00\x00" + WLAN_ADDRESSES, 24 + 8),
        (105, b"\x08\x03\x00\x00" + WLAN_ADDRESSES + b"\x08" * 6, 30 + 8),
    ],
    ids=["radiotap-qos-data", "data-from-ds", "data-4-addresses"],
)
def test_ieee80211_data_frames_carry_ip(linktype: int, frame: bytes, length: int) -> None:
    """Checked against tcpdump -X, which starts its dump after the LLC/SNAP header."""
    packet = decode_one(frame + LLC_SNAP_IPV4 + ipv4(tcp_header()), linktype)
    assert packet.frame_class is FrameClass.IPV4 and packet.link_header_len == length
    assert_tcp_to_7096(packet)


def test_ieee80211_protected_data_is_other() -> None:
    frame = b"\x08\x42\x00\x00" + WLAN_ADDRESSES + LLC_SNAP_IPV4 + ipv4(tcp_header())
    assert decode_one(frame, 105).frame_class is FrameClass.OTHER


def test_ethernet_llc_snap_carrying_ipv4() -> None:
    body = LLC_SNAP_IPV4 + ipv4(tcp_header())
    packet = decode_one(MAC + struct.pack("!H", len(body)) + body)
    assert packet.frame_class is FrameClass.IPV4 and packet.link_header_len == 22
    assert_tcp_to_7096(packet)


def test_arp_request() -> None:
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + MAC[:6] + SRC4 + b"\x00" * 6 + DST4
    packet = decode_one(ether(body, 0x0806))
    assert packet.frame_class is FrameClass.ARP
    assert (packet.arp_op, packet.src, packet.dst) == (1, SRC4, DST4)


def test_ipv6_extension_headers() -> None:
    hop_by_hop = bytes([60, 0]) + b"\x01\x04\x00\x00\x00\x00"  # -> destination options
    destination = bytes([43, 0]) + b"\x01\x04\x00\x00\x00\x00"  # -> routing
    routing = bytes([44, 0, 0, 0]) + b"\x00" * 4  # -> fragment
    atomic_fragment = bytes([51, 0, 0, 0]) + struct.pack("!I", 7)  # -> AH
    ah = bytes([6, 2]) + b"\x00" * 14  # (2 + 2) * 4 = 16 bytes -> TCP
    chain = hop_by_hop + destination + routing + atomic_fragment + ah
    packet = decode_one(ether(ipv6(chain + tcp_header(payload=b"abc"), 0), 0x86DD))
    assert_tcp_to_7096(packet, SRC6, DST6)
    assert packet.payload_len == 3 and packet.fragment is False


def test_esp_stops_the_walk() -> None:
    packet = decode_one(ether(ipv6(b"\x00" * 40, 50), 0x86DD))
    assert packet.proto == 50 and packet.sport == 0


def test_ipv4_fragments_reassembled_in_any_order() -> None:
    payload = tcp_header(ACK, payload=bytes(range(256)) * 4)  # 1044 bytes
    pieces = [
        (0, payload[:512], True),
        (512, payload[512:1024], True),
        (1024, payload[1024:], False),
    ]
    decoder = Decoder()
    results = []
    for number, index in enumerate((2, 0, 1), 1):  # last fragment first; the middle completes it
        offset, chunk, more = pieces[index]
        flags = (0x2000 if more else 0) | (offset >> 3)
        data = ether(ipv4(chunk, ident=77, fragment=flags))
        results.append(decoder.decode(RawFrame(number, number, 1, len(data), len(data), data)))
    assert [p.fragment for p in results] == [None, None, True]
    assert results[0].sport == 0 and results[1].sport == 0
    assert_tcp_to_7096(results[2])
    assert results[2].payload_len == 1024
    assert decoder.counts().fragments == 3


def test_ipv6_fragments_reassembled() -> None:
    payload = struct.pack("!BBHHH", 128, 0, 0, 0x1234, 9) + b"p" * 1500
    decoder = Decoder()
    results = []
    for number, (offset, chunk, more) in enumerate(
        [(0, payload[:1000], 1), (1000, payload[1000:], 0)], 1
    ):
        fragment_header = struct.pack("!BBHI", 58, 0, offset | more, 0xABCDEF)
        data = ether(ipv6(fragment_header + chunk, 44), 0x86DD)
        results.append(decoder.decode(RawFrame(number, number, 1, len(data), len(data), data)))
    assert [p.fragment for p in results] == [None, True]
    assert (results[1].proto, results[1].icmp_type, results[1].icmp_id) == (58, 128, 0x1234)
    assert results[1].icmp_seq == 9


def test_reassembly_memory_is_bounded() -> None:
    decoder = Decoder()
    for number in range(1, 3 * decode_module.MAX_PENDING_DATAGRAMS):
        data = ether(ipv4(b"x" * 64, 17, ident=number, fragment=0x2000))
        packet = decoder.decode(RawFrame(number, number, 1, len(data), len(data), data))
        assert packet.fragment is None
    reassembler = decoder._reassembler
    assert reassembler.pending <= decode_module.MAX_PENDING_DATAGRAMS
    assert reassembler.expired > 0


def test_fragment_past_the_end_does_not_shift_the_payload() -> None:
    """An overlapping fragment running past the datagram's end is clipped, not spliced."""
    payload = tcp_header(ACK, payload=b"y" * 28)  # 48 bytes
    decoder = Decoder()
    frames = [
        ether(ipv4(payload[:40] + b"z" * 24, ident=9, fragment=0x2000)),  # runs past the end
        ether(ipv4(payload[40:], ident=9, fragment=40 >> 3)),  # the last fragment
    ]
    results = [
        decoder.decode(RawFrame(number, number, 1, len(data), len(data), data))
        for number, data in enumerate(frames, 1)
    ]
    assert results[1].fragment is True
    assert_tcp_to_7096(results[1])
    assert results[1].payload_len == 28


def test_repeated_fragments_are_bounded() -> None:
    decoder = Decoder()
    data = ether(ipv4(b"x" * 8, 17, ident=5, fragment=0x2000))
    for number in range(1, 3 * decode_module.MAX_FRAGMENTS_PER_DATAGRAM):
        decoder.decode(RawFrame(number, number, 1, len(data), len(data), data))
    assert decoder._reassembler.pending <= 1
    assert decoder._reassembler.expired >= 2


def test_icmp_frag_needed_quotes_tcp_without_becoming_tcp() -> None:
    quoted = ipv4(tcp_header(ACK, payload=b"x" * 1400))[:28]
    icmp = struct.pack("!BBHHH", 3, 4, 0, 0, 1400) + quoted
    packet = decode_one(ether(ipv4(icmp, 1, src=socket.inet_aton("10.0.0.254"))))
    assert (packet.proto, packet.icmp_type, packet.icmp_code, packet.icmp_mtu) == (1, 3, 4, 1400)
    assert packet.icmp_quoted == (SRC4, DST4, 6, 40000, 7096)
    assert packet.sport == 0 and not is_tcp_segment(packet)


def test_icmpv6_packet_too_big_quotes_ipv6() -> None:
    quoted = ipv6(tcp_header())[:48]
    icmp = struct.pack("!BBHI", 2, 0, 0, 1280) + quoted
    packet = decode_one(ether(ipv6(icmp, 58), 0x86DD))
    assert (packet.icmp_type, packet.icmp_mtu) == (2, 1280)
    assert packet.icmp_quoted == (SRC6, DST6, 6, 40000, 7096)


def test_icmp_echo_fields_are_big_endian() -> None:
    packet = decode_one(ether(ipv4(struct.pack("!BBHHH", 8, 0, 0, 0x0102, 0x0304) + b"x", 1)))
    assert (packet.icmp_type, packet.icmp_id, packet.icmp_seq) == (8, 0x0102, 0x0304)


def zlib_deflate(payload: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)  # raw DEFLATE, as IPComp carries it
    return compressor.compress(payload) + compressor.flush()


def udp(payload: bytes, sport: int, dport: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


OUTER_SRC = socket.inet_aton("192.0.2.1")
OUTER_DST = socket.inet_aton("192.0.2.2")


def outer(payload: bytes, proto: int) -> bytes:
    return ether(ipv4(payload, proto, src=OUTER_SRC, dst=OUTER_DST))


# GTP-U with a sequence number and one extension header (PDU session container)
GTP_U_WITH_EXTENSION = outer(
    udp(
        b"\x34\xff\x00\x00\x00\x00\x00\x01"
        + b"\x00\x00\x00\x85"
        + b"\x01\x10\x01\x00"
        + ipv4(tcp_header()),
        2152,
        2152,
    ),
    17,
)


@pytest.mark.parametrize(
    "data",
    [
        outer(b"\x00\x00\x08\x00" + ipv4(tcp_header()), 47),  # plain GRE
        outer(b"\xb0\x00\x08\x00" + b"\x00" * 12 + ipv4(tcp_header()), 47),  # csum, key, seq
        outer(b"\x00\x00\x65\x58" + ether(ipv4(tcp_header())), 47),  # transparent Ethernet
        outer(
            b"\x10\x00\x88\xbe" + b"\x00" * 4 + b"\x10" + b"\x00" * 7 + ether(ipv4(tcp_header())),
            47,
        ),
        outer(
            b"\x20\x00\x89\x09"
            + b"\x00" * 4
            + b"\x08\x00\x01\x01\x00\x01\x00\x00"
            + ipv4(tcp_header()),
            47,
        ),
        outer(
            udp(b"\x08\x00\x00\x00\x00\x00\x01\x00" + ether(ipv4(tcp_header())), 50000, 4789), 17
        ),
        outer(udp(b"\x30\xff\x00\x00\x00\x00\x00\x01" + ipv4(tcp_header()), 2152, 2152), 17),
        GTP_U_WITH_EXTENSION,
        outer(ipv4(tcp_header()), 4),  # IP in IP
        ether(b"\x11\x00\x00\x01\x00\x2a\x00\x21" + ipv4(tcp_header()), 0x8864),  # PPPoE session
        ether(struct.pack("!II", 100 << 12, (200 << 12) | 0x100) + ipv4(tcp_header()), 0x8847),
    ],
    ids=[
        "gre",
        "gre-options",
        "gre-teb",
        "erspan2",
        "gre-cmd",
        "vxlan",
        "gtpu",
        "gtpu-ext",
        "ipip",
        "pppoe",
        "mpls",
    ],
)
def test_tunnels_expose_inner_ipv4(data: bytes) -> None:
    decoder = Decoder()
    packet = decoder.decode(RawFrame(1, 0, 1, len(data), len(data), data))
    assert packet.frame_class is FrameClass.IPV4
    assert packet.tunnelled
    assert_tcp_to_7096(packet)
    assert decoder.counts().tunnelled == 1


def test_l2tp_and_ipcomp_expose_inner_ip() -> None:
    l2tp = b"\x00\x02\x00\x01\x00\x01\xff\x03\x00\x57"  # data message, ids, PPP/IPv6
    packet = decode_one(outer(udp(l2tp + ipv6(tcp_header()), 1701, 1701), 17))
    assert packet.tunnelled and packet.ip_version == 6
    assert_tcp_to_7096(packet, SRC6, DST6)
    packet = decode_one(outer(b"\x29\x00\x00\x02" + zlib_deflate(ipv6(tcp_header())), 108))
    assert packet.tunnelled and packet.ip_version == 6
    assert_tcp_to_7096(packet, SRC6, DST6)


def test_6in4_exposes_inner_ipv6() -> None:
    packet = decode_one(outer(ipv6(tcp_header()), 41))
    assert packet.frame_class is FrameClass.IPV4 and packet.ip_version == 6 and packet.tunnelled
    assert_tcp_to_7096(packet, SRC6, DST6)


def test_damaged_inner_packet_keeps_outer_fields() -> None:
    packet = decode_one(
        outer(udp(b"\x30\xff\x00\x04\x00\x00\x00\x01" + b"\x45\x00", 2152, 2152), 17)
    )
    assert not packet.tunnelled
    assert (packet.src, packet.proto, packet.dport) == (OUTER_SRC, 17, 2152)


def test_vlan_tags_are_not_tunnels() -> None:
    """A tagged frame in a cooked capture is plain IP; ten thousand tags do not recurse."""
    sll = b"\x00\x00\x00\x01\x00\x06" + b"\x00" * 8 + b"\x81\x00"
    packet = decode_one(sll + b"\x00\x05\x08\x00" + ipv4(tcp_header()), 113)
    assert_tcp_to_7096(packet)
    assert not packet.tunnelled
    many_tags = sll + b"\x00\x05\x81\x00" * 10_000 + b"\x00\x05\x08\x00" + ipv4(tcp_header())
    assert_tcp_to_7096(decode_one(many_tags, 113))


def test_nested_tunnels_are_bounded() -> None:
    data = ipv4(tcp_header())
    for _ in range(3 * decode_module.MAX_DEPTH):
        data = ipv4(data, 4)
    packet = decode_one(ether(data))
    assert packet.frame_class is FrameClass.IPV4  # no recursion error, the frame is counted


LINK_TYPES = (0, 1, 9, 12, 50, 101, 104, 108, 113, 127, 228, 229, 242, 276, LINKTYPE_NONE)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(LINK_TYPES), st.binary(max_size=200))
def test_random_bytes_never_raise(linktype: int, data: bytes) -> None:
    decoder = Decoder()
    packet = decoder.decode(RawFrame(1, 0, linktype, len(data), len(data), data))
    counts = decoder.counts()
    assert counts.ipv4 + counts.ipv6 + counts.arp + counts.other + counts.undecodable == 1
    assert isinstance(packet.frame_class, FrameClass)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_headers_never_raise(data: st.DataObject) -> None:
    templates = [
        GTP_U_WITH_EXTENSION,
        outer(b"\xb0\x00\x08\x00" + b"\x00" * 12 + ipv4(tcp_header()), 47),
        ether(ipv6(bytes([60, 0]) + b"\x01\x04\x00\x00\x00\x00" + tcp_header(), 0), 0x86DD),
        ether(ipv4(struct.pack("!BBHHH", 3, 4, 0, 0, 1400) + ipv4(tcp_header())[:28], 1)),
        ether(ipv4(tcp_header(), fragment=0x2000)),
        outer(udp(b"\x08\x00\x00\x00\x00\x00\x01\x00" + ether(ipv4(tcp_header())), 1, 4789), 17),
        outer(
            udp(b"\x00\x02\x00\x01\x00\x01\xff\x03\x00\x21" + ipv4(tcp_header()), 1701, 1701), 17
        ),
        outer(b"\x29\x00\x00\x02" + zlib_deflate(ipv6(tcp_header())), 108),
        ether(struct.pack("!II", 100 << 12, (200 << 12) | 0x100) + ipv4(tcp_header()), 0x8847),
        ether(ipv6(struct.pack("!BBHI", 2, 0, 0, 1280) + ipv6(tcp_header())[:48], 58), 0x86DD),
    ]
    packet = bytearray(data.draw(st.sampled_from(templates)))
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(packet) - 1))
        packet[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    frame_bytes = bytes(packet[:cut])
    Decoder().decode(RawFrame(1, 0, 1, len(frame_bytes), len(packet), frame_bytes))


# -- where tcpdump -X starts its dump ------------------------------------------------------


def tcpdump_first_dump_rows(path: Path) -> list[str | None] | None:
    """For each packet tcpdump prints, the hex of its -X dump (None: no dump).

    None when tcpdump reads nothing; a cut-short file still gives its packets.
    """
    result = subprocess.run(
        ["tcpdump", "-ttnr", str(path), "-X", "-K"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0 and not result.stdout:
        return None  # e.g. a pcapng whose interfaces have different link types
    dumps: list[str | None] = []
    for line in result.stdout.splitlines():
        if line[:1].isdigit():  # "1234567890.123456 ..." starts a packet
            dumps.append(None)
        elif line.startswith("\t0x") and dumps:
            row = "".join(line.split(":", 1)[1][:41].split())
            dumps[-1] = (dumps[-1] or "") + row
    return dumps


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.parametrize("capture", CORPUS, ids=[path.name for path in CORPUS])
def test_link_header_len_is_where_tcpdump_starts_its_dump(capture: Path) -> None:
    dumps = tcpdump_first_dump_rows(capture)
    with CaptureReader(capture) as reader:
        frames = list(reader)
    if dumps is None or len(dumps) != len(frames):
        pytest.skip("tcpdump cannot read this file frame for frame")
    decoder = Decoder()
    compared = 0
    for frame, dump in zip(frames, dumps, strict=True):
        packet = decoder.decode(frame)
        # IP frames only: for LLC/SNAP payloads (CDP, STP) tcpdump starts after the LLC header.
        if packet.ip_version and dump:
            assert frame.data[packet.link_header_len :].hex().startswith(dump[:32]), frame.number
            compared += 1
    if compared == 0:
        pytest.skip("no IP frame that tcpdump dumps")
