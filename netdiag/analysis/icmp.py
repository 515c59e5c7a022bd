"""ICMP/ICMPv6 echo matching, ICMP errors and ARP requests (analysis stage).

``IcmpTracker`` pairs echo requests and replies the way Wireshark fills
``icmp.resp_to`` / ``icmp.resptime`` in a single pass: a request waits under
(its address pair, identifier, sequence number, the checksum its reply will
carry) -- the pair unordered, as Wireshark's conversation is, and the
checksum standing for "the same payload" -- and the first reply with the same
key takes it; a later request with the same key replaces an unanswered one (the older
stays unanswered), and a second reply to an answered request is left
unmatched. RTTs are differences of integer nanosecond timestamps, in ms.

ICMP errors (unreachable, fragmentation needed with its next-hop MTU, time
exceeded, packet too big...) are kept with the header they quote and, for
TCP, the stream that header belongs to at that moment.

An echo reply no pending request waits for (the capture started after the
request, the request went another way, or the reply answers someone else's
request: tshark leaves its ``icmp.resp_to`` empty) is counted per (replier,
requester) pair with its first frames: ``icmp.reply-unmatched`` findings.
Past ``MAX_UNMATCHED_PAIRS`` pairs the rest are counted together (one
finding), as replies to spoofed requests would otherwise add a pair a packet.

``ArpTracker`` remembers, per (sender, target) pair, whether an ARP request
ever got a reply from the target: ``arp.unanswered`` findings come from it.

State is per pending request / per ARP pair; the records returned are the
analysis output itself (one per echo), nothing else is kept per packet.

Memory follows the requests still waiting for a reply, not the file (issue 6):
while more than ``RETIRE_AFTER`` wait, a request idle for ``RETIRE_IDLE_NS``
of capture time (and the oldest, past ``MAX_PENDING`` waiting) is retired, as
``TcpTracker`` retires idle conversations: its row goes to the store as
unanswered, and its key to a ``DiskIndex`` on disk, with the row's position.
tshark has no time limit, so a reply found there later revives it: the
unanswered row is dropped and the answered one stored in its place (the
final order is by request frame, so nothing moves). A newer request of that
key replaces the retired one, as it would a waiting one: the index forgets
the key when the newer one is answered, or points at it once it is retired
in turn. An in-memory filter (two bits a key, fixed size) spares the disk the
look-ups of replies whose key was never retired; requests never look. Any
threshold gives the same pairs; ``NETDIAG_SPILL_AFTER=0`` retires every
waiting request before every echo (tests/test_icmp_flood.py, test_store.py
and test_fast_path.py compare that path with the in-memory one).
"""

from __future__ import annotations

import itertools
import math
import struct
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from netdiag.analysis.addr import format_addr
from netdiag.analysis.diskindex import DiskIndex
from netdiag.analysis.model import EchoSummary, IcmpEcho, IcmpError, RttStats
from netdiag.analysis.packet import DecodedPacket
from netdiag.analysis.store import (
    Codec,
    EchoRow,
    EchoRowCodec,
    IcmpErrorCodec,
    RecordStore,
    SpilledRecords,
    spill_after_default,
)

ECHO_REQUEST = {1: 8, 58: 128}
ECHO_REPLY = {1: 0, 58: 129}
# Ones'-complement change of the checksum from request to reply: ICMP type 8
# -> 0 lowers the first 16-bit word by 0x0800 (checksum + 0x0800); ICMPv6
# 128 -> 129 raises it by 0x0100 (checksum - 0x0100, i.e. + 0xFEFF).
REPLY_CHECKSUM_DELTA = {1: 0x0800, 58: 0xFEFF}

# (protocol, type) -> kind of ICMP error; ICMPv4 3/4 is refined to frag-needed.
ERROR_KINDS: dict[tuple[int, int], str] = {
    (1, 3): "unreachable",
    (1, 4): "source-quench",
    (1, 5): "redirect",
    (1, 11): "time-exceeded",
    (1, 12): "parameter-problem",
    (58, 1): "unreachable",
    (58, 2): "packet-too-big",
    (58, 3): "time-exceeded",
    (58, 4): "parameter-problem",
}
FRAG_NEEDED_CODE = 4

MAX_UNMATCHED_FRAMES = 20  # reply frames kept per pair; the count covers them all
# Pairs followed one by one; the replies of later pairs are counted together.
# Replies to spoofed requests (the backscatter of a flood) make a new pair
# nearly every packet: without a bound, memory would grow with them.
MAX_UNMATCHED_PAIRS = 1024

StreamLookup = Callable[[bytes, int, bytes, int], "int | None"]

# Requests are retired only while more than RETIRE_AFTER wait (~0.5 KB each,
# ~2 MB then): below that, the disk index's own cost (SQLite's library and
# page cache, the filter: up to ~5 MB) would exceed what it saves. 0 when the
# store's threshold is 0 (the tests' setting); TcpTracker's 256 is for ~6 KB
# conversations.
RETIRE_AFTER: Final = 4096
# A request waiting this long (capture time) leaves memory for the disk; ping
# replies come within a second or so, and a later one costs only a look-up.
RETIRE_IDLE_NS: Final = 2_000_000_000
# Waiting requests are checked every RETIRE_SCAN_PACKETS echo packets (or once
# per waiting request, whichever is more).
RETIRE_SCAN_PACKETS: Final = 4096
# A flood faster than that: past MAX_PENDING waiting, the oldest half goes too.
MAX_PENDING: Final = 16384
# The filter of retired keys: FILTER_BITS bits (1 MiB), two per key. Only
# replies consult it, and a false positive costs one look-up on disk (~2 µs):
# 5 % of them at 1M retired requests, 15 % at 2M.
FILTER_BITS: Final = 1 << 23
FILTER_MASK: Final = FILTER_BITS - 1
# Echo rows past this count are ordered in arrays of slots, not by sorted();
# frames sparser than MAX_ORDER_PASSES windows of twice the rows go to sorted().
LARGE_ORDER_COUNT: Final = 50_000
MAX_ORDER_PASSES: Final = 8

EchoKey = tuple[int, bytes, bytes, int, int, int]


class _Request:
    __slots__ = (
        "destination",
        "family",
        "frame",
        "identifier",
        "reply_frame",
        "reply_ts",
        "sequence",
        "source",
        "ts",
    )

    def __init__(
        self,
        family: Literal["icmp", "icmpv6"],
        frame: int,
        ts: int,
        source: bytes,
        destination: bytes,
        identifier: int,
        sequence: int,
    ) -> None:
        self.family: Literal["icmp", "icmpv6"] = family
        self.frame = frame
        self.ts = ts
        self.source = source
        self.destination = destination
        self.identifier = identifier
        self.sequence = sequence
        self.reply_frame: int | None = None
        self.reply_ts = 0


@dataclass(frozen=True, slots=True)
class UnmatchedReplies:
    """Echo replies from ``replier`` to ``requester`` whose request is not in the capture."""

    replier: str
    requester: str
    count: int
    frames: tuple[int, ...]  # the first reply frames (capped)


@dataclass(frozen=True, slots=True)
class MoreUnmatchedReplies:
    """Echo replies without a request from the pairs past the first
    ``MAX_UNMATCHED_PAIRS``, counted together."""

    count: int
    frames: tuple[int, ...]  # the first reply frames (capped)


class IcmpTracker:
    """Echo pairs, per-pair summaries and ICMP errors of one file."""

    def __init__(
        self,
        spill_after: int | None = None,
        retire_after: int | None = None,
        max_pending: int = MAX_PENDING,
        track_echoes: bool = True,
    ) -> None:
        # False: echoes are left alone (a share of a file other than the first
        # wants only the errors' streams; the first share's echoes are kept).
        self._track_echoes = track_echoes
        self._pending: dict[EchoKey, _Request] = {}
        # A request is final once answered or replaced; its row then goes to a
        # store that moves rows to a temporary file past a threshold, so a ping
        # flood does not keep one object per request in memory.
        self._done: RecordStore[EchoRow] = RecordStore(Codec(), spill_after)
        self._done_frames = array("q")  # request frame of each row, for the final order
        self._rows: Sequence[EchoRow] | None = None
        # One record per ICMP error packet: kept the same way.
        self._errors: RecordStore[IcmpError] = RecordStore(IcmpErrorCodec(), spill_after)
        self._sealed_errors: Sequence[IcmpError] | None = None
        # Replies without a request: a count and the first frames per (replier,
        # requester) pair, so a one-way capture of a flood stays small.
        self._unmatched: dict[tuple[bytes, bytes], list[int]] = {}
        self._unmatched_counts: dict[tuple[bytes, bytes], int] = {}
        self._more_unmatched = 0  # replies of the pairs past MAX_UNMATCHED_PAIRS
        self._more_unmatched_frames: list[int] = []
        # Retiring waiting requests (module docstring). A threshold of 0 (the
        # tests' setting) retires every waiting request before every echo.
        if retire_after is None:
            spills = spill_after_default() if spill_after is None else spill_after
            retire_after = RETIRE_AFTER if spills else 0
        self._retire_after = retire_after
        self._retire_idle_ns = RETIRE_IDLE_NS if retire_after else -1
        self._until_scan = RETIRE_SCAN_PACKETS if retire_after else 1
        self._max_pending = max_pending
        self._retired = DiskIndex()
        self._retired_filter = bytearray()  # FILTER_BITS bits from the first retirement
        self.revived = 0  # retired requests a reply reached later

    def process(self, packet: DecodedPacket, stream_of: StreamLookup | None = None) -> None:
        """Account one decoded ICMP (proto 1) or ICMPv6 (proto 58) packet."""
        if packet.fragment is None or packet.icmp_type < 0:
            return  # a fragment not yet reassembled, or no ICMP header captured
        protocol = packet.proto
        icmp_type = packet.icmp_type
        source = packet.src
        destination = packet.dst
        if icmp_type == ECHO_REQUEST.get(protocol) or icmp_type == ECHO_REPLY.get(protocol):
            if not self._track_echoes:
                return
            low, high = (source, destination) if source <= destination else (destination, source)
            is_request = icmp_type == ECHO_REQUEST[protocol]
            checksum = packet.icmp_checksum
            if is_request:
                # The checksum the reply will carry: only the type differs.
                checksum += REPLY_CHECKSUM_DELTA[protocol]
                checksum = (checksum & 0xFFFF) + (checksum >> 16)
            if checksum == 0xFFFF:
                # One's complement has two zeros: a request of checksum 0xf7ff
                # predicts 0xffff, the kernel's reply carries 0x0000 (seen on veth;
                # tshark pairs them). Compare them as one value.
                checksum = 0
            key = (protocol, low, high, packet.icmp_id, packet.icmp_seq, checksum)
            self._until_scan -= 1
            if self._until_scan <= 0:
                self._retire_idle(packet.ts_ns)
            if is_request:
                request = _Request(
                    "icmp" if protocol == 1 else "icmpv6",
                    packet.frame,
                    packet.ts_ns,
                    source,
                    destination,
                    packet.icmp_id,
                    packet.icmp_seq,
                )
                replaced = self._pending.get(key)
                if replaced is not None:
                    self._final(replaced)  # stays unanswered: no reply can reach it now
                # A retired request of this key is replaced too: a reply finds
                # this one first, and the retired one is forgotten when this
                # one is answered (below) or retired in turn (the index's entry
                # then points here). Nothing to do per request.
                self._pending[key] = request
            else:
                waiting = self._pending.pop(key, None)
                if waiting is not None:
                    waiting.reply_frame = packet.frame
                    waiting.reply_ts = packet.ts_ns
                    self._final(waiting)
                    if self._retired_filter and self._maybe_retired(key):
                        # An older request of this key may be retired: it must
                        # not take a second reply (tshark finds the newest,
                        # answered, and leaves that reply unmatched).
                        self._retired.discard(_packed_key(key))
                elif not (
                    self._retired_filter
                    and self._maybe_retired(key)
                    and self._revive(key, packet.frame, packet.ts_ns)
                ):
                    self._unmatched_reply(source, destination, packet.frame)
            return
        kind = ERROR_KINDS.get((protocol, icmp_type))
        if kind is None or packet.icmp_quoted is None:
            return
        if protocol == 1 and icmp_type == 3 and packet.icmp_code == FRAG_NEEDED_CODE:
            kind = "frag-needed"
        quoted_src, quoted_dst, quoted_proto, quoted_sport, quoted_dport = packet.icmp_quoted
        has_ports = quoted_proto in (6, 17, 132, 33)
        stream = None
        if quoted_proto == 6 and stream_of is not None:
            stream = stream_of(quoted_src, quoted_sport, quoted_dst, quoted_dport)
        self._errors.append(
            IcmpError(
                frame=packet.frame,
                family="icmp" if protocol == 1 else "icmpv6",
                type=icmp_type,
                code=packet.icmp_code,
                kind=kind,
                reporter=format_addr(source),
                quoted_src=format_addr(quoted_src),
                quoted_dst=format_addr(quoted_dst),
                quoted_proto=quoted_proto,
                quoted_sport=quoted_sport if has_ports else None,
                quoted_dport=quoted_dport if has_ports else None,
                next_hop_mtu=packet.icmp_mtu or None
                if kind in ("frag-needed", "packet-too-big")
                else None,
                stream=stream,
            )
        )

    def _unmatched_reply(self, source: bytes, destination: bytes, frame: int) -> None:
        pair = (source, destination)
        frames = self._unmatched.get(pair)
        if frames is None:
            if len(self._unmatched) >= MAX_UNMATCHED_PAIRS:
                self._more_unmatched += 1
                if len(self._more_unmatched_frames) < MAX_UNMATCHED_FRAMES:
                    self._more_unmatched_frames.append(frame)
                return
            frames = self._unmatched[pair] = []
        if len(frames) < MAX_UNMATCHED_FRAMES:
            frames.append(frame)
        self._unmatched_counts[pair] = self._unmatched_counts.get(pair, 0) + 1

    def unmatched_replies(self) -> tuple[UnmatchedReplies, ...]:
        """Echo replies no request was waiting for, per (replier, requester) pair."""
        return tuple(
            UnmatchedReplies(
                replier=format_addr(source),
                requester=format_addr(destination),
                count=self._unmatched_counts[(source, destination)],
                frames=tuple(frames),
            )
            for (source, destination), frames in self._unmatched.items()
        )

    def more_unmatched_replies(self) -> MoreUnmatchedReplies | None:
        """The replies without a request of the pairs past ``MAX_UNMATCHED_PAIRS``."""
        if not self._more_unmatched:
            return None
        return MoreUnmatchedReplies(self._more_unmatched, tuple(self._more_unmatched_frames))

    # -- retiring waiting requests (memory follows the waiting ones) ---------

    def _retire_idle(self, now_ns: int) -> None:
        pending = self._pending
        if len(pending) > self._retire_after:
            horizon = now_ns - self._retire_idle_ns
            self._retire([key for key, request in pending.items() if request.ts < horizon])
        if len(pending) > self._max_pending:
            # Insertion order is request order (a replaced key keeps its
            # place: close enough for choosing whom to retire).
            self._retire(list(itertools.islice(pending, len(pending) - self._max_pending // 2)))
        self._until_scan = max(RETIRE_SCAN_PACKETS, len(pending)) if self._retire_after else 1

    def _retire(self, keys: list[EchoKey]) -> None:
        """Store the requests of ``keys`` as unanswered; index where their rows are."""
        if not keys:
            return
        if not self._retired_filter:
            self._retired_filter = bytearray(FILTER_BITS >> 3)
        bits = self._retired_filter
        pending = self._pending
        entries = []
        for key in keys:
            entries.append((_packed_key(key), self._final(pending.pop(key))))
            hashed = hash(key)
            first = hashed & FILTER_MASK
            second = (hashed >> 32) & FILTER_MASK  # other bits of the 64-bit hash
            bits[first >> 3] |= 1 << (first & 7)
            bits[second >> 3] |= 1 << (second & 7)
        self._retired.insert_many(entries)

    def _maybe_retired(self, key: EchoKey) -> bool:
        """False when ``key`` was surely never retired (the filter has no false negatives)."""
        bits = self._retired_filter
        hashed = hash(key)
        first = hashed & FILTER_MASK
        second = (hashed >> 32) & FILTER_MASK  # other bits of the 64-bit hash
        return bool(bits[first >> 3] >> (first & 7) & bits[second >> 3] >> (second & 7) & 1)

    def _revive(self, key: EchoKey, reply_frame: int, reply_ts: int) -> bool:
        """Answer the retired request of ``key``, if there is one: its row is stored again."""
        position = self._retired.pop(_packed_key(key))
        if position is None:
            return False
        self._done_frames[position] = -1  # the unanswered row is left out of the output
        family, frame, _none, source, destination, identifier, sequence, ts, _zero = self._done.get(
            position
        )
        self._done_frames.append(frame)
        self._done.append(
            (family, frame, reply_frame, source, destination, identifier, sequence, ts, reply_ts)
        )
        self.revived += 1
        return True

    def _final(self, request: _Request) -> int:
        """Store the row of a request that is done; its position in the store is returned."""
        self._done_frames.append(request.frame)
        return self._done.append(
            (
                request.family,
                request.frame,
                request.reply_frame,
                request.source,
                request.destination,
                request.identifier,
                request.sequence,
                request.ts,
                request.reply_ts,
            )
        )

    def echoes(self, origin_ns: int) -> Sequence[IcmpEcho]:
        """Every request in frame order; ``t_req_ms`` relative to ``origin_ns``.

        A tuple for a small capture, else a ``SpilledRecords`` read from disk.
        """
        if self._rows is None:
            # Requests still waiting stay unanswered; they join the rest.
            for request in self._pending.values():
                self._final(request)
            self._pending.clear()
            self._retired.close()
            self._retired_filter = bytearray()
            # The frames go with the call: freed as soon as they are sorted.
            frames = [self._done_frames]
            self._done_frames = array("q")
            order = _frame_order(frames)
            self._rows = self._done.seal(order)
        codec = EchoRowCodec(origin_ns)
        if isinstance(self._rows, SpilledRecords):
            return self._rows.decoded_by(codec)
        return tuple([codec.decode(row) for row in self._rows])

    def errors(self) -> Sequence[IcmpError]:
        """Every ICMP error in frame order: a tuple, or a ``SpilledRecords`` when many."""
        if self._sealed_errors is None:
            self._sealed_errors = self._errors.seal()
        return self._sealed_errors


# Protocol, address length, the two addresses, identifier, sequence, checksum.
_KEY_IPV4 = struct.Struct("!BB4s4sHHH")
_KEY_IPV6 = struct.Struct("!BB16s16sHHH")


def _packed_key(key: EchoKey) -> bytes:
    """An echo key as the bytes the retired index keeps (both addresses have one length)."""
    protocol, low, high, identifier, sequence, checksum = key
    size = len(low)
    if size == 4 and len(high) == 4:
        return _KEY_IPV4.pack(protocol, 4, low, high, identifier, sequence, checksum)
    if size == 16 and len(high) == 16:
        return _KEY_IPV6.pack(protocol, 16, low, high, identifier, sequence, checksum)
    numbers = identifier << 32 | sequence << 16 | checksum
    return bytes((protocol, size)) + low + high + numbers.to_bytes(6, "big")


def _frame_order(frames_holder: list[array[int]]) -> Sequence[int]:
    """Positions of the rows by request frame, leaving out the dropped ones (-1).

    ``frames_holder`` holds the only reference to the frames, which it loses.
    Request frames are unique. ``sorted()`` of a flood's million positions
    would build two million int objects (~70 MB); past ``LARGE_ORDER_COUNT``
    rows each frame is put in its slot of an array as long as the span of
    frames (at most twice the rows; in a flood about the rows), read back in
    order into the frames array itself: 8 bytes a row plus the slots at the
    peak. Sparser frames take one pass per window of slots, up to
    ``MAX_ORDER_PASSES``; sparser still, ``sorted()``. No numpy (its import
    alone costs ~10 MB and 0.08 s). Same order every way.
    """
    frames = frames_holder.pop()
    count = len(frames)
    low = high = -1
    if count >= LARGE_ORDER_COUNT:
        for frame in frames:
            if frame >= 0:
                if low < 0 or frame < low:
                    low = frame
                high = max(high, frame)
    window = 2 * count
    if low < 0 or (high - low) // window >= MAX_ORDER_PASSES:
        positions = sorted(range(count), key=frames.__getitem__)
        return positions[frames.count(-1) :]  # the dropped rows' -1 sorts first
    if high - low < window:
        slots = array("q", [-1]) * (high - low + 1)
        for position in range(count):
            frame = frames[position]
            if frame >= 0:
                slots[frame - low] = position
        kept = 0
        for position in slots:
            if position >= 0:
                frames[kept] = position
                kept += 1
        del frames[kept:]
        return frames
    ordered = array("q")
    slots = array("q", [-1]) * window
    for start in range(low, high + 1, window):
        for position in range(count):
            offset = frames[position] - start
            if 0 <= offset < window:
                slots[offset] = position
        for index in range(window):
            position = slots[index]
            if position >= 0:
                ordered.append(position)
                slots[index] = -1
    return ordered


class _PairTotals:
    """Running figures of one (src, dst) pair: what ``ping_stats`` computes from a list."""

    __slots__ = ("maximum", "minimum", "received", "sent", "square_total", "total")

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.minimum = math.inf
        self.maximum = -math.inf
        # Added in order from 0, as sum() does on Python 3.11 (no compensation),
        # so the figures are those of ping_stats on the same list, bit for bit.
        self.total = 0.0
        self.square_total = 0.0


def summarize(echoes: Iterable[IcmpEcho]) -> tuple[EchoSummary, ...]:
    """ping's summary per (src, dst): sent, received, loss, min/avg/max/mdev.

    One pass with running totals per pair, so a spilled list of echoes is
    read once and never held.
    """
    groups: dict[tuple[str, str], _PairTotals] = {}
    for echo in echoes:
        key = (echo.src, echo.dst)
        totals = groups.get(key)
        if totals is None:
            totals = groups[key] = _PairTotals()
        totals.sent += 1
        rtt = echo.rtt_ms
        if rtt is not None:
            totals.received += 1
            totals.minimum = min(totals.minimum, rtt)
            totals.maximum = max(totals.maximum, rtt)
            totals.total += rtt
            totals.square_total += rtt * rtt
    summaries = []
    for (source, destination), totals in groups.items():
        sent = totals.sent
        received = totals.received
        summaries.append(
            EchoSummary(
                src=source,
                dst=destination,
                sent=sent,
                received=received,
                loss_pct=100.0 * (sent - received) / sent if sent else 0.0,
                rtt_ms=_stats_of(totals),
            )
        )
    return tuple(summaries)


def _stats_of(totals: _PairTotals) -> RttStats | None:
    """``ping_stats`` from running totals (same formulas, same order of additions)."""
    count = totals.received
    if not count:
        return None
    mean = totals.total / count
    mean_square = totals.square_total / count
    return RttStats(
        min=totals.minimum,
        avg=mean,
        max=totals.maximum,
        mdev=math.sqrt(max(0.0, mean_square - mean * mean)),
    )


def ping_stats(rtts: list[float]) -> RttStats | None:
    """min/avg/max/mdev as iputils ping prints them: mdev = sqrt(mean(x^2) - mean(x)^2)."""
    if not rtts:
        return None
    count = len(rtts)
    mean = sum(rtts) / count
    mean_square = sum(rtt * rtt for rtt in rtts) / count
    return RttStats(
        min=min(rtts),
        avg=mean,
        max=max(rtts),
        mdev=math.sqrt(max(0.0, mean_square - mean * mean)),
    )


@dataclass(frozen=True, slots=True)
class ArpQuestion:
    """ARP requests from one sender for one target, and whether the target answered."""

    sender: str
    target: str
    requests: int
    frames: tuple[int, ...]  # the first request frames (capped)
    answered: bool


MAX_ARP_FRAMES = 20


class ArpTracker:
    """Who asked ARP for whom, and who answered (IPv4 ARP only)."""

    def __init__(self) -> None:
        self._questions: dict[tuple[bytes, bytes], list[int]] = {}
        self._answered: set[tuple[bytes, bytes]] = set()
        self._counts: dict[tuple[bytes, bytes], int] = {}

    def process(self, packet: DecodedPacket) -> None:
        sender = packet.src
        target = packet.dst
        if len(sender) != 4 or len(target) != 4:
            return
        if packet.arp_op == 1:
            if sender in (target, b"\x00\x00\x00\x00"):
                return  # gratuitous ARP or address probe: nobody is expected to answer
            key = (sender, target)
            frames = self._questions.setdefault(key, [])
            if len(frames) < MAX_ARP_FRAMES:
                frames.append(packet.frame)
            self._counts[key] = self._counts.get(key, 0) + 1
        elif packet.arp_op == 2:
            # A reply from T to S answers S's question about T.
            self._answered.add((target, sender))

    def questions(self) -> tuple[ArpQuestion, ...]:
        return tuple(
            ArpQuestion(
                sender=format_addr(sender),
                target=format_addr(target),
                requests=self._counts[(sender, target)],
                frames=tuple(frames),
                answered=(sender, target) in self._answered,
            )
            for (sender, target), frames in self._questions.items()
        )
