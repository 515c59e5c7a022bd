"""TCP conversation tracking with Wireshark's TCP analysis (analysis stage).

``TcpTracker.process`` takes every decoded TCP packet once, in file order, and
keeps a compact state per conversation (``_Conversation`` with two
``_Flow`` halves); ``TcpTracker.finish`` turns the states into frozen
``TcpStream`` records. Nothing is kept per packet except capped plot points,
so memory grows with the number of conversations, not packets.

Agreement with tshark 4.0 is the goal, so the per-packet logic follows
Wireshark's ``packet-tcp.c`` (``dissect_tcp`` and
``tcp_analyze_sequence_number``) step by step, with its quirks kept on
purpose because the corpus truth files were made by it:

* Conversations are keyed on the two (address, port) endpoints. A SYN whose
  sequence number differs from the one first seen in that direction starts a
  new stream (``reused_ports``); a SYN-ACK with a new sequence number only
  rebases that direction and is flagged ``reused_ports``.
* Sequence numbers are unsigned 32-bit and compared modulo 2**32; a
  ``nextseq`` of 0 means "not known yet", as in Wireshark.
* The window passed to the analysis is the raw header field; scaling applies
  only to the "window full" test, once the handshake announced it (-1 unknown,
  -2 "no scaling").
* Flags are decided in Wireshark's order: zero-window probe, zero window,
  lost segment, keep-alive, window update, window full, keep-alive ACK,
  zero-window-probe ACK, duplicate ACK, ACKed unseen segment, then spurious /
  fast retransmission / out-of-order / retransmission. In tshark 4.0 fast and
  spurious retransmissions also carry ``tcp.analysis.retransmission``.
* ``ack_rtt`` is the time from the oldest unacknowledged segment whose end the
  ACK matches exactly (and is not reported when it is exactly zero).
* The initial RTT is from the most recent SYN to the first ACK-without-SYN in
  either direction (so a RST+ACK answering a SYN gives one).

Where netdiag goes beyond Wireshark it says so: the per-stream ``rtt_ms``
follows Karn's rule (samples whose segment was sent more than once are
counted in ``karn_excluded``, as tcptrace reports them apart), and the Zeek
``conn_state``/``history`` treat SYN retries with the same initial sequence
number as one attempt.
"""

from __future__ import annotations

import operator
import random
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from netdiag.analysis.addr import format_endpoint
from netdiag.analysis.model import (
    Direction,
    RttSample,
    RttSampleStats,
    SeqPoint,
    StreamFindings,
    TcpStream,
    TimelineEntry,
)
from netdiag.analysis.packet import (
    ACK,
    COMPILED,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    DecodedPacket,
    TcpFields,
    big_endian_u32,
    endpoints_share,
    packed_endpoints,
)
from netdiag.analysis.samples import SampleSpool, clamp_to_int64
from netdiag.analysis.store import (
    Codec,
    RecordStore,
    StreamFindingsCodec,
    TcpStreamCodec,
    spill_after_default,
)
from netdiag.analysis.tcpopts import window_scale

MASK32: Final = 0xFFFFFFFF
HALF32: Final = 0x80000000
UINT64: Final = 1 << 64

# Wireshark's TCP_A_* analysis bits (packet-tcp.c).
A_RETRANSMISSION: Final = 0x0001
A_LOST_PACKET: Final = 0x0002
A_ACK_LOST_PACKET: Final = 0x0004
A_KEEP_ALIVE: Final = 0x0008
A_DUPLICATE_ACK: Final = 0x0010
A_ZERO_WINDOW: Final = 0x0020
A_ZERO_WINDOW_PROBE: Final = 0x0040
A_ZERO_WINDOW_PROBE_ACK: Final = 0x0080
A_KEEP_ALIVE_ACK: Final = 0x0100
A_OUT_OF_ORDER: Final = 0x0200
A_FAST_RETRANSMISSION: Final = 0x0400
A_WINDOW_UPDATE: Final = 0x0800
A_WINDOW_FULL: Final = 0x1000
A_REUSED_PORTS: Final = 0x2000
A_SPURIOUS_RETRANSMISSION: Final = 0x4000

A_ANY_RETRANSMISSION: Final = A_RETRANSMISSION | A_FAST_RETRANSMISSION | A_SPURIOUS_RETRANSMISSION

# Truth-file / JSON names of the tcp.analysis.* fields, and the bits that set
# each. Order: as tshark's truth files list them.
ANALYSIS_FLAGS: tuple[tuple[str, int], ...] = (
    ("retransmission", A_ANY_RETRANSMISSION),
    ("fast_retransmission", A_FAST_RETRANSMISSION),
    ("spurious_retransmission", A_SPURIOUS_RETRANSMISSION),
    ("duplicate_ack", A_DUPLICATE_ACK),
    ("lost_segment", A_LOST_PACKET),
    ("out_of_order", A_OUT_OF_ORDER),
    ("zero_window", A_ZERO_WINDOW),
    ("window_full", A_WINDOW_FULL),
    ("keep_alive", A_KEEP_ALIVE),
    ("reused_ports", A_REUSED_PORTS),
    ("ack_lost_segment", A_ACK_LOST_PACKET),
    ("keep_alive_ack", A_KEEP_ALIVE_ACK),
    ("zero_window_probe", A_ZERO_WINDOW_PROBE),
    ("zero_window_probe_ack", A_ZERO_WINDOW_PROBE_ACK),
    ("window_update", A_WINDOW_UPDATE),
)
ANALYSIS_KEYS: tuple[str, ...] = tuple(name for name, _ in ANALYSIS_FLAGS)

TCP_MAX_UNACKED_SEGMENTS: Final = 10000  # Wireshark stops tracking beyond this many
FAST_RETRANSMISSION_WINDOW_NS: Final = 20_000_000  # 20 ms after the last dup ACK
DEFAULT_OUT_OF_ORDER_NS: Final = 3_000_000  # 3 ms when no initial RTT is known

MAX_SYN_FRAMES: Final = 50  # as the truth files list them
MAX_TIMELINE_HANDSHAKE: Final = 24
MAX_TIMELINE_TEARDOWN: Final = 24
MAX_FLAGGED_FRAMES: Final = 1000  # per flag per stream
MAX_COVERED_RANGES: Final = 64  # holes remembered per flow for unique bytes
MAX_POINTS_PER_STREAM = 20000  # SeqPoint and RttSample lists each
# Karn RTT samples a stream keeps for its median (a uniform reservoir past
# this; count, min and max stay exact): BoundedSamples' limit.
MAX_KARN_SAMPLES_PER_STREAM: Final = 20000
MAX_POINTS_TOTAL: Final = 100_000  # plot points and RTT samples over the whole file
# Retiring idle conversations (see conversation_state): a conversation whose
# last packet is this much older than the current one is retired, checked
# every RETIRE_SCAN_PACKETS packets (or once per live conversation, whichever
# is more) while more conversations are live than the store's threshold.
RETIRE_IDLE_NS: Final = 10_000_000_000
RETIRE_SCAN_PACKETS: Final = 4096

SYN_ACK: Final = SYN | ACK

# Zeek history letters as bits of a per-flow mask (each letter once per side);
# the letter is upper case for the originator, lower case for the responder.
HISTORY_SYN: Final = 1 << 0
HISTORY_SYNACK: Final = 1 << 1
HISTORY_ACK: Final = 1 << 2
HISTORY_DATA: Final = 1 << 3
HISTORY_FIN: Final = 1 << 4
HISTORY_RST: Final = 1 << 5
HISTORY_RETRANSMISSION: Final = 1 << 6
HISTORY_ZERO_WINDOW: Final = 1 << 7
HISTORY_GAP: Final = 1 << 8
HISTORY_INCONSISTENT: Final = 1 << 9  # SYN with RST
HISTORY_SYN_FIN: Final = 1 << 10  # SYN with FIN
HISTORY_LETTERS = {
    HISTORY_SYN: "S",
    HISTORY_SYNACK: "H",
    HISTORY_ACK: "A",
    HISTORY_DATA: "D",
    HISTORY_FIN: "F",
    HISTORY_RST: "R",
    HISTORY_RETRANSMISSION: "T",
    HISTORY_ZERO_WINDOW: "W",
    HISTORY_GAP: "G",
    HISTORY_INCONSISTENT: "I",
    HISTORY_SYN_FIN: "Q",
}
SYN_FIN_RST: Final = SYN | FIN | RST


def _seq_lt(x: int, y: int) -> bool:
    """Wireshark's LT_SEQ: x before y modulo 2**32."""
    return ((x - y) & MASK32) >= HALF32


def _seq_gt(x: int, y: int) -> bool:
    """Wireshark's GT_SEQ: x after y modulo 2**32."""
    return ((y - x) & MASK32) >= HALF32


def _seq_le(x: int, y: int) -> bool:
    difference = (x - y) & MASK32
    return difference == 0 or difference >= HALF32


_FLAG_LETTERS = (
    (FIN, "F"),
    (SYN, "S"),
    (RST, "R"),
    (PSH, "P"),
    (ACK, "A"),
    (URG, "U"),
    (0x40, "E"),
    (0x80, "C"),
)


def flag_letters(flags: int) -> str:
    """TCP flags as letters in scapy's order with ACK as 'A' ("S", "SA", "PA", "FA", "R")."""
    return "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)


def _order_statistics(values: array[int], ranks: tuple[int, ...]) -> list[int]:
    """The values at ``ranks`` (0-based) of ``values`` in sorted order (a stream's
    Karn samples: at most MAX_KARN_SAMPLES_PER_STREAM of them)."""
    ordered = sorted(values)
    return [ordered[rank] for rank in ranks]


class BoundedSamples:
    """A stream's Karn samples (integer ns) for min/median/max, at most ``limit`` kept.

    Exact up to ``limit`` values; past that the median comes from a uniform
    reservoir of ``limit`` values (min, max and count stay exact). The
    generator is seeded so that a file always gives the same report. ``add``
    is on the per-ACK path, so its common case is one append.
    """

    __slots__ = ("_extra", "_maximum", "_minimum", "_random", "limit", "values")

    def __init__(self, limit: int) -> None:
        self.values = array("q")
        self.limit = limit
        self._extra = 0  # samples beyond the limit
        self._minimum = 0
        self._maximum = 0
        self._random: random.Random | None = None

    def add(self, value_ns: int) -> None:
        values = self.values
        if len(values) < self.limit:
            try:
                values.append(value_ns)
            except OverflowError:  # see clamp_to_int64; off the common path
                values.append(clamp_to_int64(value_ns))
        else:
            self._add_beyond_limit(clamp_to_int64(value_ns))

    def _add_beyond_limit(self, value_ns: int) -> None:
        if self._random is None:
            self._random = random.Random(self.limit)
            self._minimum = min(self.values)
            self._maximum = max(self.values)
        self._extra += 1
        self._minimum = min(self._minimum, value_ns)
        self._maximum = max(self._maximum, value_ns)
        slot = self._random.randrange(self.count)
        if slot < self.limit:
            self.values[slot] = value_ns

    @property
    def count(self) -> int:
        return len(self.values) + self._extra

    def median_ns(self) -> float | None:
        if not self.values:
            return None
        count = len(self.values)
        middle = count // 2
        if count % 2:
            return float(_order_statistics(self.values, (middle,))[0])
        low, high = _order_statistics(self.values, (middle - 1, middle))
        # operator.truediv: Python's correctly rounded int / int (mypyc's is not).
        return float(operator.truediv(low + high, 2))

    def stats_ms(self) -> tuple[float | None, float | None, float | None]:
        """(min, median, max) in ms, or Nones when empty."""
        if not self.values:
            return None, None, None
        median = self.median_ns()
        minimum = min(self.values) if self._random is None else self._minimum
        maximum = max(self.values) if self._random is None else self._maximum
        return minimum / 1e6, None if median is None else median / 1e6, maximum / 1e6


class _Segment:
    """A segment sent and not yet acknowledged (Wireshark's tcp_unacked_t)."""

    __slots__ = ("frame", "nextseq", "retransmitted", "seq", "ts")

    def __init__(self, seq: int, nextseq: int, frame: int, ts: int, retransmitted: bool) -> None:
        self.seq = seq
        self.nextseq = nextseq
        self.frame = frame
        self.ts = ts
        self.retransmitted = retransmitted


class _Flow:
    """One direction of a conversation: Wireshark's tcp_flow_t plus netdiag's counters."""

    __slots__ = (
        "address",
        "base_seq",
        "base_set",
        "bytes",
        "contiguous",
        "covered",
        "covered_settled",
        "dupacknum",
        "fin",
        "history",
        "is_first_ack",
        "lastack",
        "lastack_ts",
        "lastsegmentflags",
        "maxseqtobeacked",
        "nextseq",
        "nextseq_ts",
        "packets",
        "port",
        "segments",
        "valid_bif",
        "win_scale",
        "window",
    )

    def __init__(self, address: bytes, port: int) -> None:
        self.address = address
        self.port = port
        self.base_seq = 0
        self.base_set = False
        self.win_scale = -1  # -1 unknown, -2 no scaling, else the shift
        self.window = MASK32  # Wireshark starts with G_MAXUINT32
        self.is_first_ack = False
        self.nextseq = 0  # 0 means "not known yet"
        self.nextseq_ts = 0
        self.maxseqtobeacked = 0
        self.lastack = 0
        self.lastack_ts = 0
        # Unsigned 32-bit in tshark 4.0: "ACKed unseen segment" sets it to -1,
        # i.e. 0xFFFFFFFF, which then passes the ">= 2 duplicate ACKs" test of
        # fast retransmission; the next duplicate ACK restarts it at 1.
        self.dupacknum = 0
        # Wireshark's valid_bif: bytes in flight are tracked (and so the frame
        # gets an analysis record) until a gap is seen, again after an ACK.
        self.valid_bif = True
        self.lastsegmentflags = 0
        # Unacknowledged segments, oldest first. While ``contiguous`` holds
        # (each segment starts where the previous ended), an ACK can only
        # remove a prefix, which keeps the per-ACK cost small. A list, not a
        # deque: mypyc indexes and appends to lists natively, while every deque
        # operation is a method call by name; flights are short, so deleting a
        # prefix (a memmove of pointers) costs less than that.
        self.segments: list[_Segment] = []
        self.contiguous = True
        self.packets = 0
        self.bytes = 0
        # Payload seen, as sequence ranges (tcptrace's "unique bytes"): flat
        # [start, end, start, end, ...], sorted and disjoint, positions unwrapped
        # from the relative sequence number. In-order data only moves the last end;
        # beyond MAX_COVERED_RANGES ranges the oldest is settled into a count
        # (and data below it is taken as seen), so a flow costs bounded memory.
        self.covered: list[int] = []
        self.covered_settled = 0
        self.fin = False
        self.history = 0  # HISTORY_* bits already noted for this side

    def unique_bytes(self) -> int:
        covered = self.covered
        return self.covered_settled + sum(
            covered[index + 1] - covered[index] for index in range(0, len(covered), 2)
        )


def _cover(flow: _Flow, relative_seq: int, length: int) -> None:
    """Add the payload range [relative_seq, +length) to the flow's seen ranges."""
    covered = flow.covered
    if not covered:
        covered.extend((relative_seq, relative_seq + length))
        return
    # Unwrap next to the newest range: a segment is at most 2 GiB away from it.
    delta = (relative_seq - covered[-1]) & MASK32
    start = covered[-1] + (delta - 0x100000000 if delta & 0x80000000 else delta)
    end = start + length
    floor = covered[0] if flow.covered_settled else None
    if floor is not None and start < floor:
        start = floor  # below the settled ranges: taken as seen already
        if end <= start:
            return
    merged: list[int] = []
    index = 0
    count = len(covered)
    while index < count and covered[index + 1] < start:  # ranges wholly before
        merged.extend((covered[index], covered[index + 1]))
        index += 2
    while index < count and covered[index] <= end:  # ranges touching the new one
        start = min(start, covered[index])
        end = max(end, covered[index + 1])
        index += 2
    merged.extend((start, end))
    merged.extend(covered[index:])
    while len(merged) > 2 * MAX_COVERED_RANGES:
        flow.covered_settled += merged[1] - merged[0]
        del merged[:2]
    flow.covered = merged


class _Event:
    """A timeline packet kept as seen; direction is resolved when roles are final.

    A plain class, not a dataclass: compiled by mypyc, a dataclass is built
    through the interpreted ``__init__`` that ``dataclasses`` generates.
    """

    __slots__ = ("ack", "flags", "flow", "frame", "length", "seq", "ts")

    def __init__(
        self, frame: int, ts: int, flow: int, flags: int, seq: int, ack: int, length: int
    ) -> None:
        self.frame = frame
        self.ts = ts
        self.flow = flow  # 0 or 1
        self.flags = flags
        self.seq = seq
        self.ack = ack
        self.length = length


class _Conversation:
    """Compact state of one TCP stream (Wireshark's tcp_analysis)."""

    __slots__ = (
        "ack_frame",
        "ack_ts",
        "analysis",
        "client",
        "established",
        "first_flow",
        "first_frame",
        "first_rtt",
        "first_ts",
        "flagged",
        "flows",
        "history",
        "ip_version",
        "irtt_shown",
        "karn",
        "karn_excluded",
        "last_frame",
        "last_ts",
        "mru_syn_ts",
        "packets",
        "points",
        "roles_from",
        "rst_flow",
        "rst_seen",
        "rtt_samples",
        "stream",
        "syn_count",
        "syn_frame",
        "syn_frames",
        "syn_ts",
        "synack_frame",
        "synack_ts",
        "teardown",
        "timeline",
        "timeline_teardown",
    )

    def __init__(
        self, stream: int, ip_version: int, flow1: _Flow, flow2: _Flow, frame: int, ts: int
    ) -> None:
        self.stream = stream
        self.ip_version = ip_version
        self.flows = (flow1, flow2)
        self.mru_syn_ts: int | None = None
        self.first_rtt = 0  # ns; 0 means "not measured" as in Wireshark
        # tshark prints tcp.analysis.initial_rtt only on a frame that has an
        # analysis record (a flag, an ACKed segment, or bytes in flight): a
        # stream with none after the measurement shows no iRTT.
        self.irtt_shown = False
        self.first_flow = 0  # flow index of the stream's first sender
        self.first_frame = frame
        self.first_ts = ts
        self.last_frame = frame
        self.last_ts = ts
        self.packets = 0
        self.client = -1  # index of the client's flow once known
        self.roles_from = "first_packet"
        self.syn_frame: int | None = None
        self.syn_ts = 0
        self.syn_frames: list[int] = []  # the first MAX_SYN_FRAMES
        self.syn_count = 0  # every SYN (without ACK), however many
        self.synack_frame: int | None = None
        self.synack_ts = 0
        self.ack_frame: int | None = None
        self.ack_ts = 0
        self.established = False
        self.teardown = False
        self.rst_seen = False
        self.rst_flow = -1
        self.timeline: list[_Event] = []
        self.timeline_teardown: list[_Event] = []
        self.history: list[tuple[int, str]] = []  # (flow, letter) in order of first use
        self.analysis: dict[int, int] = {}  # analysis bitmask -> frames with exactly it
        self.flagged: dict[str, list[int]] = {}
        self.karn = BoundedSamples(MAX_KARN_SAMPLES_PER_STREAM)
        self.karn_excluded = 0
        # Plot data as (frame, ts, flow, value...) tuples: directions are
        # resolved when the stream is built, once the roles are final.
        self.rtt_samples: list[tuple[int, int, int, int]] = []  # frame, ts, data flow, rtt ns
        self.points: list[tuple[int, int, int, int, int, str]] = []  # frame, ts, flow, seq, len


# -- a conversation's state as plain values (retired conversations, issue 6) --
#
# A conversation idle for a while is retired: its record is built and its
# state written to disk as a marshal-able tuple, so that memory follows the
# live conversations. Wireshark never closes a conversation, so a later packet
# on the same endpoints revives the state exactly as it was and the record
# made at retirement is dropped. Plain attributes are copied by name; the
# special ones (nested objects) are handled one by one.


def _attribute_names(cls: type, special: tuple[str, ...]) -> tuple[str, ...]:
    """The attributes of a slotted class, less ``special``, sorted.

    A mypyc-compiled class has no ``__slots__``; it lists them in ``__mypyc_attrs__``.
    """
    names: Iterable[object] = getattr(cls, "__slots__", ()) or getattr(cls, "__mypyc_attrs__", ())
    return tuple(sorted(str(name) for name in names if name not in special))


_CONVERSATION_SPECIAL: Final = ("flows", "karn", "timeline", "timeline_teardown")
_CONVERSATION_FIELDS: Final = _attribute_names(_Conversation, _CONVERSATION_SPECIAL)
_FLOW_SPECIAL: Final = ("segments",)
_FLOW_FIELDS: Final = _attribute_names(_Flow, _FLOW_SPECIAL)

ConversationState = tuple[object, ...]


def _source_order(endpoints: bytes) -> int:
    """How the source address of ``endpoints`` (``packed_endpoints``) sorts
    against the destination: positive after, negative before, 0 equal.

    As ``bytes`` order (big-endian), 32 bits at a time: compiled, native loads
    and compares, no address ``bytes`` made (one step for IPv4, up to four for IPv6).
    """
    address_length = (len(endpoints) - 4) >> 1
    if not COMPILED:  # the interpreter's faster way: two slices compared as bytes
        source_address = endpoints[:address_length]
        destination_address = endpoints[address_length : 2 * address_length]
        return (source_address > destination_address) - (source_address < destination_address)
    for offset in range(0, address_length, 4):
        source = big_endian_u32(endpoints, offset)
        destination = big_endian_u32(endpoints, address_length + offset)
        if source != destination:
            return 1 if source > destination else -1
    return 0


def _holds_window_scale_bytes(data: bytes, start: int, end: int) -> bool:
    """True when ``data[start:end]`` holds bytes 03 03 (a window-scale option's
    kind and length) anywhere: ``find(b"\\x03\\x03") >= 0`` of the slice, without
    the slice (compiled, a native loop over a dozen bytes)."""
    if not COMPILED:
        return data.find(b"\x03\x03", start, end) >= 0  # the interpreter's faster way
    return any(data[index] == 3 and data[index + 1] == 3 for index in range(start, end - 1))


def _swapped(endpoints: bytes) -> bytes:
    """``endpoints`` (``packed_endpoints``) seen from the other direction."""
    address_length = (len(endpoints) - 4) >> 1
    ports = 2 * address_length
    return (
        endpoints[address_length:ports]
        + endpoints[:address_length]
        + endpoints[ports + 2 :]
        + endpoints[ports : ports + 2]
    )


def _flow_state(flow: _Flow) -> tuple[object, ...]:
    segments = [
        (segment.seq, segment.nextseq, segment.frame, segment.ts, segment.retransmitted)
        for segment in flow.segments
    ]
    return (tuple([getattr(flow, name) for name in _FLOW_FIELDS]), segments)


def _flow_from_state(state: tuple[object, ...]) -> _Flow:
    values, segments = state
    assert isinstance(values, tuple) and isinstance(segments, list)
    flow = _Flow(b"", 0)
    for name, value in zip(_FLOW_FIELDS, values, strict=True):
        setattr(flow, name, value)
    flow.segments = [_Segment(*segment) for segment in segments]
    return flow


def _samples_state(samples: BoundedSamples) -> tuple[object, ...]:
    generator = None if samples._random is None else samples._random.getstate()
    return (
        samples.limit,
        samples.values.tobytes(),
        samples._extra,
        samples._minimum,
        samples._maximum,
        generator,
    )


def _samples_from_state(state: tuple[object, ...]) -> BoundedSamples:
    limit, values, extra, minimum, maximum, generator = state
    assert isinstance(limit, int) and isinstance(values, bytes)
    assert isinstance(extra, int) and isinstance(minimum, int) and isinstance(maximum, int)
    samples = BoundedSamples(limit)
    samples.values.frombytes(values)
    samples._extra = extra
    samples._minimum = minimum
    samples._maximum = maximum
    if generator is not None:
        samples._random = random.Random()
        samples._random.setstate(generator)  # type: ignore[arg-type]
    return samples


def _event_rows(events: list[_Event]) -> list[tuple[int, int, int, int, int, int, int]]:
    return [
        (event.frame, event.ts, event.flow, event.flags, event.seq, event.ack, event.length)
        for event in events
    ]


def conversation_state(conversation: _Conversation) -> ConversationState:
    """Every attribute of ``conversation`` as nested tuples/lists/dicts of plain values."""
    return (
        tuple([getattr(conversation, name) for name in _CONVERSATION_FIELDS]),
        _flow_state(conversation.flows[0]),
        _flow_state(conversation.flows[1]),
        _samples_state(conversation.karn),
        _event_rows(conversation.timeline),
        _event_rows(conversation.timeline_teardown),
    )


def conversation_from_state(state: ConversationState) -> _Conversation:
    """The conversation ``conversation_state`` described, equal in every attribute."""
    values, flow1, flow2, karn, timeline, teardown = state
    assert isinstance(values, tuple) and isinstance(flow1, tuple) and isinstance(flow2, tuple)
    assert isinstance(karn, tuple) and isinstance(timeline, list) and isinstance(teardown, list)
    conversation = _Conversation(0, 0, _flow_from_state(flow1), _flow_from_state(flow2), 0, 0)
    for name, value in zip(_CONVERSATION_FIELDS, values, strict=True):
        setattr(conversation, name, value)
    conversation.karn = _samples_from_state(karn)
    conversation.timeline = [_Event(*row) for row in timeline]
    conversation.timeline_teardown = [_Event(*row) for row in teardown]
    return conversation


def conversation_share(endpoints: bytes, shares: int) -> int:
    """The share (0 to ``shares - 1``) of the conversation of ``packed_endpoints``,
    the same both ways (``packet.endpoints_share``)."""
    return endpoints_share(endpoints, 0, (len(endpoints) - 4) >> 1, shares)


@dataclass(frozen=True, slots=True)
class AckRttTotals:
    """Wireshark's tcp.analysis.ack_rtt over the whole file, in ms."""

    count: int
    min_ms: float | None
    median_ms: float | None
    max_ms: float | None


class TcpTracker:
    """Follows every TCP conversation of one file, in frame order."""

    def __init__(
        self,
        plot_data: bool = True,
        spill_after: int | None = None,
        share: int = 0,
        shares: int = 1,
        judge: Callable[[TcpStream], StreamFindings | None] | None = None,
    ) -> None:
        # Only the conversations of ``share`` of ``shares`` are followed, the
        # other frames ignored: one file analysed by several processes (shares.py).
        # Read by the scan loop too: the decoder leaves the others' frames unread.
        self.share = share
        self.shares = shares
        # Live conversations by key: ``packed_endpoints`` of the two endpoints in
        # Wireshark's flow order (flow1 first), the bytes of a packet from flow1
        # to flow2 as they are in its headers. ``_reverse_keys`` holds each
        # one again under the other direction's bytes, so that a packet finds
        # its conversation with the slice the decoder made, in either direction.
        self._conversations: dict[bytes, _Conversation] = {}
        self._reverse_keys: dict[bytes, _Conversation] = {}
        # Finished streams go to a store that moves them to a temporary file
        # past a threshold: memory follows the live conversations only.
        self._spill_after = spill_after_default() if spill_after is None else spill_after
        self._finished: RecordStore[TcpStream] = RecordStore(TcpStreamCodec(), self._spill_after)
        # Stream index of each finished record, -1 once dropped (a revived one).
        self._finished_order = array("q")
        # judge(record) of each finished record (the stream's findings: the
        # caller gives findings.stream_findings), kept beside it in the same
        # positions: made while the record is in memory, read at the end as
        # ``judgements`` without reading the records back.
        self._judge = judge
        self._judged: RecordStore[StreamFindings | None] = RecordStore(
            StreamFindingsCodec(), self._spill_after
        )
        self.judgements: Sequence[StreamFindings | None] = ()
        # Retired conversations: key -> record position << 32 | state
        # position (~120 bytes each, where a live conversation costs ~6 KB).
        # A threshold of 0 (the tests' setting) retires every conversation
        # before every packet, so that each packet goes through a revival.
        self._retired: dict[bytes, int] = {}
        self._states: RecordStore[ConversationState] = RecordStore(Codec(), 0)
        self._retire_idle_ns = RETIRE_IDLE_NS if self._spill_after else -1
        self._until_scan = RETIRE_SCAN_PACKETS if self._spill_after else 1
        self.revived = 0  # how many retired conversations saw another packet
        self._stream_count = 0
        # The frame that began each stream, by stream number: what the shares
        # of one file analysed in several processes are ordered by (shares.py).
        self.creation_frames = array("q")
        # seq_points / rtt_samples feed the HTML plots only; without them
        # (``netdiag analyze --json``) no point is kept at all.
        self._points_left = MAX_POINTS_TOTAL if plot_data else 0
        # The frame of every point and sample kept, in the order kept (a frame
        # gives at most an RTT sample, then a point): the shares of one file
        # each keep their first MAX_POINTS_TOTAL, and the merge keeps the file's
        # first MAX_POINTS_TOTAL of them by these frames (shares.py, plot_cut).
        self.plot_frames = array("q")
        # Wireshark's ack_rtt of every frame: exact statistics, memory bounded.
        self.ack_rtt = SampleSpool()
        self._totals: dict[int, int] = {}
        # Optional observer of every frame: (frame, stream, analysis bits,
        # ack_rtt in ns or None). Tests use it to compare with tshark per frame.
        self.on_frame: Callable[[int, int, int, int | None], None] | None = None

    # -- per packet ---------------------------------------------------------

    def process(self, packet: DecodedPacket) -> None:
        """Account one decoded TCP packet (proto 6, full TCP header present)."""
        self.process_fields(packet.frame, packet.ts_ns, packet.tcp_fields())

    def process_fields(self, frame: int, ts: int, fields: TcpFields) -> None:
        """``process`` of a packet given as its frame number, timestamp (ns) and
        ``TcpFields``: the analysis pass's hot path, no packet built."""
        (
            ip_version,
            endpoints,
            _ttl,
            sport,
            dport,
            seq,
            ack,
            flags,
            window,
            seglen,  # never negative (the decoder's contract)
            options_data,
            options_start,
            options_end,
        ) = fields
        if self.shares > 1 and conversation_share(endpoints, self.shares) != self.share:
            return
        self._until_scan -= 1
        if self._until_scan <= 0:
            self._retire_idle(ts)
        # Wireshark orders the two flows by comparing addresses, then ports;
        # the key is the endpoints in that order (``_conversations``).
        order = _source_order(endpoints)
        if order == 0:
            order = sport - dport
            # Equal endpoints: both directions land on flow2, as in Wireshark.
            forward_index = 0 if order > 0 else 1
            in_order = order >= 0
        else:
            forward_index = 0 if order > 0 else 1
            in_order = order > 0
        if in_order:
            conversation = self._conversations.get(endpoints)
        else:
            conversation = self._reverse_keys.get(endpoints)
        if conversation is None:
            key = endpoints if in_order else _swapped(endpoints)
            if self._retired:
                conversation = self._revive(key)
            if conversation is None:
                conversation = self._new_conversation(key, ip_version, frame, ts)
                conversation.first_flow = forward_index
        forward = conversation.flows[forward_index]
        reverse = conversation.flows[1 - forward_index]
        ta = 0
        syn_ack_bits = flags & SYN_ACK
        if syn_ack_bits == SYN and forward.base_set:
            if seq != forward.base_seq:
                # A new SYN on a known 4-tuple: the port numbers were reused.
                self._finish(conversation)
                key = endpoints if in_order else _swapped(endpoints)
                conversation = self._new_conversation(key, ip_version, frame, ts)
                conversation.first_flow = forward_index
                forward = conversation.flows[forward_index]
                reverse = conversation.flows[1 - forward_index]
                ta = A_REUSED_PORTS
            else:
                # A retransmitted SYN: restore nextseq (Wireshark issue 17616,
                # a RST may have moved it).
                forward.nextseq = forward.maxseqtobeacked
        elif syn_ack_bits == SYN_ACK and forward.base_set and seq != forward.base_seq:
            forward.base_seq = seq
            ta = A_REUSED_PORTS

        ta, acked_segment, rtt_ns, karn_ok = self._analyze(
            conversation, forward, reverse, frame, ts, seq, ack, seglen, flags, window, ta
        )
        # Relative numbers as Wireshark shows them (the ACK only when ACK is set).
        relative_seq = (seq - forward.base_seq) & MASK32
        relative_ack = (ack - reverse.base_seq) & MASK32 if flags & ACK else ack

        # Handshake bookkeeping in dissect_tcp's order: the most recent SYN,
        # the initial RTT at the first ACK-without-SYN, "first ACK seen", then
        # the options (window scale) and the check of scaling in both SYNs.
        if flags & SYN:
            if not flags & ACK:
                conversation.mru_syn_ts = ts
            forward.is_first_ack = True
            if options_end > options_start:
                shift = window_scale(options_data[options_start:options_end])
                if shift is not None:
                    forward.win_scale = shift
            if forward.win_scale == -1:
                forward.win_scale = -2
                reverse.win_scale = -2
            elif flags & ACK and reverse.win_scale == -2:
                forward.win_scale = -2
        else:
            if syn_ack_bits == ACK:
                if conversation.mru_syn_ts is not None and conversation.first_rtt == 0:
                    conversation.first_rtt = ts - conversation.mru_syn_ts
                forward.is_first_ack = False
            # A window-scale option outside a SYN (bytes 03 03, its kind and
            # length, somewhere in the options; parsed only then).
            if _holds_window_scale_bytes(options_data, options_start, options_end):
                shift = window_scale(options_data[options_start:options_end])
                if shift is not None:
                    forward.win_scale = shift

        if (
            conversation.first_rtt
            and not conversation.irtt_shown
            and (
                ta
                or acked_segment is not None
                or (seglen and forward.segments and forward.valid_bif)
            )
        ):
            conversation.irtt_shown = True

        # -- netdiag's own bookkeeping: counts, roles, timeline, history ------
        conversation.packets += 1
        conversation.last_frame = frame
        conversation.last_ts = ts
        forward.packets += 1
        forward.bytes += seglen
        if seglen:
            covered = forward.covered
            if covered and (relative_seq - covered[-1]) & MASK32 == 0:
                covered[-1] += seglen  # in order: the common case
            else:
                _cover(forward, relative_seq, seglen)
        if flags & (SYN | FIN | RST):
            self._handshake_or_teardown(conversation, forward_index, frame, ts, flags)
        elif (
            flags & ACK
            and conversation.ack_frame is None
            and conversation.synack_frame is not None
            and forward_index == conversation.client
        ):
            conversation.ack_frame = frame
            conversation.ack_ts = ts
            conversation.established = True
        if conversation.teardown:
            if len(conversation.timeline_teardown) < MAX_TIMELINE_TEARDOWN:
                conversation.timeline_teardown.append(
                    _Event(frame, ts, forward_index, flags, relative_seq, relative_ack, seglen)
                )
        elif (
            conversation.roles_from != "first_packet"
            and (not conversation.established or frame == conversation.ack_frame)
            and len(conversation.timeline) < MAX_TIMELINE_HANDSHAKE
        ):
            conversation.timeline.append(
                _Event(frame, ts, forward_index, flags, relative_seq, relative_ack, seglen)
            )

        # Zeek history letters (case is resolved once the originator is known).
        if seglen:
            letter = HISTORY_DATA
        elif flags & ACK and not flags & (SYN | FIN | RST):
            letter = HISTORY_ACK
        else:
            letter = 0
        if letter and not forward.history & letter:
            forward.history |= letter
            conversation.history.append((forward_index, HISTORY_LETTERS[letter]))
        if ta:
            self._flagged(conversation, forward_index, forward, frame, ta, syn_ack_bits)

        # RTT samples: Wireshark's ack_rtt for the totals, Karn's rule per stream.
        if acked_segment is not None and rtt_ns != 0:
            self.ack_rtt.add(rtt_ns)
            if karn_ok:
                conversation.karn.add(rtt_ns)
                # _points_left first: MAX_POINTS_PER_STREAM is not Final (tests
                # patch it), so compiled, reading it is a dict lookup.
                if self._points_left > 0 and len(conversation.rtt_samples) < MAX_POINTS_PER_STREAM:
                    conversation.rtt_samples.append((frame, ts, 1 - forward_index, rtt_ns))
                    self._points_left -= 1
                    self.plot_frames.append(frame)
            else:
                conversation.karn_excluded += 1

        # Plot points for the time-sequence graph (capped).
        if self._points_left > 0 and len(conversation.points) < MAX_POINTS_PER_STREAM:
            if seglen:
                kind = "retransmission" if ta & A_ANY_RETRANSMISSION else "data"
                conversation.points.append((frame, ts, forward_index, relative_seq, seglen, kind))
                self._points_left -= 1
                self.plot_frames.append(frame)
            elif flags & ACK:
                conversation.points.append((frame, ts, forward_index, relative_ack, 0, "ack"))
                self._points_left -= 1
                self.plot_frames.append(frame)
        if self.on_frame is not None:
            self.on_frame(frame, conversation.stream, ta, rtt_ns if acked_segment else None)

    def _new_conversation(self, key: bytes, ip_version: int, frame: int, ts: int) -> _Conversation:
        address_length = (len(key) - 4) >> 1
        ports = 2 * address_length
        conversation = _Conversation(
            self._stream_count,
            ip_version,
            _Flow(key[:address_length], key[ports] << 8 | key[ports + 1]),
            _Flow(key[address_length:ports], key[ports + 2] << 8 | key[ports + 3]),
            frame,
            ts,
        )
        self._stream_count += 1
        self.creation_frames.append(frame)
        self._conversations[key] = conversation
        self._reverse_keys[_swapped(key)] = conversation
        return conversation

    def _analyze(
        self,
        conversation: _Conversation,
        forward: _Flow,
        reverse: _Flow,
        frame: int,
        ts: int,
        seq: int,
        ack: int,
        seglen: int,
        flags: int,
        window: int,
        ta: int,
    ) -> tuple[int, _Segment | None, int, bool]:
        """Wireshark's tcp_analyze_sequence_number; returns (flags, acked, rtt_ns, karn_ok)."""
        if not forward.base_set:
            forward.base_seq = seq if flags & SYN else (seq - 1) & MASK32
            forward.base_set = True
        if not reverse.base_set and flags & ACK:
            reverse.base_seq = (ack - 1) & MASK32
            reverse.base_set = True
        if flags & ACK:
            reverse.valid_bif = True

        nextseq = forward.nextseq
        no_sfr = not flags & SYN_FIN_RST
        if seglen == 1 and seq == nextseq and reverse.window == 0:
            ta |= A_ZERO_WINDOW_PROBE
        else:
            if window == 0 and no_sfr:
                ta |= A_ZERO_WINDOW
            if nextseq and (nextseq - seq) & MASK32 >= HALF32 and not flags & RST:  # GT_SEQ
                ta |= A_LOST_PACKET
                forward.valid_bif = False
            if seglen <= 1 and seq == (nextseq - 1) & MASK32 and no_sfr:
                ta |= A_KEEP_ALIVE
            same_position = seglen == 0 and seq == nextseq and ack == forward.lastack and no_sfr
            if same_position and window and window != forward.window:
                ta |= A_WINDOW_UPDATE
            if seglen > 0 and reverse.win_scale != -1 and no_sfr:
                shift = 0
                if not reverse.is_first_ack and reverse.win_scale != -2:
                    shift = reverse.win_scale
                edge = (reverse.lastack + ((reverse.window << shift) & MASK32)) & MASK32
                if (seq + seglen) & MASK32 == edge:
                    ta |= A_WINDOW_FULL
            if same_position and window == forward.window:
                if window:
                    if reverse.lastsegmentflags & A_KEEP_ALIVE:
                        ta |= A_KEEP_ALIVE_ACK
                    else:
                        # -1 (after "ACKed unseen segment") restarts at 1.
                        dupacks = forward.dupacknum
                        forward.dupacknum = 1 if dupacks == MASK32 else dupacks + 1
                        ta |= A_DUPLICATE_ACK
                elif reverse.lastsegmentflags & A_ZERO_WINDOW_PROBE:
                    ta |= A_ZERO_WINDOW_PROBE_ACK

        # finished_fwd: a new ACK number resets the duplicate-ACK count.
        if ack != forward.lastack:
            forward.dupacknum = 0
        # ACKED LOST PACKET: the ACK covers data never seen. As tshark 4.0.17
        # behaves (checked frame by frame): with a hole in the other direction
        # (its nextseq beyond 'max seq to be acked', compared as plain unsigned
        # numbers) it reports and moves the mark to nextseq; otherwise it
        # reports once, until that side's next duplicate ACK or new ACK number.
        maxseqtobeacked = reverse.maxseqtobeacked
        if maxseqtobeacked and flags & ACK and (maxseqtobeacked - ack) & MASK32 >= HALF32:
            if reverse.nextseq > maxseqtobeacked:
                reverse.maxseqtobeacked = reverse.nextseq
                ta |= A_ACK_LOST_PACKET
            else:
                if reverse.dupacknum == 0:
                    ta |= A_ACK_LOST_PACKET
                reverse.dupacknum = MASK32

        syn_or_fin = flags & (SYN | FIN)
        if (seglen > 0 or syn_or_fin) and not ta & A_KEEP_ALIVE:
            seq_not_advanced = bool(nextseq) and _seq_lt(seq, nextseq)
            if seglen > 1 and (nextseq - 1) & MASK32 == seq:
                seq_not_advanced = False
            if seglen > 0 and reverse.lastack and _seq_le((seq + seglen) & MASK32, reverse.lastack):
                ta |= A_SPURIOUS_RETRANSMISSION
            elif seq_not_advanced:
                since_ack = ts - reverse.lastack_ts
                if (
                    reverse.dupacknum >= 2
                    and reverse.lastack == seq
                    and 0 <= since_ack < FAST_RETRANSMISSION_WINDOW_NS
                ):
                    ta |= A_FAST_RETRANSMISSION
                else:
                    since_highest = ts - forward.nextseq_ts
                    threshold = conversation.first_rtt or DEFAULT_OUT_OF_ORDER_NS
                    if threshold < 0:
                        threshold += UINT64  # an unsigned 64-bit value in Wireshark
                    end = (seq + seglen + (1 if syn_or_fin else 0)) & MASK32
                    if 0 <= since_highest < threshold and nextseq != end:
                        ta |= A_OUT_OF_ORDER
                    else:
                        ta |= A_RETRANSMISSION

        # finished_checking_retransmission_type: remember the segment.
        new_nextseq = (seq + seglen) & MASK32
        segments = forward.segments
        if (seglen or syn_or_fin) and len(segments) < TCP_MAX_UNACKED_SEGMENTS:
            if syn_or_fin:
                new_nextseq = (new_nextseq + 1) & MASK32
            if segments and seq != segments[-1].nextseq:
                forward.contiguous = False
            segments.append(_Segment(seq, new_nextseq, frame, ts, bool(ta & A_ANY_RETRANSMISSION)))
        if (not forward.nextseq or (forward.nextseq - new_nextseq) & MASK32 >= HALF32) and not (
            ta & A_ZERO_WINDOW_PROBE
        ):
            forward.nextseq = new_nextseq
            forward.nextseq_ts = ts
        if (not forward.maxseqtobeacked or seq == forward.maxseqtobeacked) and not (
            ta & A_ZERO_WINDOW_PROBE
        ):
            forward.maxseqtobeacked = forward.nextseq
        forward.window = window
        forward.lastack = ack
        forward.lastack_ts = ts
        forward.lastsegmentflags = ta

        # Remove what this ACK covers from the other direction's list; the
        # oldest segment ending exactly at the ACK gives the RTT.
        acked: _Segment | None = None
        matches = 0
        karn_ok = True
        unacked = reverse.segments
        if unacked:
            if reverse.contiguous:
                # drop the prefix while not GT_SEQ(nextseq, ack)
                count = len(unacked)
                done = 0
                while done < count and (ack - unacked[done].nextseq) & MASK32 < HALF32:
                    segment = unacked[done]
                    done += 1
                    if segment.nextseq == ack:
                        acked = segment
                        matches = 1
                if done:
                    del unacked[:done]
                if unacked and _seq_gt(ack, unacked[0].seq):
                    unacked[0].seq = ack
            else:
                kept: list[_Segment] = []
                for segment in unacked:
                    segment_end = segment.nextseq
                    if ack == segment_end:
                        if acked is None:
                            acked = segment
                        elif segment.retransmitted or acked.retransmitted:
                            karn_ok = False
                        matches += 1
                    elif _seq_gt(ack, segment.seq) and _seq_le(ack, segment_end):
                        segment.seq = ack
                        kept.append(segment)
                    elif _seq_gt(segment_end, ack):
                        kept.append(segment)
                reverse.segments = kept
                unacked = kept
            if not unacked:
                reverse.contiguous = True
        rtt_ns = 0
        if acked is not None:
            rtt_ns = ts - acked.ts
            if matches > 1 or acked.retransmitted:
                karn_ok = False
        return ta, acked, rtt_ns, karn_ok

    def _handshake_or_teardown(
        self, conversation: _Conversation, flow_index: int, frame: int, ts: int, flags: int
    ) -> None:
        """Roles and handshake frames (the corpus README's definitions), FIN/RST, history."""
        syn_ack_bits = flags & SYN_ACK
        if syn_ack_bits == SYN:
            if conversation.syn_frame is None:
                conversation.syn_frame = frame
                conversation.syn_ts = ts
                conversation.client = flow_index
                conversation.roles_from = "syn"
                conversation.synack_frame = None
                conversation.ack_frame = None
                conversation.established = False
            conversation.syn_count += 1
            if len(conversation.syn_frames) < MAX_SYN_FRAMES:
                conversation.syn_frames.append(frame)
        elif syn_ack_bits == SYN_ACK:
            if conversation.roles_from == "first_packet":
                conversation.client = 1 - flow_index
                conversation.roles_from = "synack"
            if conversation.synack_frame is None and flow_index != conversation.client:
                conversation.synack_frame = frame
                conversation.synack_ts = ts
        elif (
            flags & ACK
            and not flags & RST
            and conversation.synack_frame is not None
            and conversation.ack_frame is None
            and flow_index == conversation.client
        ):
            conversation.ack_frame = frame
            conversation.ack_ts = ts
            conversation.established = True
        flow = conversation.flows[flow_index]
        if flags & (FIN | RST):
            conversation.teardown = True
            if flags & FIN:
                flow.fin = True
            if flags & RST and not conversation.rst_seen:
                conversation.rst_seen = True
                conversation.rst_flow = flow_index
        if flags & SYN:
            if flags & RST:
                letter = HISTORY_INCONSISTENT
            elif flags & FIN:
                letter = HISTORY_SYN_FIN
            else:
                letter = HISTORY_SYNACK if flags & ACK else HISTORY_SYN
        else:
            letter = HISTORY_RST if flags & RST else HISTORY_FIN
        if not flow.history & letter:
            flow.history |= letter
            conversation.history.append((flow_index, HISTORY_LETTERS[letter]))

    def _flagged(
        self,
        conversation: _Conversation,
        flow_index: int,
        flow: _Flow,
        frame: int,
        ta: int,
        syn_ack_bits: int,
    ) -> None:
        """Count a frame's analysis flags and note the history letters they imply."""
        for letter, bits in (
            (HISTORY_RETRANSMISSION, A_ANY_RETRANSMISSION if syn_ack_bits != SYN else 0),
            (HISTORY_ZERO_WINDOW, A_ZERO_WINDOW),
            (HISTORY_GAP, A_LOST_PACKET),
        ):
            if ta & bits and not flow.history & letter:
                flow.history |= letter
                conversation.history.append((flow_index, HISTORY_LETTERS[letter]))
        conversation.analysis[ta] = conversation.analysis.get(ta, 0) + 1
        self._totals[ta] = self._totals.get(ta, 0) + 1
        flagged = conversation.flagged
        for name, bits in ANALYSIS_FLAGS:
            if ta & bits:
                frames = flagged.get(name)
                if frames is None:
                    flagged[name] = [frame]
                elif len(frames) < MAX_FLAGGED_FRAMES:
                    frames.append(frame)

    # -- lookups for other trackers ----------------------------------------

    def stream_of(self, source: bytes, sport: int, destination: bytes, dport: int) -> int | None:
        """The stream a (quoted) header belongs to right now, or None."""
        for key in (
            packed_endpoints(source, sport, destination, dport),
            packed_endpoints(destination, dport, source, sport),
        ):
            conversation = self._conversations.get(key)
            if conversation is not None:
                return conversation.stream
            retired = self._retired.get(key)
            if retired is not None:
                return self._finished_order[retired >> 32]
        return None

    # -- retiring idle conversations (memory follows live ones) -------------

    def _retire_idle(self, now_ns: int) -> None:
        conversations = self._conversations
        if len(conversations) > self._spill_after:
            horizon = now_ns - self._retire_idle_ns
            idle = [key for key, state in conversations.items() if state.last_ts < horizon]
            for key in idle:
                conversation = conversations.pop(key)
                del self._reverse_keys[_swapped(key)]
                record = self._finish(conversation)
                state = self._states.append(conversation_state(conversation))
                self._retired[key] = record << 32 | state
        self._until_scan = max(RETIRE_SCAN_PACKETS, len(conversations)) if self._spill_after else 1

    def _revive(self, key: bytes) -> _Conversation | None:
        """The retired conversation of ``key`` back in play (its record dropped), or None."""
        retired = self._retired.pop(key, None)
        if retired is None:
            return None
        self._finished_order[retired >> 32] = -1
        conversation = conversation_from_state(self._states.get(retired & MASK32))
        self._conversations[key] = conversation
        self._reverse_keys[_swapped(key)] = conversation
        self.revived += 1
        return conversation

    # -- end of file ---------------------------------------------------------

    def _finish(self, conversation: _Conversation) -> int:
        """Build the record of ``conversation``; its position in the store is returned."""
        self._finished_order.append(conversation.stream)
        record = _build_stream(conversation)
        if self._judge is not None:
            self._judged.append(self._judge(record))
        return self._finished.append(record)

    def finish(self) -> Sequence[TcpStream]:
        """Every stream, in tcp.stream order. The tracker is spent afterwards.

        A tuple for a small capture, else a ``SpilledRecords`` read from disk.
        """
        # Pop as we go, so each state is freed as soon as its record exists.
        self._reverse_keys.clear()
        while self._conversations:
            _key, conversation = self._conversations.popitem()
            self._finish(conversation)
        streams = self._finished_order
        kept = [position for position in range(len(streams)) if streams[position] >= 0]
        kept.sort(key=streams.__getitem__)
        self._finished_order = array("q")
        self._retired.clear()
        self._states = RecordStore(Codec(), 0)  # the retired states' file goes now
        if self._judge is not None:
            self.judgements = self._judged.seal(kept)
        return self._finished.seal(kept)

    def totals(self) -> dict[str, int]:
        """Frames carrying each tcp.analysis flag over the file (truth-file keys)."""
        return _count_flags(self._totals.items())

    def ack_rtt_totals(self) -> AckRttTotals:
        minimum, median, maximum = self.ack_rtt.stats_ms()
        return AckRttTotals(self.ack_rtt.count, minimum, median, maximum)


def _count_flags(items: Iterable[tuple[int, int]]) -> dict[str, int]:
    counts = dict.fromkeys(ANALYSIS_KEYS, 0)
    for bits, frames in items:
        for name, mask in ANALYSIS_FLAGS:
            if bits & mask:
                counts[name] += frames
    return counts


def _zeek_state(conversation: _Conversation, client: int) -> str:
    """Zeek's conn_state from what each side sent (originator = client)."""
    originator = {letter for flow, letter in conversation.history if flow == client}
    responder = {letter for flow, letter in conversation.history if flow != client}
    syn = "S" in originator
    synack = "H" in responder
    responder_spoke = bool(responder)
    first_reset_by_originator = conversation.rst_seen and conversation.rst_flow == client
    first_reset_by_responder = conversation.rst_seen and conversation.rst_flow != client
    if not syn and not synack:
        return "OTH"
    if syn and not synack:
        if "R" in responder:
            return "REJ"
        if "R" in originator:
            return "RSTOS0"
        if "F" in originator:
            return "SH"
        if not responder_spoke:
            return "S0"
    if synack and not syn:
        if "R" in responder and not originator - {"R"}:
            return "RSTRH"
        if "F" in responder and not originator:
            return "SHR"
    if first_reset_by_originator:
        return "RSTO"
    if first_reset_by_responder:
        return "RSTR"
    if "F" in originator and "F" in responder:
        return "SF"
    if "F" in originator:
        return "S2"
    if "F" in responder:
        return "S3"
    return "S1"


def _zeek_history(conversation: _Conversation, client: int) -> str:
    letters = []
    for flow, letter in conversation.history:
        originator = flow == client
        letters.append(letter.upper() if originator else letter.lower())
    return "".join(letters)


def _build_stream(conversation: _Conversation) -> TcpStream:
    flows = conversation.flows
    # The corpus README's roles: first SYN's source, else first SYN-ACK's
    # destination, else the first packet's source.
    client = conversation.client if conversation.client != -1 else conversation.first_flow
    server = 1 - client
    client_flow = flows[client]
    server_flow = flows[server]
    first_ts = conversation.first_ts
    # No nested functions here: compiled, a closure and its environment refer to
    # each other, and with the cyclic GC off during the pass (analyze.py) every
    # finished stream left such a cycle behind (~200 bytes a stream, found by
    # counting objects at 2M and 4M packets).
    timeline = [_timeline_entry(event, first_ts, client) for event in conversation.timeline]
    seen = {entry.frame for entry in timeline}
    for event in conversation.timeline_teardown:
        if event.frame not in seen:
            timeline.append(_timeline_entry(event, first_ts, client))
    counts = {
        name: count for name, count in _count_flags(conversation.analysis.items()).items() if count
    }
    karn_min, karn_median, karn_max = conversation.karn.stats_ms()
    rst_by: Literal["client", "server"] | None = None
    if conversation.rst_seen:
        rst_by = "client" if conversation.rst_flow == client else "server"
    syn_to_synack = None
    synack_to_ack = None
    if conversation.synack_frame is not None and conversation.syn_frame is not None:
        syn_to_synack = (conversation.synack_ts - conversation.syn_ts) / 1e6
    if conversation.ack_frame is not None and conversation.synack_frame is not None:
        synack_to_ack = (conversation.ack_ts - conversation.synack_ts) / 1e6
    roles_from: Literal["syn", "synack", "first_packet"] = "first_packet"
    if conversation.roles_from == "syn":
        roles_from = "syn"
    elif conversation.roles_from == "synack":
        roles_from = "synack"
    return TcpStream(
        stream=conversation.stream,
        ip_version=conversation.ip_version,
        client=format_endpoint(client_flow.address, client_flow.port),
        server=format_endpoint(server_flow.address, server_flow.port),
        roles_from=roles_from,
        state=_zeek_state(conversation, client),
        history=_zeek_history(conversation, client),
        syn_frame=conversation.syn_frame,
        syn_frames=tuple(conversation.syn_frames),
        syn_count=conversation.syn_count,
        synack_frame=conversation.synack_frame,
        ack_frame=conversation.ack_frame,
        irtt_ms=conversation.first_rtt / 1e6 if conversation.irtt_shown else None,
        syn_to_synack_ms=syn_to_synack,
        synack_to_ack_ms=synack_to_ack,
        first_frame=conversation.first_frame,
        last_frame=conversation.last_frame,
        first_ts=first_ts / 1e9,
        last_ts=conversation.last_ts / 1e9,
        timeline=tuple(timeline),
        packets=conversation.packets,
        bytes_c2s=client_flow.bytes,
        bytes_s2c=server_flow.bytes,
        unique_bytes_c2s=client_flow.unique_bytes(),
        unique_bytes_s2c=server_flow.unique_bytes(),
        packets_c2s=client_flow.packets,
        packets_s2c=server_flow.packets,
        analysis=counts,
        rtt_ms=RttSampleStats(
            samples=conversation.karn.count,
            min=karn_min,
            median=karn_median,
            max=karn_max,
            karn_excluded=conversation.karn_excluded,
        ),
        fin_seen=flows[0].fin or flows[1].fin,
        rst_seen=conversation.rst_seen,
        rst_by=rst_by,
        flagged_frames={name: tuple(frames) for name, frames in conversation.flagged.items()},
        rtt_samples=tuple(
            [
                RttSample(frame, (ts - first_ts) / 1e6, rtt / 1e6, _direction(flow, client))
                for frame, ts, flow, rtt in conversation.rtt_samples
            ]
        ),
        seq_points=tuple(
            [
                SeqPoint(frame, (ts - first_ts) / 1e6, _direction(flow, client), seq, length, kind)  # type: ignore[arg-type]
                for frame, ts, flow, seq, length, kind in conversation.points
            ]
        ),
    )


def _direction(flow: int, client: int) -> Direction:
    return "c>s" if flow == client else "s>c"


def _timeline_entry(event: _Event, first_ts: int, client: int) -> TimelineEntry:
    return TimelineEntry(
        frame=event.frame,
        t_ms=(event.ts - first_ts) / 1e6,
        dir=_direction(event.flow, client),
        flags=flag_letters(event.flags),
        seq=event.seq,
        ack=event.ack,
        len=event.length,
    )
