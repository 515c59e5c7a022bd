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

``ArpTracker`` remembers, per (sender, target) pair, whether an ARP request
ever got a reply from the target: ``arp.unanswered`` findings come from it.

State is per pending request / per ARP pair; the records returned are the
analysis output itself (one per echo), nothing else is kept per packet.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from netdiag.analysis.addr import format_addr
from netdiag.analysis.model import EchoSummary, IcmpEcho, IcmpError, RttStats
from netdiag.analysis.packet import DecodedPacket
from netdiag.analysis.store import (
    Codec,
    EchoRow,
    EchoRowCodec,
    IcmpErrorCodec,
    RecordStore,
    SpilledRecords,
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

StreamLookup = Callable[[bytes, int, bytes, int], "int | None"]


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


class IcmpTracker:
    """Echo pairs, per-pair summaries and ICMP errors of one file."""

    def __init__(self, spill_after: int | None = None) -> None:
        self._pending: dict[tuple[int, bytes, bytes, int, int, int], _Request] = {}
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

    def process(self, packet: DecodedPacket, stream_of: StreamLookup | None = None) -> None:
        """Account one decoded ICMP (proto 1) or ICMPv6 (proto 58) packet."""
        if packet.fragment is None or packet.icmp_type < 0:
            return  # a fragment not yet reassembled, or no ICMP header captured
        protocol = packet.proto
        icmp_type = packet.icmp_type
        source = packet.src
        destination = packet.dst
        if icmp_type == ECHO_REQUEST.get(protocol) or icmp_type == ECHO_REPLY.get(protocol):
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
                self._pending[key] = request
            else:
                waiting = self._pending.pop(key, None)
                if waiting is not None:
                    waiting.reply_frame = packet.frame
                    waiting.reply_ts = packet.ts_ns
                    self._final(waiting)
                else:
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

    def _final(self, request: _Request) -> None:
        self._done_frames.append(request.frame)
        self._done.append(
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
            frames = self._done_frames
            order = sorted(range(len(frames)), key=frames.__getitem__)
            self._done_frames = array("q")
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
