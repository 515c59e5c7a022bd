"""Troubleshooting verdicts from one file's analysis records (analysis stage).

``build_findings`` reads the frozen records the trackers produced (TCP
streams, ICMP echoes and errors, ARP questions, the file description) and
turns what went wrong into ``Finding`` records with the contract's capture
codes, worst first. Each finding names the frames involved, says in one
sentence what happened, and gives a hint naming the exact command that
confirms or fixes it. A capture does not say which namespace a host lives
in, so hints write ``ip netns exec <ns-of-ADDR>`` where the command must run
on that host.

Verdicts go beyond Wireshark's expert info where a person needs more: an
unanswered SYN reports its tries and the backoff between them, a refused
connection names the port nothing listens on, and a capture that saw only
one direction of a conversation is called out instead of letting it look
like loss.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, TypeVar

from netdiag.analysis.icmp import (
    MAX_UNMATCHED_PAIRS,
    ArpQuestion,
    MoreUnmatchedReplies,
    UnmatchedReplies,
)
from netdiag.analysis.model import (
    SEVERITY_ORDER,
    EchoSummary,
    FileInfo,
    Finding,
    IcmpEcho,
    IcmpError,
    Severity,
    StreamFindings,
    TcpStream,
)
from netdiag.analysis.store import FindingCodec, RecordStore

MAX_FINDING_FRAMES = 20  # frames listed per finding; the message gives the full count
# More refused / unanswered attempts than this many distinct ports from one
# client to one server are a scan (or a firewall dropping everything): one
# finding for the lot instead of one per stream. Five covers a client trying
# a service's few usual ports (80, 443, 8080...) without being called a scan.
SCAN_MIN_PORTS = 6
# Likewise one client trying one port on more than five hosts is a sweep
# (peer discovery, a worm, a scanner): one finding per (client, port, code).
SCAN_MIN_HOSTS = 6
SCAN_CODES = ("tcp.rejected", "tcp.syn-unanswered")
# Groups kept per kind (scan, sweep): about 1 KB each, so at most a few MB.
MAX_SCAN_GROUPS = 4096
MAX_PORT_SET = 64  # ports a group keeps in a set before it takes a bitmap
MAX_SWEEP_HOSTS = 4096  # distinct hosts counted per sweep (memory bound); more reads "at least"
MAX_LISTED_HOSTS = 5  # hosts named in a sweep's message
MAX_SCAN_STREAMS = 10  # streams named in a grouped finding's message
MAX_PORT_RANGES = 12  # port ranges written out in a grouped finding's message


def _split_endpoint(endpoint: str) -> tuple[str, str]:
    """("10.0.0.1", "80") from "10.0.0.1:80"; ("2001:db8::1", "80") from "[2001:db8::1]:80"."""
    address, _, port = endpoint.rpartition(":")
    return address.strip("[]"), port


def _in_namespace_of(address: str) -> str:
    return f"ip netns exec <ns-of-{address}>"


def _ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"


def _frames(frames: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(frames))[:MAX_FINDING_FRAMES]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _handshake_halves(stream: TcpStream) -> str:
    """The two halves of the handshake RTT around the capture point, as a clause."""
    if stream.syn_to_synack_ms is None or stream.synack_to_ack_ms is None:
        return ""
    return (
        f" (handshake: {_ms(stream.syn_to_synack_ms)} capture point to server and back, "
        f"{_ms(stream.synack_to_ack_ms)} capture point to client and back)"
    )


def stream_findings(stream: TcpStream) -> StreamFindings | None:
    """The findings of one stream alone (None when it has none, as most streams).

    The TCP tracker calls it as each record is finished (analysis/analyze.py),
    so that ``build_findings`` never reads spilled streams back.
    """
    found = _stream_findings(stream)
    return StreamFindings(stream.client, stream.server, tuple(found)) if found else None


def _stream_findings(stream: TcpStream) -> list[Finding]:
    findings: list[Finding] = []
    client_address, _client_port = _split_endpoint(stream.client)
    server_address, server_port = _split_endpoint(stream.server)
    flow = f"{stream.client} -> {stream.server}"
    # A SYN the client followed with ACKs or data was answered: the SYN-ACK
    # just is not in the capture. Otherwise an unanswered SYN is a failure.
    only_client = stream.packets_s2c == 0
    # syn_count, not len(syn_frames): that list stops at MAX_SYN_FRAMES.
    only_syns = stream.packets_c2s == stream.syn_count
    one_sided = stream.packets >= 2 and (only_client or stream.packets_c2s == 0)

    if stream.state == "S0" and stream.syn_frame is not None and only_client and only_syns:
        one_sided = False
        tries = stream.syn_count
        times = [entry.t_ms for entry in stream.timeline if entry.frame in stream.syn_frames]
        intervals = [later - earlier for earlier, later in itertools.pairwise(times)]
        backoff = ""
        if intervals:
            backoff = ", retried after " + ", ".join(_ms(value) for value in intervals)
            if len(intervals) < tries - 1:  # the timeline keeps the first entries only
                backoff += ", …"
        # One SYN may be a scan or still in flight when the capture stopped;
        # a retried SYN is a connection that really failed.
        syn_severity: Severity = "error" if tries > 1 else "warn"
        findings.append(
            Finding(
                severity=syn_severity,
                code="tcp.syn-unanswered",
                stream=stream.stream,
                frames=_frames(stream.syn_frames),
                message=(
                    f"{stream.client} sent {_plural(tries, 'SYN')} to {stream.server}"
                    f"{backoff}, and no SYN-ACK came back."
                ),
                hint=(
                    "no SYN-ACK came back: is there a route back from the server, a listener, "
                    f"a firewall? On the server: `{_in_namespace_of(server_address)} "
                    f"ip route get {client_address}`, `{_in_namespace_of(server_address)} "
                    f"ss -ltn 'sport = :{server_port}'`"
                ),
            )
        )
    if stream.state == "REJ":
        reset_frames = [entry.frame for entry in stream.timeline if "R" in entry.flags]
        findings.append(
            Finding(
                severity="error",
                code="tcp.rejected",
                stream=stream.stream,
                frames=_frames([*stream.syn_frames[:1], *reset_frames]),
                message=(
                    f"connection refused: nothing listens on port {server_port} at "
                    f"{server_address} ({server_address} answered {stream.client}'s SYN "
                    "with a RST)."
                ),
                hint=(
                    f"check for a listener: `{_in_namespace_of(server_address)} "
                    f"ss -ltn 'sport = :{server_port}'`; start the service or connect to the "
                    "port it listens on"
                ),
            )
        )
    elif stream.rst_seen and stream.state in ("RSTO", "RSTR", "RSTOS0", "RSTRH", "OTH", "S1"):
        by = stream.rst_by or "an endpoint"
        side = stream.client if stream.rst_by == "client" else stream.server
        reset_frames = [entry.frame for entry in stream.timeline if "R" in entry.flags]
        findings.append(
            Finding(
                severity="warn",
                code="tcp.reset",
                stream=stream.stream,
                frames=_frames(reset_frames),
                message=(
                    f"the connection {flow} was reset by the {by} ({side}) instead of being "
                    "closed with FIN."
                ),
                hint=(
                    f"look at the application on {side}: it aborted the connection "
                    f"(`{_in_namespace_of(_split_endpoint(side)[0])} ss -tanp` while it runs "
                    "shows its state)"
                ),
            )
        )

    if one_sided:
        findings.append(
            Finding(
                severity="warn",
                code="tcp.one-sided",
                stream=stream.stream,
                frames=_frames([stream.first_frame]),
                message=(
                    f"only one direction of {flow} is in the capture ({stream.packets} packets): "
                    "what looks like loss may be asymmetric routing or a capture point that "
                    "sees one way only."
                ),
                hint=(
                    "capture where both directions pass (on the endpoint itself, or with "
                    "`tcpdump -i any`), and check the return path with `ip route get "
                    f"{client_address}` on {server_address}"
                ),
            )
        )

    flagged = stream.flagged_frames
    retransmissions = stream.count("retransmission")
    # Retransmitted SYNs of a connection that never carried data are told by
    # tcp.syn-unanswered / tcp.rejected already.
    if retransmissions and (stream.bytes_c2s or stream.bytes_s2c or stream.ack_frame):
        fast = stream.count("fast_retransmission")
        spurious = stream.count("spurious_retransmission")
        detail = []
        if fast:
            detail.append(f"{fast} fast")
        if spurious:
            detail.append(f"{spurious} spurious")
        extra = f" ({', '.join(detail)})" if detail else ""
        findings.append(
            Finding(
                severity="warn",
                code="tcp.retransmission",
                stream=stream.stream,
                frames=_frames(flagged.get("retransmission", ())),
                message=(
                    f"{_plural(retransmissions, 'segment')} of {flow} had to be sent again"
                    f"{extra}: packets were lost or delayed between the endpoints"
                    f"{_handshake_halves(stream)}."
                ),
                hint=(
                    "find where packets drop: `ip -s link show` on each hop (errors, dropped), "
                    "`nstat -az TcpRetransSegs` on the sender, `tracepath "
                    f"{server_address}` for the path"
                ),
            )
        )
    simple_flags = (
        (
            "duplicate_ack",
            "tcp.dup-ack",
            "note",
            "duplicate ACK",
            "the receiver saw a gap and kept asking for the same data",
            "compare with `tcp.retransmission` on the same stream; `ss -ti` on the sender shows "
            "its retransmission and SACK counters",
        ),
        (
            "out_of_order",
            "tcp.out-of-order",
            "note",
            "out-of-order segment",
            "segments arrived out of order (several paths, or a reordering device)",
            "check for parallel paths or bonding: `ip route show` and `ip -d link show` "
            "on the hops",
        ),
        (
            "zero_window",
            "tcp.zero-window",
            "warn",
            "zero-window advertisement",
            "a receiver's buffer was full, so the sender had to stop",
            "the receiving application reads too slowly: `ss -tm` on the receiver shows "
            "its receive queue (Recv-Q)",
        ),
        (
            "lost_segment",
            "tcp.lost-segment",
            "note",
            "gap",
            "segments before these frames are missing from the capture (lost on the "
            "wire, or not captured)",
            "if the endpoints did not retransmit them, the capture dropped them: compare "
            "`tcpdump`'s 'dropped by kernel' count, or capture with a larger buffer "
            "(`tcpdump -B 8192`)",
        ),
    )
    for flag, code, severity, noun, meaning, hint in simple_flags:
        count = stream.count(flag)
        if not count:
            continue
        severity_value: Severity = "warn" if severity == "warn" else "note"
        findings.append(
            Finding(
                severity=severity_value,
                code=code,
                stream=stream.stream,
                frames=_frames(flagged.get(flag, ())),
                message=f"{_plural(count, noun)} on {flow}: {meaning}.",
                hint=hint,
            )
        )
    return findings


def _echo_findings(echoes: Iterable[IcmpEcho], summaries: Sequence[EchoSummary]) -> list[Finding]:
    # One pass over the echoes (they may be read back from disk), keeping the
    # lowest unanswered request frames of each pair with losses.
    lossy = {(summary.src, summary.dst) for summary in summaries if summary.sent > summary.received}
    unanswered: dict[tuple[str, str], list[int]] = {pair: [] for pair in lossy}
    if lossy:
        for echo in echoes:
            if echo.frame_rep is None:
                frames = unanswered.get((echo.src, echo.dst))
                if frames is not None:
                    frames.append(echo.frame_req)
                    if len(frames) >= 2 * MAX_FINDING_FRAMES:
                        frames[:] = _frames(frames)
    findings: list[Finding] = []
    for summary in summaries:
        lost = summary.sent - summary.received
        if lost <= 0:
            continue
        severity: Severity = "error" if summary.received == 0 else "warn"
        findings.append(
            Finding(
                severity=severity,
                code="icmp.echo-unanswered",
                frames=_frames(unanswered[(summary.src, summary.dst)]),
                message=(
                    f"{lost} of {summary.sent} echo requests from {summary.src} to {summary.dst} "
                    f"got no reply ({summary.loss_pct:.1f}% loss)."
                ),
                hint=(
                    f"check both directions: `{_in_namespace_of(summary.src)} ip route get "
                    f"{summary.dst}` and `{_in_namespace_of(summary.dst)} ip route get "
                    f"{summary.src}` (a missing return route looks exactly like this)"
                ),
            )
        )
    return findings


UNREACHABLE_REASONS = {
    ("icmp", 0): "network unreachable",
    ("icmp", 1): "host unreachable",
    ("icmp", 2): "protocol unreachable",
    ("icmp", 3): "port unreachable",
    ("icmp", 9): "network administratively prohibited",
    ("icmp", 10): "host administratively prohibited",
    ("icmp", 13): "communication administratively prohibited",
    ("icmpv6", 0): "no route to destination",
    ("icmpv6", 1): "communication administratively prohibited",
    ("icmpv6", 3): "address unreachable",
    ("icmpv6", 4): "port unreachable",
}


class _ErrorGroup:
    """ICMP errors of one kind, reporter and destination: the first, a count, low frames."""

    __slots__ = ("count", "first", "frames")

    def __init__(self, first: IcmpError) -> None:
        self.first = first
        self.count = 0
        self.frames: list[int] = []


def _error_findings(errors: Iterable[IcmpError]) -> list[Finding]:
    # One pass (the errors may be read back from disk); per group only the
    # lowest frames are kept, which is all _frames() lists.
    groups: dict[tuple[str, str, str, int, int | None], _ErrorGroup] = {}
    for error in errors:
        if error.kind in ("unreachable", "frag-needed", "packet-too-big"):
            key = (error.kind, error.reporter, error.quoted_dst, error.code, error.quoted_dport)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _ErrorGroup(error)
            group.count += 1
            group.frames.append(error.frame)
            if len(group.frames) >= 2 * MAX_FINDING_FRAMES:
                group.frames[:] = _frames(group.frames)
    findings: list[Finding] = []
    for (kind, reporter, destination, code, port), group in groups.items():
        first = group.first
        frames = _frames(group.frames)
        count = f" ({_plural(group.count, 'time')})" if group.count > 1 else ""
        if kind in ("frag-needed", "packet-too-big"):
            mtu = first.next_hop_mtu
            mtu_text = f"next-hop MTU {mtu}" if mtu else "no next-hop MTU given"
            findings.append(
                Finding(
                    severity="warn",
                    code="icmp.frag-needed",
                    stream=first.stream,
                    frames=frames,
                    message=(
                        f"{reporter} could not forward a packet from {first.quoted_src} to "
                        f"{destination} without fragmenting it ({mtu_text}){count}."
                    ),
                    hint=(
                        f"find the small link with `tracepath {destination}`; lower the "
                        f"sender's MTU (`ip link set dev IFACE mtu {mtu or 1400}`) or let "
                        "path-MTU discovery work (do not drop ICMP type 3 code 4)"
                    ),
                )
            )
            continue
        reason = UNREACHABLE_REASONS.get((first.family, code), f"code {code}")
        port_text = f" port {port}" if port is not None else ""
        if reason == "port unreachable":
            hint = (
                f"nothing listens there: `{_in_namespace_of(destination)} ss -lun "
                f"'sport = :{port}'`"
            )
        elif "prohibited" in reason:
            hint = (
                f"a firewall on {reporter} rejects it: `{_in_namespace_of(reporter)} "
                "nft list ruleset`"
            )
        elif reason in ("host unreachable", "address unreachable"):
            hint = (
                f"{reporter} got no ARP/ND answer for {destination}: "
                f"`{_in_namespace_of(reporter)} ip neigh show {destination}`"
            )
        else:
            hint = (
                f"{reporter} has no route: `{_in_namespace_of(reporter)} ip route get "
                f"{destination}`, then add one (`ip route add PREFIX dev IFACE`)"
            )
        findings.append(
            Finding(
                severity="error",
                code="icmp.unreachable",
                stream=first.stream,
                frames=frames,
                message=(
                    f"{destination} answered traffic from {first.quoted_src} to its{port_text} "
                    f"with ICMP {reason}{count}."
                    if reporter == destination
                    else f"{reporter} reported {destination}{port_text} as unreachable "
                    f"({reason}) for traffic from {first.quoted_src}{count}."
                ),
                hint=hint,
            )
        )
    return findings


def _unmatched_reply_findings(unmatched: Sequence[UnmatchedReplies]) -> list[Finding]:
    return [
        _unmatched_reply_finding(
            replies.frames,
            f"{_echo_replies(replies.count)} from {replies.replier} to {replies.requester} had "
            "no request in the capture: the capture started late, the request took another "
            "path, or the reply answers another host's request.",
            f"capture on {replies.requester} itself (`{_in_namespace_of(replies.requester)} "
            "tcpdump -i any icmp`) to see its requests; `ip route get "
            f"{replies.replier}` there shows the way they go out",
        )
        for replies in unmatched
    ]


def _more_unmatched_reply_findings(more: MoreUnmatchedReplies | None) -> list[Finding]:
    if more is None:
        return []
    return [
        _unmatched_reply_finding(
            more.frames,
            f"{_echo_replies(more.count, 'more ')} had no request in the capture, between "
            f"pairs of hosts past the first {MAX_UNMATCHED_PAIRS} listed: so many pairs "
            "usually mean replies to requests with spoofed sources (the backscatter of a "
            "flood), or a capture that sees only the replies' direction.",
            "look at the repliers and requesters of these frames (`netdiag hexdump FILE "
            "--filter icmp`); a flood's victim receives replies from hosts it never pinged",
        )
    ]


def _echo_replies(count: int, more: str = "") -> str:
    return f"{count} {more}echo {'reply' if count == 1 else 'replies'}"


def _unmatched_reply_finding(frames: Sequence[int], message: str, hint: str) -> Finding:
    return Finding(
        severity="note",
        code="icmp.reply-unmatched",
        frames=_frames(frames),
        message=message,
        hint=hint,
    )


def _arp_findings(questions: Sequence[ArpQuestion]) -> list[Finding]:
    findings = []
    for question in questions:
        if question.answered:
            continue
        # Linux gives up on a neighbour after 3 unanswered requests; a single
        # one may just be a refresh whose answer fell outside the capture.
        severity: Severity = "error" if question.requests >= 3 else "warn"
        if question.requests == 1:
            severity = "note"
        findings.append(
            Finding(
                severity=severity,
                code="arp.unanswered",
                frames=question.frames,
                message=(
                    f"{question.sender} asked {_plural(question.requests, 'time')} who has "
                    f"{question.target} and nobody answered: {question.target} is not on that "
                    "link, or is down."
                ),
                hint=(
                    f"`{_in_namespace_of(question.sender)} ip neigh show {question.target}` "
                    f"(FAILED/INCOMPLETE); check that {question.target} is configured and up: "
                    f"`{_in_namespace_of(question.target)} ip -br addr` and `ip -br link`"
                ),
            )
        )
    return findings


def _capture_findings(info: FileInfo) -> list[Finding]:
    findings = []
    if info.truncated_frames:
        findings.append(
            Finding(
                severity="note",
                code="capture.truncated",
                message=(
                    f"{_plural(info.truncated_frames, 'frame')} were cut by the capture's "
                    "snapshot length: headers are analyzed, payload bytes are missing."
                ),
                hint="capture whole packets: `tcpdump -s 0 -w FILE` (or a larger `-s`)",
            )
        )
    if not info.complete:
        findings.append(
            Finding(
                severity="warn",
                code="capture.truncated",
                message=(
                    "the capture file ends early or is damaged; only what comes before is "
                    "analyzed" + (f": {info.warnings[0]}" if info.warnings else ".")
                ),
                hint=(
                    "stop the capture cleanly (Ctrl-C once, or `tcpdump -c N`) and copy the "
                    "whole file; `capinfos FILE` shows where it ends"
                ),
            )
        )
    return findings


class _ScanGroup:
    """Refused or unanswered attempts of one client: bounded state.

    Grouped per server (a port scan: the ports differ) or per server port (a
    sweep: the hosts differ). The distinct ports (a set while few, then a
    bitmap of 8 KiB whatever the number of attempts: most groups are one
    refused connection, and there may be one per conversation), the first
    MAX_SWEEP_HOSTS distinct hosts, a count, the lowest frames and first
    streams, and the positions of the per-stream findings in the store (one
    small int per finding, like the sort keys), so they can be left out when
    the group turns out to be a scan.
    """

    __slots__ = (
        "attempts",
        "frames",
        "hosts",
        "indices",
        "port_bits",
        "port_count",
        "port_set",
        "severity",
        "streams",
    )

    def __init__(self) -> None:
        self.attempts = 0
        self.port_set: set[int] = set()
        self.port_bits: bytearray | None = None
        self.port_count = 0
        self.hosts: dict[str, None] = {}  # insertion-ordered set, capped
        self.frames: list[int] = []
        self.streams: list[int] = []
        self.indices: list[int] = []
        self.severity: Severity = "note"

    def add(self, finding: Finding, server_address: str, server_port: int, index: int) -> None:
        self.attempts += 1
        bits = self.port_bits
        if bits is None:
            self.port_set.add(server_port)
            self.port_count = len(self.port_set)
            if self.port_count > MAX_PORT_SET:
                bits = self.port_bits = bytearray(8192)
                for port in self.port_set:
                    bits[port >> 3] |= 1 << (port & 7)
                self.port_set = set()
        elif not bits[server_port >> 3] & (1 << (server_port & 7)):
            bits[server_port >> 3] |= 1 << (server_port & 7)
            self.port_count += 1
        if len(self.hosts) < MAX_SWEEP_HOSTS:
            self.hosts[server_address] = None
        self.frames.extend(finding.frames)
        if len(self.frames) >= 2 * MAX_FINDING_FRAMES:
            self.frames[:] = _frames(self.frames)
        if finding.stream is not None and len(self.streams) < MAX_SCAN_STREAMS:
            self.streams.append(finding.stream)
        self.indices.append(index)
        if SEVERITY_ORDER[finding.severity] < SEVERITY_ORDER[self.severity]:
            self.severity = finding.severity

    def stream_text(self) -> str:
        """ "streams 0, 1, 2, ..." for the first streams."""
        more = ", ..." if self.attempts > len(self.streams) else ""
        return "streams " + ", ".join(str(stream) for stream in sorted(self.streams)) + more

    def host_text(self) -> str:
        """ "46 hosts (a, b, c, d, e, ...)"; "at least" once the cap is reached."""
        count = len(self.hosts)
        shown = list(self.hosts)[:MAX_LISTED_HOSTS]
        more = ", ..." if count > len(shown) else ""
        at_least = "at least " if count >= MAX_SWEEP_HOSTS else ""
        return f"{at_least}{count} hosts ({', '.join(shown)}{more})"

    def finding(self, code: str, message: str, hint: str) -> Finding:
        """The group's one finding: its worst severity, first stream, lowest frames."""
        return Finding(
            severity=self.severity,
            code=code,
            stream=min(self.streams) if self.streams else None,
            frames=_frames(self.frames),
            message=message,
            hint=hint,
        )

    def port_text(self) -> str:
        """ "1-1024, 3306, 8080" for the ports seen, the first MAX_PORT_RANGES ranges."""
        bits = self.port_bits
        if bits is None:
            ports = sorted(self.port_set)
        else:
            ports = [port for port in range(65536) if bits[port >> 3] & (1 << (port & 7))]
        spans: list[list[int]] = []  # [first, last] of each run of consecutive ports
        for port in ports:
            if spans and spans[-1][1] == port - 1:
                spans[-1][1] = port
            else:
                spans.append([port, port])
        ranges = [str(first) if first == last else f"{first}-{last}" for first, last in spans]
        shown = ", ".join(ranges[:MAX_PORT_RANGES])
        return shown + (", ..." if len(ranges) > MAX_PORT_RANGES else "")


class _FirstAttempt(NamedTuple):
    """A group's only attempt so far: its server address and port, and its finding's
    position in the store. Most groups never get a second one; a ``_ScanGroup``
    (~1 KB of sets, dicts and lists) is made only when one does."""

    server_address: str
    server_port: int
    position: int


GroupKey = TypeVar("GroupKey", tuple[str, str, str], tuple[str, int, str])


def _group_attempt(
    groups: dict[GroupKey, _ScanGroup | _FirstAttempt],
    key: GroupKey,
    attempt: _FirstAttempt,
    finding: Finding,
    finding_at: Callable[[int], Finding],
) -> None:
    """Count ``attempt`` (whose finding is ``finding``) in the group of ``key``.

    Past MAX_SCAN_GROUPS groups (a flood from spoofed sources has one per
    packet) new ones are not made: their findings stay per stream, as they
    would be anyway below the thresholds.
    """
    group = groups.get(key)
    if group is None:
        if len(groups) < MAX_SCAN_GROUPS:
            groups[key] = attempt
        return
    if isinstance(group, _FirstAttempt):
        first = group
        group = groups[key] = _ScanGroup()
        group.add(
            finding_at(first.position), first.server_address, first.server_port, first.position
        )
    group.add(finding, attempt.server_address, attempt.server_port, attempt.position)


def _scan_finding(capture: str, client: str, server: str, code: str, group: _ScanGroup) -> Finding:
    """One finding for a scan-like group (see SCAN_MIN_PORTS) of the file ``capture``."""
    streams = group.stream_text()
    ports = f"{group.port_count} ports ({group.port_text()})"
    attempts = _plural(group.attempts, "connection attempt")
    field = "ipv6" if ":" in client else "ip"
    confirm = (
        f"`tshark -r {shlex.quote(capture)} -Y '{field}.src == {client} && {field}.dst == "
        f"{server} && tcp.flags.syn == 1 && tcp.flags.ack == 0' -T fields -e tcp.dstport "
        "| sort -n | uniq -c`"
    )
    if code == "tcp.rejected":
        message = (
            f"{client} made {attempts} to {server} on {ports} and {server} refused them "
            f"with a RST ({streams}): a port scan, or a client probing "
            "for a service that is not there."
        )
        hint = (
            f"a scan tries many ports once each: {confirm} lists the ports tried; if one "
            f"of them should answer, check its listener: `{_in_namespace_of(server)} "
            "ss -ltn`"
        )
    else:
        message = (
            f"{client} made {attempts} to {server} on {ports} and none got a SYN-ACK "
            f"({streams}): a port scan of filtered ports, or a firewall "
            f"dropping everything from {client} (or a missing return route)."
        )
        hint = (
            f"{confirm} lists the ports tried; look for a dropping rule on the way: "
            f"`{_in_namespace_of(server)} nft list ruleset`, and the route back: "
            f"`{_in_namespace_of(server)} ip route get {client}`"
        )
    return group.finding(code, message, hint)


def _sweep_finding(capture: str, client: str, port: int, code: str, group: _ScanGroup) -> Finding:
    """One finding for attempts of one client to one port on many hosts (a sweep)."""
    field = "ipv6" if ":" in client else "ip"
    confirm = (
        f"`tshark -r {shlex.quote(capture)} -Y '{field}.src == {client} && tcp.dstport == {port} "
        f"&& tcp.flags.syn == 1 && tcp.flags.ack == 0' -T fields -e {field}.dst | sort | uniq -c`"
    )
    attempts = _plural(group.attempts, "connection attempt")
    where = f"port {port} on {group.host_text()}"
    if code == "tcp.rejected":
        message = (
            f"{client} made {attempts} to {where}, and they refused them with a RST "
            f"({group.stream_text()}): a sweep for a service on port {port} (peer "
            "discovery, a scanner, or a stale list of servers)."
        )
        hint = (
            f"{confirm} lists the hosts tried; nothing listens on port {port} there: "
            f"`ss -ltn 'sport = :{port}'` on one of them"
        )
    else:
        message = (
            f"{client} made {attempts} to {where}, and none got a SYN-ACK "
            f"({group.stream_text()}): a sweep of hosts that are gone or filtered, or "
            f"something near {client} dropping port {port} or its answers."
        )
        hint = (
            f"{confirm} lists the hosts tried; when none answers, look near the client "
            f"first: `{_in_namespace_of(client)} nft list ruleset`, "
            f"`{_in_namespace_of(client)} ip route get {next(iter(group.hosts))}`"
        )
    return group.finding(code, message, hint)


def build_findings(
    info: FileInfo,
    streams: Iterable[TcpStream],
    echoes: Iterable[IcmpEcho],
    summaries: Sequence[EchoSummary],
    errors: Iterable[IcmpError],
    arp_questions: Sequence[ArpQuestion] = (),
    spill_after: int | None = None,
    unmatched_replies: Sequence[UnmatchedReplies] = (),
    judged_streams: Iterable[StreamFindings | None] | None = None,
    more_unmatched_replies: MoreUnmatchedReplies | None = None,
) -> Sequence[Finding]:
    """Every finding of one file, worst first, then by first frame (0 when it
    names none), then by code; findings equal in all three keep the order they
    were made in.

    The records may be ``SpilledRecords``: each is read once. Findings go to a
    ``RecordStore`` (a tuple for a small capture) and only their sort keys
    (severity, first frame, code, creation index) stay in memory.
    Refused / unanswered attempts from one client to one server on more than
    SCAN_MIN_PORTS - 1 ports become one finding (``_ScanGroup``), and so do
    those from one client to one port on more than SCAN_MIN_HOSTS - 1 hosts:
    the per-stream ones stay in the store but are left out of the order.
    ``judged_streams``, when given, are the streams' ``stream_findings`` in
    stream order, made beforehand: ``streams`` is then not read.
    """
    store: RecordStore[Finding] = RecordStore(FindingCodec(), spill_after)
    keys: list[tuple[int, int, str, int]] = []

    def add(found: Iterable[Finding]) -> None:
        for finding in found:
            first_frame = finding.frames[0] if finding.frames else 0
            keys.append((SEVERITY_ORDER[finding.severity], first_frame, finding.code, len(keys)))
            store.append(finding)

    scans: dict[tuple[str, str, str], _ScanGroup | _FirstAttempt] = {}
    sweeps: dict[tuple[str, int, str], _ScanGroup | _FirstAttempt] = {}
    found: tuple[Finding, ...] = ()  # the stream's findings being grouped, stored after

    def finding_at(index: int) -> Finding:
        """The finding at ``index`` in the store, or among ``found`` (not stored yet)."""
        stored = len(keys)
        return found[index - stored] if index >= stored else store.get(index)

    if judged_streams is None:
        judged_streams = map(stream_findings, streams)
    for judged in judged_streams:
        if judged is None:
            continue
        found = judged.findings
        for position, finding in enumerate(found):
            if finding.code in SCAN_CODES:
                client_address = _split_endpoint(judged.client)[0]
                server_address, port_text = _split_endpoint(judged.server)
                server_port = int(port_text)
                attempt = _FirstAttempt(server_address, server_port, len(keys) + position)
                scan_key = (client_address, server_address, finding.code)
                _group_attempt(scans, scan_key, attempt, finding, finding_at)
                sweep_key = (client_address, server_port, finding.code)
                _group_attempt(sweeps, sweep_key, attempt, finding, finding_at)
        add(found)
    left_out: set[int] = set()
    # A group of one attempt (most are) is never a scan or a sweep: it has one port, one host.
    for (client_address, server_address, code), scan in scans.items():
        if isinstance(scan, _ScanGroup) and scan.port_count >= SCAN_MIN_PORTS:
            left_out.update(scan.indices)
            add([_scan_finding(info.path, client_address, server_address, code, scan)])
    # A sweep is told only when none of its attempts went into a port scan
    # above, so every attempt is counted in exactly one finding.
    for (client_address, server_port, code), sweep in sweeps.items():
        if (
            isinstance(sweep, _ScanGroup)
            and len(sweep.hosts) >= SCAN_MIN_HOSTS
            and left_out.isdisjoint(sweep.indices)
        ):
            left_out.update(sweep.indices)
            add([_sweep_finding(info.path, client_address, server_port, code, sweep)])
    add(_echo_findings(echoes, summaries))
    add(_error_findings(errors))
    add(_arp_findings(arp_questions))
    add(_unmatched_reply_findings(unmatched_replies))
    add(_more_unmatched_reply_findings(more_unmatched_replies))
    add(_capture_findings(info))
    keys.sort()
    return store.seal([key[3] for key in keys if key[3] not in left_out])
