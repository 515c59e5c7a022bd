"""Hex dumps identical to ``tcpdump -X`` / ``-XX``, and tcpdump-style header lines.

Report stage: turns a captured frame's original bytes (``RawFrame.data``, never
a re-serialised dpkt object) into the lines tcpdump prints under a packet.

What tcpdump 4.99 dumps (measured with ``tcpdump -X -nn -r``):

* ``-X`` starts after the link-layer header (tcpdump's ``hdrlen``: Ethernet 14
  plus 4 per VLAN tag, SLL 16, SLL2 20, NULL 4, raw IP 0), which the decoder
  records as ``DecodedPacket.link_header_len``. It dumps everything *captured*
  after that, Ethernet padding included (the IP total length does not limit
  it); a snaplen-truncated frame simply ends at its captured length. When the
  captured bytes do not go past the link header, nothing is dumped.
* ``-XX`` dumps every captured byte from the start of the frame.
* Each line is ``\\t0x%04x: `` then eight groups of `` %02x%02x`` (a lone last
  byte as `` %02x``) left-aligned in 40 columns, two spaces, and the ASCII
  column, where only 0x21..0x7e print as themselves: a space is shown as ``.``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from netdiag.analysis.addr import format_addr
from netdiag.analysis.packet import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    DecodedPacket,
    FrameClass,
    RawFrame,
)

BYTES_PER_LINE = 16
HEX_COLUMN_WIDTH = 40  # 8 groups of " xxxx"


def _printable(byte: int) -> str:
    # tcpdump's ND_ASCII_ISGRAPH: space and everything outside 0x21..0x7e is '.'.
    return chr(byte) if 0x21 <= byte <= 0x7E else "."


def hex_ascii_lines(data: bytes) -> Iterator[str]:
    """Yield the lines of tcpdump's ``hex_and_ascii_print`` for ``data``.

    Each line starts with a tab and has no newline; offsets start at 0, as tcpdump's.
    """
    for start in range(0, len(data), BYTES_PER_LINE):
        chunk = data[start : start + BYTES_PER_LINE]
        groups = []
        for index in range(0, len(chunk), 2):
            pair = chunk[index : index + 2]
            groups.append(" " + pair.hex())
        hex_part = "".join(groups)
        ascii_part = "".join(_printable(byte) for byte in chunk)
        yield f"\t0x{start:04x}: {hex_part:<{HEX_COLUMN_WIDTH}}  {ascii_part}"


def dump_bytes(frame: RawFrame, link_header_len: int, link_layer: bool = False) -> bytes:
    """The bytes tcpdump dumps for ``frame``: all of it with ``-XX``, else after the link header.

    ``link_header_len`` < 0 means the link type is unknown to the decoder; the
    whole frame is dumped then, as that is all that can honestly be shown.
    """
    captured = frame.data[: frame.caplen]
    if link_layer or link_header_len < 0:
        return captured
    if len(captured) <= link_header_len:
        return b""
    return captured[link_header_len:]


MAX_ETHERNET_LENGTH = 1500  # above: an ethertype; at or below: an 802.3 length field
LLC_UI = 0x03
LLC_SAP_SNAP = 0xAA
LLC_SAP_GLOBAL = 0xFF


def _llc_header_len(llc: bytes, length: int) -> int:
    """How much of an 802.2 LLC (and SNAP) header tcpdump's ``llc_print`` consumes.

    3 bytes for an unnumbered (U) control field, 4 otherwise, plus 5 for a
    SNAP header; 0 for Novell's "raw 802.3" IPX (0xffff, no LLC at all); cut
    to what was captured or claimed when shorter.
    """
    available = len(llc)
    if available < 3 or length < 3:
        return min(available, length)
    control = llc[2]
    if control & 0x03 == 0x03:
        header = 3
    else:
        if available < 4 or length < 4:
            return min(available, length)
        header = 4
    if llc[0] == LLC_SAP_GLOBAL and llc[1] == LLC_SAP_GLOBAL:
        return 0
    if llc[0] & 0xFE == LLC_SAP_SNAP and llc[1] & 0xFE == LLC_SAP_SNAP and control == LLC_UI:
        return header + 5
    return header


def tcpdump_header_len(frame: RawFrame, link_header_len: int) -> int:
    """Where ``tcpdump -X`` starts dumping: the decoder's link header length, plus LLC.

    For an 802.3 frame (a length instead of an ethertype, e.g. STP, CDP)
    tcpdump counts the LLC/SNAP header into its link-layer header too, so its
    ``-X`` dump starts at the BPDU or CDP payload.
    """
    if frame.linktype != 1 or link_header_len < 14:
        return link_header_len
    data = frame.data[: frame.caplen]
    if len(data) < link_header_len:
        return link_header_len
    length_type = int.from_bytes(data[link_header_len - 2 : link_header_len], "big")
    if length_type > MAX_ETHERNET_LENGTH:
        return link_header_len
    return link_header_len + _llc_header_len(data[link_header_len:], length_type)


def hexdump_lines(frame: RawFrame, link_header_len: int, link_layer: bool = False) -> list[str]:
    """The hex lines ``tcpdump -X`` (or ``-XX`` with ``link_layer``) prints for ``frame``.

    ``link_header_len`` is ``DecodedPacket.link_header_len``.
    """
    start = tcpdump_header_len(frame, link_header_len)
    return list(hex_ascii_lines(dump_bytes(frame, start, link_layer)))


def tcp_flag_letters(flags: int) -> str:
    """tcpdump's ``Flags [...]`` letters: S F R P U E W, and ``.`` for ACK."""
    letters = ""
    for bit, letter in (
        (SYN, "S"),
        (FIN, "F"),
        (RST, "R"),
        (PSH, "P"),
        (URG, "U"),
        (ECE, "E"),
        (CWR, "W"),
        (ACK, "."),
    ):
        if flags & bit:
            letters += letter
    return letters or "none"


ICMP_NAMES = {
    (1, 0): "echo reply",
    (1, 3): "unreachable",
    (1, 4): "source quench",
    (1, 5): "redirect",
    (1, 8): "echo request",
    (1, 11): "time exceeded",
    (58, 1): "destination unreachable",
    (58, 2): "packet too big",
    (58, 3): "time exceeded",
    (58, 128): "echo request",
    (58, 129): "echo reply",
    (58, 133): "router solicitation",
    (58, 134): "router advertisement",
    (58, 135): "neighbor solicitation",
    (58, 136): "neighbor advertisement",
}


NON_IP_KINDS = {
    FrameClass.ARP: "ARP",
    FrameClass.OTHER: "non-IP frame",
    FrameClass.UNDECODABLE: "undecodable frame",
}


def clock_time(ts_ns: int) -> str:
    """``HH:MM:SS.uuuuuu`` in UTC, tcpdump's default time stamp (microseconds)."""
    seconds, nanoseconds = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) + f".{nanoseconds // 1000:06d}"


def summary_line(frame: RawFrame, packet: DecodedPacket) -> str:
    """One tcpdump-style line: time, family, addresses/ports, protocol detail, length.

    It is netdiag's own summary (not tcpdump's text); only the hex lines
    below it are promised to be byte-identical to tcpdump's.
    """
    stamp = clock_time(frame.ts_ns)
    truncated = " [truncated]" if frame.truncated else ""
    if packet.ip_version not in (4, 6):
        kind = NON_IP_KINDS.get(packet.frame_class, "frame")
        if packet.link_header_len < 0:
            kind = f"link type {frame.linktype} (not decoded)"
        return f"{stamp} {kind}, frame length {frame.wirelen}{truncated}"
    family = "IP" if packet.ip_version == 4 else "IP6"
    source = format_addr(packet.src)
    destination = format_addr(packet.dst)
    if packet.proto in (6, 17) and packet.fragment is not None:
        source = f"{source}.{packet.sport}"
        destination = f"{destination}.{packet.dport}"
    head = f"{stamp} {family} {source} > {destination}:"
    if packet.proto == 6 and packet.fragment is not None:
        detail = f" Flags [{tcp_flag_letters(packet.tcp_flags)}], seq {packet.seq}"
        if packet.tcp_flags & ACK:
            detail += f", ack {packet.ack}"
        detail += f", win {packet.window}, length {packet.payload_len}"
    elif packet.proto == 17 and packet.fragment is not None:
        detail = f" UDP, length {packet.payload_len}"
    elif packet.proto in (1, 58) and packet.icmp_type >= 0:
        name = ICMP_NAMES.get(
            (packet.proto, packet.icmp_type), f"type {packet.icmp_type} code {packet.icmp_code}"
        )
        family_name = "ICMP" if packet.proto == 1 else "ICMP6"
        detail = f" {family_name} {name}"
        if "echo" in name:
            detail += f", id {packet.icmp_id}, seq {packet.icmp_seq}"
    else:
        detail = f" ip-proto-{packet.proto}" if packet.proto >= 0 else " fragment"
    return f"{head}{detail}, frame length {frame.wirelen}{truncated}"


def format_frame(frame: RawFrame, packet: DecodedPacket, link_layer: bool = False) -> str:
    """``#N``, a summary line and the tcpdump hex lines of one frame, newline-terminated."""
    header = f"#{frame.number} {summary_line(frame, packet)}"
    lines = [header, *hexdump_lines(frame, packet.link_header_len, link_layer)]
    return "\n".join(lines) + "\n"


def iter_decoded(path: Path) -> Iterator[tuple[RawFrame, DecodedPacket]]:
    """Read ``path`` again from disk and yield each frame with its decoded headers.

    Hex dumps need the original bytes, which the analysis records do not keep;
    the reader and decoder are imported here so that importing this module
    stays cheap.
    """
    from netdiag.analysis.decode import Decoder
    from netdiag.analysis.reader import CaptureReader

    decoder = Decoder()
    with CaptureReader(path) as reader:
        for frame in reader:
            yield frame, decoder.decode(frame)


def dump_frames(
    path: Path, frames: Iterable[int], link_layer: bool = False
) -> list[tuple[int, str, list[str]]]:
    """(frame number, summary line, hex lines) for each wanted frame that exists in ``path``."""
    wanted = set(frames)
    if not wanted:
        return []
    last_wanted = max(wanted)
    dumps = []
    for frame, packet in iter_decoded(path):
        if frame.number in wanted:
            dumps.append(
                (
                    frame.number,
                    summary_line(frame, packet),
                    hexdump_lines(frame, packet.link_header_len, link_layer),
                )
            )
        if frame.number >= last_wanted:
            break
    return dumps


def first_data_segments(
    path: Path, streams: Iterable[tuple[str, str, int, int]], per_stream: int
) -> list[str]:
    """Formatted dumps of the first TCP segments carrying payload, per conversation.

    ``streams`` are (client, server, first frame, last frame) as the analysis
    reports them; a segment belongs to a conversation when its endpoints match
    either way round inside that frame range (so a reused 4-tuple is not mixed
    up). Used for small captures, where the payload is what a person looks for.
    """
    from netdiag.analysis.addr import format_endpoint

    # Each 4-tuple's conversations (a reused one has several), by frame range.
    wanted: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for index, (client, server, first, last) in enumerate(streams):
        wanted.setdefault((client, server), []).append((first, last, index))
    taken: dict[int, int] = {}  # segments dumped per conversation (its index)
    last_frame = max((span[1] for spans in wanted.values() for span in spans), default=0)
    dumps: list[str] = []
    for frame, packet in iter_decoded(path):
        if frame.number > last_frame:
            break
        if packet.proto != 6 or packet.fragment is None or packet.payload_len == 0:
            continue
        source = format_endpoint(packet.src, packet.sport)
        destination = format_endpoint(packet.dst, packet.dport)
        key = (source, destination) if (source, destination) in wanted else (destination, source)
        for first, last, index in wanted.get(key, ()):
            if first <= frame.number <= last:
                if taken.get(index, 0) < per_stream:
                    taken[index] = taken.get(index, 0) + 1
                    dumps.append(format_frame(frame, packet))
                break
    return dumps
