"""Frozen records that leave the analysis stage.

These are the types the report stage and the CLI consume, and their
``to_json()`` is the ``netdiag analyze --json`` document of
``shared/spec/contract.md``. Field names follow Wireshark's vocabulary. A
failure is a value (``TcpStream(state="S0")``, an ``IcmpEcho`` with
``frame_rep=None``), never a missing row.

Times are milliseconds rounded to 0.001 ms in JSON; inside the records they
are kept as given so that the rounding happens once, at the edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warn", "note"]
Direction = Literal["c>s", "s>c"]

SEVERITY_ORDER: dict[str, int] = {"error": 0, "warn": 1, "note": 2}


# |1000 x| below this: the product's rounding error is at most 2**-14 (see round_ms).
_ROUND_MS_EXACT_BELOW = 2.0**40


def round_ms(value: float | None) -> float | None:
    """Round a millisecond value to the contract's 0.001 ms: ``round(value, 3)``.

    ``round(x, 3)`` goes through a decimal string (dtoa, then strtod), ~0.4 µs;
    the JSON writer calls it ~100,000 times per million packets. The shortcut
    returns the same float: with ``scaled = fl(1000 x)`` below 2**40 in size,
    ``|scaled - 1000 x| <= 2**-14``, so when ``scaled`` is within 0.499 of the
    integer ``nearest``, ``1000 x`` is within 0.5 of it too: ``nearest`` is the
    correctly rounded ``1000 x`` (no tie is possible), and ``nearest / 1000``
    (one correctly rounded division) is the double nearest to ``nearest / 1000``,
    as is ``round``'s result, the double read back from that decimal (at 0,
    ``round`` gives 0.0 or -0.0 with the sign of ``value``). Near a tie, for NaN,
    inf, huge values and non-floats ``round`` itself answers.
    tests/test_model.py compares both.
    """
    if type(value) is float:
        scaled = value * 1000.0
        if -_ROUND_MS_EXACT_BELOW < scaled < _ROUND_MS_EXACT_BELOW:
            nearest = round(scaled)
            if -0.499 < scaled - nearest < 0.499:
                # 0 keeps the sign of ``value``, as round's 0.0 or -0.0 does.
                return nearest / 1000 if nearest else value * 0.0
        return round(value, 3)
    return None if value is None else round(value, 3)


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    format: Literal["pcap", "pcapng"]
    link_types: tuple[int, ...]
    packets: int
    first_ts: float | None  # epoch seconds
    last_ts: float | None
    complete: bool
    warnings: tuple[str, ...] = ()
    ts_resolution: Literal["us", "ns", "mixed"] = "us"
    byte_order: Literal["little", "big"] = "little"
    truncated_frames: int = 0  # caplen < original length
    # Exact epoch nanoseconds of the first/last frame that has a time (a float
    # epoch keeps only ~0.24 us; pcapng offsets can be far larger).
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    # pcapng blocks tshark lists as frames but that carry no packet (custom
    # blocks); they are included in ``packets`` so frame numbers agree.
    non_packet_frames: int = 0
    frames_without_timestamp: int = 0  # simple packet blocks and custom blocks
    captured_bytes: int = 0  # sum of captured lengths

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "link_types": list(self.link_types),
            "packets": self.packets,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "complete": self.complete,
            "warnings": list(self.warnings),
            "ts_resolution": self.ts_resolution,
            "byte_order": self.byte_order,
            "truncated_frames": self.truncated_frames,
        }


@dataclass(frozen=True, slots=True)
class DecodeCounts:
    """How every frame of the file was classified at the decode boundary.

    ``ipv4 + ipv6 + arp + other + undecodable == FileInfo.packets``; ``truncated``
    counts frames (of any class) whose captured length is below the original.
    """

    ipv4: int = 0
    ipv6: int = 0
    arp: int = 0
    other: int = 0
    undecodable: int = 0
    truncated: int = 0
    tunnelled: int = 0  # IP found inside GRE/GTP-U/VXLAN/PPPoE/MPLS
    fragments: int = 0  # IP fragments seen (reassembled where complete)

    def to_json(self) -> dict[str, int]:
        return {
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "arp": self.arp,
            "other": self.other,
            "undecodable": self.undecodable,
            "truncated": self.truncated,
            "tunnelled": self.tunnelled,
            "fragments": self.fragments,
        }


@dataclass(frozen=True, slots=True)
class RttStats:
    """ping-style summary: min/avg/max/mdev in ms."""

    min: float
    avg: float
    max: float
    mdev: float

    def to_json(self) -> dict[str, float | None]:
        return {
            "min": round_ms(self.min),
            "avg": round_ms(self.avg),
            "max": round_ms(self.max),
            "mdev": round_ms(self.mdev),
        }


@dataclass(frozen=True, slots=True)
class IcmpEcho:
    """One echo request and its reply (``frame_rep`` None when unanswered)."""

    family: Literal["icmp", "icmpv6"]
    frame_req: int
    frame_rep: int | None
    src: str
    dst: str
    id: int
    seq: int
    rtt_ms: float | None
    t_req_ms: float = 0.0  # request time relative to the first frame of the file

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "frame_req": self.frame_req,
            "frame_rep": self.frame_rep,
            "src": self.src,
            "dst": self.dst,
            "id": self.id,
            "seq": self.seq,
            "rtt_ms": round_ms(self.rtt_ms),
            "t_req_ms": round_ms(self.t_req_ms),
        }


@dataclass(frozen=True, slots=True)
class EchoSummary:
    src: str
    dst: str
    sent: int
    received: int
    loss_pct: float
    rtt_ms: RttStats | None

    def to_json(self) -> dict[str, Any]:
        return {
            "src": self.src,
            "dst": self.dst,
            "sent": self.sent,
            "received": self.received,
            "loss_pct": round(self.loss_pct, 1),
            "rtt_ms": None if self.rtt_ms is None else self.rtt_ms.to_json(),
        }


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP/ICMPv6 error matched back to the flow it quotes."""

    frame: int
    family: Literal["icmp", "icmpv6"]
    type: int
    code: int
    kind: str  # "unreachable", "frag-needed", "time-exceeded", "packet-too-big", ...
    reporter: str  # source address of the error
    quoted_src: str
    quoted_dst: str
    quoted_proto: int
    quoted_sport: int | None
    quoted_dport: int | None
    next_hop_mtu: int | None
    stream: int | None  # TCP stream the quoted header belongs to, if any

    def to_json(self) -> dict[str, Any]:
        return {
            "frame": self.frame,
            "family": self.family,
            "type": self.type,
            "code": self.code,
            "kind": self.kind,
            "reporter": self.reporter,
            "quoted": {
                "src": self.quoted_src,
                "dst": self.quoted_dst,
                "proto": self.quoted_proto,
                "sport": self.quoted_sport,
                "dport": self.quoted_dport,
            },
            "next_hop_mtu": self.next_hop_mtu,
            "stream": self.stream,
        }


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One packet of a handshake or teardown, seq/ack relative as Wireshark shows them."""

    frame: int
    t_ms: float  # relative to the stream's first packet
    dir: Direction
    flags: str  # "S", "SA", "A", "PA", "FA", "R", ... (tcpdump letters, ACK as "A")
    seq: int
    ack: int
    len: int

    def to_json(self) -> dict[str, Any]:
        return {
            "frame": self.frame,
            "t_ms": round_ms(self.t_ms),
            "dir": self.dir,
            "flags": self.flags,
            "seq": self.seq,
            "ack": self.ack,
            "len": self.len,
        }


@dataclass(frozen=True, slots=True)
class RttSampleStats:
    samples: int
    min: float | None
    median: float | None
    max: float | None
    karn_excluded: int = 0  # samples from retransmitted segments, reported apart

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "min": round_ms(self.min),
            "median": round_ms(self.median),
            "max": round_ms(self.max),
            "karn_excluded": self.karn_excluded,
        }


@dataclass(frozen=True, slots=True)
class RttSample:
    """One data/ACK RTT sample: the frame of the ACK, when, and the RTT."""

    frame: int
    t_ms: float
    rtt_ms: float
    dir: Direction  # direction of the data segment being acknowledged


@dataclass(frozen=True, slots=True)
class SeqPoint:
    """A point of the tcptrace time-sequence graph (data segment or ACK)."""

    frame: int
    t_ms: float
    dir: Direction
    seq: int  # relative sequence number of the segment (or ACK number for acks)
    len: int
    kind: Literal["data", "ack", "retransmission"]


@dataclass(frozen=True, slots=True)
class TcpStream:
    stream: int
    ip_version: int
    client: str  # "ip:port" or "[ipv6]:port"
    server: str
    roles_from: Literal["syn", "synack", "first_packet"]
    state: str  # Zeek conn_state
    history: str  # Zeek history
    syn_frame: int | None
    syn_frames: tuple[int, ...]  # the first MAX_SYN_FRAMES (tcp.py) SYNs without ACK
    # Every SYN without ACK, however many (the findings count the tries with
    # it); not in the JSON, whose syn_frames says as much up to its cap.
    syn_count: int
    synack_frame: int | None
    ack_frame: int | None
    irtt_ms: float | None
    syn_to_synack_ms: (
        float | None
    )  # server-side half of the handshake RTT (seen from capture point)
    synack_to_ack_ms: float | None  # client-side half
    first_frame: int
    last_frame: int
    first_ts: float
    last_ts: float
    timeline: tuple[TimelineEntry, ...]
    packets: int
    bytes_c2s: int
    bytes_s2c: int
    analysis: dict[str, int]  # tcp.analysis.* flag -> frames flagged
    rtt_ms: RttSampleStats
    fin_seen: bool
    rst_seen: bool
    rst_by: Literal["client", "server"] | None
    flagged_frames: dict[str, tuple[int, ...]] = field(default_factory=dict)
    rtt_samples: tuple[RttSample, ...] = ()
    seq_points: tuple[SeqPoint, ...] = ()  # for plots; may be capped on huge streams
    packets_c2s: int = 0  # packets sent by the client (packets_c2s + packets_s2c == packets)
    packets_s2c: int = 0
    # Payload bytes counted once per sequence range (tcptrace's "unique bytes
    # sent"): bytes_* minus what was sent again, less any range never captured.
    unique_bytes_c2s: int = 0
    unique_bytes_s2c: int = 0

    def count(self, flag: str) -> int:
        return self.analysis.get(flag, 0)

    def to_json(self) -> dict[str, Any]:
        count = self.analysis.get  # self.count without a method call per counter
        return {
            "stream": self.stream,
            "ip_version": self.ip_version,
            "client": self.client,
            "server": self.server,
            "roles_from": self.roles_from,
            "state": self.state,
            "history": self.history,
            "syn_frame": self.syn_frame,
            "syn_frames": list(self.syn_frames),
            "synack_frame": self.synack_frame,
            "ack_frame": self.ack_frame,
            "irtt_ms": round_ms(self.irtt_ms),
            "syn_to_synack_ms": round_ms(self.syn_to_synack_ms),
            "synack_to_ack_ms": round_ms(self.synack_to_ack_ms),
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "timeline": [entry.to_json() for entry in self.timeline],
            "packets": self.packets,
            "packets_c2s": self.packets_c2s,
            "packets_s2c": self.packets_s2c,
            "bytes_c2s": self.bytes_c2s,
            "bytes_s2c": self.bytes_s2c,
            "unique_bytes_c2s": self.unique_bytes_c2s,
            "unique_bytes_s2c": self.unique_bytes_s2c,
            "retransmissions": count("retransmission", 0),
            "fast_retransmissions": count("fast_retransmission", 0),
            "dup_acks": count("duplicate_ack", 0),
            "out_of_order": count("out_of_order", 0),
            "zero_window": count("zero_window", 0),
            "lost_segments": count("lost_segment", 0),
            "analysis": dict(sorted(self.analysis.items())),
            "rtt_ms": self.rtt_ms.to_json(),
            "fin_seen": self.fin_seen,
            "rst_seen": self.rst_seen,
            "rst_by": self.rst_by,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: str  # one of the contract's finding codes
    message: str  # one sentence a person understands
    hint: str  # the command or check that fixes or confirms it
    stream: int | None = None
    frames: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "stream": self.stream,
            "frames": list(self.frames),
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True, slots=True)
class StreamFindings:
    """One stream's own findings, with the endpoints that group scans and sweeps.

    Made when the stream's record is finished, while it is in memory, so that
    the findings never read a spilled stream back (analysis/findings.py).
    """

    client: str
    server: str
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything ``netdiag analyze`` knows about one file."""

    file: FileInfo
    decode: DecodeCounts
    # The four lists that grow with the file are tuples for a small capture
    # and ``store.SpilledRecords`` (read back from a temporary file) for a
    # large one: read-only sequences either way, equal when their records are.
    icmp_echo: Sequence[IcmpEcho]
    icmp_echo_summary: tuple[EchoSummary, ...]
    icmp_errors: Sequence[IcmpError]
    tcp: Sequence[TcpStream]
    findings: Sequence[Finding]
    tcp_analysis_totals: dict[str, int] = field(default_factory=dict)
    # Wireshark's tcp.analysis.ack_rtt over every frame of the file (ms).
    ack_rtt_count: int = 0
    ack_rtt_min_ms: float | None = None
    ack_rtt_median_ms: float | None = None
    ack_rtt_max_ms: float | None = None
    # Echo replies whose request is not in the capture (icmp.reply-unmatched).
    icmp_unmatched_replies: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file.to_json(),
            "decode": self.decode.to_json(),
            # The contract lists answered pairs; unanswered requests keep
            # frame_rep/rtt_ms null so nothing is dropped silently.
            "icmp_echo": [echo.to_json() for echo in self.icmp_echo],
            "icmp_echo_summary": [summary.to_json() for summary in self.icmp_echo_summary],
            "icmp_errors": [error.to_json() for error in self.icmp_errors],
            "icmp_unmatched_replies": self.icmp_unmatched_replies,
            "tcp": [stream.to_json() for stream in self.tcp],
            "tcp_analysis": dict(sorted(self.tcp_analysis_totals.items())),
            "tcp_ack_rtt": {
                "count": self.ack_rtt_count,
                "min_ms": round_ms(self.ack_rtt_min_ms),
                "median_ms": round_ms(self.ack_rtt_median_ms),
                "max_ms": round_ms(self.ack_rtt_max_ms),
            },
            "findings": [finding.to_json() for finding in self.findings],
        }
