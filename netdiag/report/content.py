"""What a report says, computed once for every form (Markdown, HTML, terminal).

Report stage: turns the frozen analysis records (and a ``RunResult``) into
plain, already-worded facts -- the ten-second summary, findings worst first,
the streams worth a detailed section, text ladder diagrams, hex dumps -- so
that ``markdown.py`` and ``html.py`` only lay them out and cannot disagree.

Nothing here escapes text: each renderer escapes for its own syntax, because
addresses, hostnames and payload bytes come from packets and may carry markup.
Big captures are capped here (the streams given a detailed section and a plot,
rows of long tables), so that a 10,000-packet file reports in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from netdiag.analysis.model import (
    SEVERITY_ORDER,
    Analysis,
    EchoSummary,
    Finding,
    IcmpError,
    TcpStream,
    TimelineEntry,
)
from netdiag.analysis.store import Reordered
from netdiag.experiment.model import PingResult, RunResult

# Caps that keep reports of big captures quick to write and to read.
DETAILED_STREAMS = 5  # streams given their own section (ladder, stats)
PLOTTED_STREAMS = 3  # streams given time-sequence and ladder plots
TABLE_ROWS = 200  # rows of the stream and echo tables
DEFAULT_HEXDUMP_FRAMES = 20  # data segments dumped by default for a run

LINK_TYPE_NAMES = {
    0: "BSD loopback (NULL)",
    1: "Ethernet",
    101: "raw IP",
    104: "Cisco HDLC",
    105: "IEEE 802.11",
    108: "OpenBSD loopback",
    113: "Linux cooked (SLL)",
    127: "802.11 radiotap",
    228: "raw IPv4",
    229: "raw IPv6",
    242: "IP over InfiniBand",
    276: "Linux cooked v2 (SLL2)",
}

# Zeek conn.log's conn_state, in words (Zeek's own documentation wording, shortened).
STATE_MEANINGS = {
    "S0": "connection attempt seen, no reply",
    "S1": "established, not terminated",
    "SF": "normal establishment and termination",
    "REJ": "connection attempt rejected (RST answered the SYN)",
    "S2": "established, close attempt by the client seen (no reply from the server)",
    "S3": "established, close attempt by the server seen (no reply from the client)",
    "RSTO": "established, the client aborted (sent a RST)",
    "RSTR": "established, the server aborted (sent a RST)",
    "RSTOS0": "the client sent a SYN then a RST; no SYN-ACK seen",
    "RSTRH": "the server sent a SYN-ACK then a RST; no SYN seen",
    "SH": "the client sent a SYN then a FIN; no SYN-ACK seen (half-open)",
    "SHR": "the server sent a SYN-ACK then a FIN; no SYN seen",
    "OTH": "no SYN seen, only midstream traffic",
}

# The letters of analysis/tcp.py's flag_letters (scapy's: CWR is "C"), which the
# timeline and the JSON carry; tests/test_report.py checks every one has a word.
FLAG_WORDS = {
    "S": "SYN",
    "A": "ACK",
    "F": "FIN",
    "R": "RST",
    "P": "PSH",
    "U": "URG",
    "E": "ECE",
    "C": "CWR",
}


@dataclass(frozen=True, slots=True)
class PlotFile:
    """A PNG written beside the report; ``relative`` is its path from the report folder."""

    relative: str
    title: str
    caption: str
    path: Path


@dataclass(frozen=True, slots=True)
class HexDump:
    frame: int
    header: str
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CaptureSection:
    """Everything shown for one capture file."""

    analysis: Analysis
    label: str  # the file's base name
    findings: tuple[Finding, ...]  # worst first
    summary: tuple[str, ...]  # sentences of the ten-second summary
    # streams_by_size(analysis), sorted once: each sort reads every stream back
    # from disk for a big capture, and the Markdown, HTML and terminal forms
    # all show the streams in this order.
    by_size: Sequence[TcpStream]
    detailed_streams: tuple[TcpStream, ...]
    hexdumps: tuple[HexDump, ...] = ()
    hexdump_note: str = ""
    hexdump_link_layer: bool = False  # dumped as tcpdump -XX (link layer included)
    plots: tuple[PlotFile, ...] = ()
    stream_plots: dict[int, tuple[PlotFile, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReportContent:
    title: str
    verdict: str
    run: RunResult | None
    captures: tuple[CaptureSection, ...]


def worst_first(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Errors, then warnings, then notes; the analysis order within a severity."""
    return tuple(sorted(findings, key=lambda finding: SEVERITY_ORDER.get(finding.severity, 3)))


def format_ms(value: float | None) -> str:
    """A millisecond value for people: 3 decimals, or an em dash when absent."""
    return "—" if value is None else f"{value:.3f}"


def utc_time(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    seconds = int(epoch)
    fraction = f"{epoch - seconds:.6f}"[1:]
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + fraction + " UTC"


def link_type_name(link_type: int) -> str:
    return LINK_TYPE_NAMES.get(link_type, f"link type {link_type}")


def flag_words(flags: str) -> str:
    """``"SA"`` -> ``"SYN,ACK"``; ``"SEC"`` -> ``"SYN,ECE,CWR"`` (an ECN-setup SYN)."""
    return ",".join(FLAG_WORDS.get(letter, letter) for letter in flags) or "none"


def plural(count: int, word: str, plural_word: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural_word or word + 's')}"


def ladder_label(entry: TimelineEntry) -> str:
    label = f"{flag_words(entry.flags)} seq={entry.seq}"
    if "A" in entry.flags:
        label += f" ack={entry.ack}"
    if entry.len:
        label += f" len={entry.len}"
    return label


LADDER_WIDTH = 44


def ladder_text(stream: TcpStream) -> str:
    """A text sequence diagram of the stream's handshake and teardown.

    One row per timeline packet: its time from the stream's first packet, its
    frame, and an arrow between the client and server columns.
    """
    client = f"client {stream.client}"
    server = f"server {stream.server}"
    prefix_width = 20
    lines = [
        f"{'t (ms)':>10}  {'frame':<6}  {client:<{LADDER_WIDTH}}{server}",
    ]
    for entry in stream.timeline:
        label = f" {ladder_label(entry)} "
        body_width = LADDER_WIDTH - 2
        if len(label) > body_width - 2:
            label = label[: body_width - 3] + "… "
        if entry.dir == "c>s":
            arrow = "|" + label.center(body_width, "-") + ">|"
        else:
            arrow = "|<" + label.center(body_width, "-") + "|"
        lines.append(f"{entry.t_ms:>10.3f}  #{entry.frame:<5}  {arrow}")
    if not stream.timeline:
        lines.append(" " * prefix_width + "(no handshake or teardown packets seen)")
    return "\n".join(lines)


def ping_lines(source: str, destination: str, summary: EchoSummary | PingResult) -> list[str]:
    """The last two lines ``ping`` prints, for an echo summary."""
    lines = [
        f"--- {source} -> {destination} ---",
        f"{summary.sent} packets transmitted, {summary.received} received, "
        f"{summary.loss_pct:.1f}% packet loss",
    ]
    if summary.rtt_ms is not None:
        rtt = summary.rtt_ms
        lines.append(
            f"rtt min/avg/max/mdev = {rtt.min:.3f}/{rtt.avg:.3f}/{rtt.max:.3f}/{rtt.mdev:.3f} ms"
        )
    return lines


def stream_flags(stream: TcpStream) -> str:
    """``retransmission 2, duplicate_ack 3`` (Wireshark's tcp.analysis names)."""
    return ", ".join(f"{name} {count}" for name, count in sorted(stream.analysis.items()) if count)


def streams_by_size(analysis: Analysis) -> tuple[Sequence[TcpStream], dict[str, int]]:
    """Streams ordered by packets, most first (stable on stream index), and
    how many streams are in each state, from one read of the streams.

    Streams read back from disk (analysis/store.py) are sorted on their keys
    only and read again when shown, so a large capture is never held whole;
    reading them all costs ~0.2 s at a million packets, hence once.
    """
    states: dict[str, int] = {}
    keys = []
    for index, stream in enumerate(analysis.tcp):
        states[stream.state] = states.get(stream.state, 0) + 1
        keys.append((-stream.packets, stream.stream, index))
    keys.sort()
    positions = [index for _packets, _stream, index in keys]
    if isinstance(analysis.tcp, tuple):
        return tuple(analysis.tcp[index] for index in positions), states
    return Reordered(analysis.tcp, positions), states


def capture_summary(
    analysis: Analysis, findings: tuple[Finding, ...], states: dict[str, int]
) -> tuple[str, ...]:
    """The few sentences a person reads first (``states``: streams per state)."""
    info = analysis.file
    decode = analysis.decode
    sentences = []
    duration = (
        f" over {(info.last_ts - info.first_ts):.3f} s"
        if info.first_ts is not None and info.last_ts is not None
        else ""
    )
    links = ", ".join(link_type_name(link) for link in info.link_types) or "no link type"
    sentences.append(
        f"{plural(info.packets, 'packet')} captured{duration} ({info.format}, {links}); "
        f"IPv4 {decode.ipv4}, IPv6 {decode.ipv6}, ARP {decode.arp}, other {decode.other}, "
        f"undecodable {decode.undecodable}."
    )
    if not info.complete:
        sentences.append("The file ends early (cut short); what was readable is analyzed.")
    if info.truncated_frames:
        sentences.append(
            f"{plural(info.truncated_frames, 'frame')} cut by the snapshot length "
            "(lengths are taken from the IP headers)."
        )
    if analysis.tcp:
        state_text = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        sentences.append(f"{plural(len(analysis.tcp), 'TCP conversation')} (states: {state_text}).")
    else:
        sentences.append("No TCP conversation.")
    flagged = ", ".join(
        f"{name} {count}" for name, count in sorted(analysis.tcp_analysis_totals.items()) if count
    )
    if flagged:
        sentences.append(f"TCP analysis flags (Wireshark's tcp.analysis.*): {flagged}.")
    if analysis.icmp_echo:
        answered = sum(1 for echo in analysis.icmp_echo if echo.frame_rep is not None)
        sentences.append(
            f"{plural(len(analysis.icmp_echo), 'ICMP echo request')}, {answered} answered, "
            f"between {plural(len(analysis.icmp_echo_summary), 'address pair')}."
        )
    if analysis.icmp_errors:
        sentences.append(f"{plural(len(analysis.icmp_errors), 'ICMP error')} seen.")
    counts = {severity: 0 for severity in SEVERITY_ORDER}
    for finding in findings:
        counts[finding.severity] = counts.get(finding.severity, 0) + 1
    if findings:
        sentences.append(
            f"Findings: {plural(counts['error'], 'error')}, {plural(counts['warn'], 'warning')}, "
            f"{plural(counts['note'], 'note')}; the worst: {findings[0].message}"
        )
    else:
        sentences.append("No findings (no error, warning or note) in this capture.")
    return tuple(sentences)


def run_verdict(run: RunResult) -> str:
    failed = [step.id for step in run.steps if not step.ok]
    if run.ok and not failed:
        return f"Every expected outcome held ({plural(len(run.steps), 'step')})."
    if failed:
        return f"{len(failed)} of {len(run.steps)} steps did not hold: {', '.join(failed)}."
    return "An expected outcome did not hold (see the findings)."


def run_port(run: RunResult) -> int | None:
    """The TCP port of the run's message exchange (``to`` is ``addr:port``)."""
    for exchange in run.tcp:
        _, _, port = exchange.to.rpartition(":")
        if port.isdigit():
            return int(port)
    return None


def message_frames(analysis: Analysis, port: int) -> list[int]:
    """Frames of TCP segments carrying payload in streams to ``port`` (the run's message)."""
    frames: list[int] = []
    for stream in analysis.tcp:
        if not stream.server.endswith(f":{port}"):
            continue
        for point in stream.seq_points:
            if point.kind != "ack" and point.len > 0:
                frames.append(point.frame)
    return sorted(set(frames))[:DEFAULT_HEXDUMP_FRAMES]


def build_section(analysis: Analysis) -> CaptureSection:
    findings = worst_first(analysis.findings)
    by_size, states = streams_by_size(analysis)
    return CaptureSection(
        analysis=analysis,
        label=Path(analysis.file.path).name,
        findings=findings,
        summary=capture_summary(analysis, findings, states),
        by_size=by_size,
        detailed_streams=tuple(by_size[:DETAILED_STREAMS]),
    )


def report_title(analyses: list[Analysis], run: RunResult | None) -> str:
    if run is not None:
        return f"netdiag run {run.run_id}"
    names = ", ".join(Path(analysis.file.path).name for analysis in analyses)
    return f"netdiag analysis of {names}" if names else "netdiag analysis"


def overall_verdict(sections: list[CaptureSection], run: RunResult | None) -> str:
    if run is not None:
        return run_verdict(run)
    errors = sum(
        1 for section in sections for finding in section.findings if finding.severity == "error"
    )
    warnings = sum(
        1 for section in sections for finding in section.findings if finding.severity == "warn"
    )
    if errors or warnings:
        return f"Something went wrong: {plural(errors, 'error')}, {plural(warnings, 'warning')}."
    return "No errors or warnings found in the capture."


# Tables are built here once, as plain text with a style per cell, and laid
# out by each renderer; a style is a hint ("code", "num", "bad", "good",
# "error"/"warn"/"note" for a severity), never markup.


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    style: str = ""


@dataclass(frozen=True, slots=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    more: str = ""  # a sentence after the table when its rows were capped
    omitted: int = 0  # the rows that sentence speaks of, left out of ``rows``
    what: str = "rows"  # what a row is, for a shorter form's own cap ("streams")


def code_spans(text: str) -> list[tuple[str, bool]]:
    """Split prose carrying Markdown-style `code` spans into (text, is_code) pieces.

    Findings write hints such as "check `ip route get 10.0.1.0` on both
    sides"; each form shows the commands as code and the rest as prose. An
    unpaired backtick is kept as text.
    """
    pieces: list[tuple[str, bool]] = []
    parts = text.split("`")
    if len(parts) % 2 == 0:  # odd number of backticks: no reliable pairing
        return [(text, False)]
    for index, part in enumerate(parts):
        if part:
            pieces.append((part, index % 2 == 1))
    return pieces


def hint_cell(hint: str) -> Cell:
    """A hint that is one command is code; prose with `commands` inside is mixed."""
    if not hint:
        return Cell("")
    return Cell(hint, "mixed" if "`" in hint else "code")


def _num(value: object) -> Cell:
    return Cell(str(value), "num")


def _optional_num(value: object | None) -> Cell:
    return Cell("—", "num") if value is None else _num(value)


def _capped(total: int, what: str) -> str:
    """The sentence after a table of the first TABLE_ROWS of ``total`` rows."""
    return (
        f"… and {total - TABLE_ROWS} more {what} (see report.json)." if total > TABLE_ROWS else ""
    )


def _omitted(total: int) -> int:
    return max(0, total - TABLE_ROWS)


def findings_table(findings: tuple[Finding, ...]) -> Table:
    """The findings (worst first: a cap drops the least severe), one row each."""
    return Table(
        ("severity", "code", "what", "hint", "stream", "frames"),
        tuple(
            (
                Cell(finding.severity, finding.severity),
                Cell(finding.code, "code"),
                Cell(finding.message, "mixed"),
                hint_cell(finding.hint),
                Cell("" if finding.stream is None else str(finding.stream), "num"),
                Cell(", ".join(str(frame) for frame in finding.frames[:10])),
            )
            for finding in findings[:TABLE_ROWS]
        ),
        _capped(len(findings), "findings"),
        _omitted(len(findings)),
        "findings",
    )


def steps_table(run: RunResult) -> Table:
    return Table(
        ("step", "what it does", "outcome", "detail", "expected", "ms"),
        tuple(
            (
                Cell(step.id, "code"),
                Cell(step.title),
                Cell("ok", "good") if step.ok else Cell("FAILED", "bad"),
                Cell(step.detail),
                Cell(step.expected),
                _num(f"{step.elapsed_ms:.1f}"),
            )
            for step in run.steps
        ),
    )


def exchanges_table(run: RunResult) -> Table:
    return Table(
        ("from", "to", "connected", "sent", "received", "same"),
        tuple(
            (
                Cell(exchange.from_ns),
                Cell(exchange.to, "code"),
                Cell("yes", "good")
                if exchange.connected
                else Cell(f"no: {exchange.error or 'not connected'}", "bad"),
                Cell(exchange.message_sent, "code"),
                Cell("—")
                if exchange.message_received is None
                else Cell(exchange.message_received, "code"),
                Cell("yes", "good")
                if exchange.message_received == exchange.message_sent
                else Cell("no", "bad"),
            )
            for exchange in run.tcp
        ),
    )


def streams_table(ordered: Sequence[TcpStream]) -> Table:
    """The largest streams (``ordered``: ``streams_by_size``), one row each."""
    return Table(
        (
            "stream",
            "client",
            "server",
            "state",
            "history",
            "packets",
            "bytes c→s",
            "bytes s→c",
            "iRTT ms",
            "RTT median ms",
            "analysis flags",
        ),
        tuple(
            (
                _num(stream.stream),
                Cell(stream.client, "code"),
                Cell(stream.server, "code"),
                Cell(stream.state, "code"),
                Cell(stream.history, "code"),
                _num(stream.packets),
                _num(stream.bytes_c2s),
                _num(stream.bytes_s2c),
                _num(format_ms(stream.irtt_ms)),
                _num(format_ms(stream.rtt_ms.median)),
                Cell(stream_flags(stream)),
            )
            for stream in ordered[:TABLE_ROWS]
        ),
        _capped(len(ordered), "smaller streams"),
        _omitted(len(ordered)),
        "streams",
    )


def echo_table(analysis: Analysis) -> Table:
    return Table(
        ("request", "reply", "from", "to", "id", "seq", "RTT ms"),
        tuple(
            (
                _num(echo.frame_req),
                _optional_num(echo.frame_rep),
                Cell(echo.src, "code"),
                Cell(echo.dst, "code"),
                _num(echo.id),
                _num(echo.seq),
                _num(format_ms(echo.rtt_ms))
                if echo.rtt_ms is not None
                else Cell("no reply", "bad"),
            )
            for echo in analysis.icmp_echo[:TABLE_ROWS]
        ),
        _capped(len(analysis.icmp_echo), "echo requests"),
        _omitted(len(analysis.icmp_echo)),
        "echo requests",
    )


PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp"}


def quoted_flow(error: IcmpError) -> str:
    """The packet an ICMP error quotes: ``udp 10.0.0.1:53 → 10.0.0.2:4000``."""
    protocol = PROTOCOL_NAMES.get(error.quoted_proto, f"proto {error.quoted_proto}")
    source, destination = error.quoted_src, error.quoted_dst
    if error.quoted_sport is not None and error.quoted_dport is not None:
        if ":" in source:  # IPv6: bracket, as endpoints are written elsewhere
            source, destination = f"[{source}]", f"[{destination}]"
        source = f"{source}:{error.quoted_sport}"
        destination = f"{destination}:{error.quoted_dport}"
    return f"{protocol} {source} → {destination}"


def icmp_errors_table(analysis: Analysis) -> Table:
    return Table(
        ("frame", "kind", "from", "about", "next-hop MTU", "stream"),
        tuple(
            (
                _num(error.frame),
                Cell(f"{error.kind} (type {error.type} code {error.code})"),
                Cell(error.reporter, "code"),
                Cell(quoted_flow(error), "code"),
                _optional_num(error.next_hop_mtu),
                _optional_num(error.stream),
            )
            for error in analysis.icmp_errors[:TABLE_ROWS]
        ),
        _capped(len(analysis.icmp_errors), "ICMP errors"),
        _omitted(len(analysis.icmp_errors)),
        "ICMP errors",
    )


def stream_facts(stream: TcpStream) -> tuple[str, ...]:
    """The per-stream bullet points, in plain text."""
    meaning = STATE_MEANINGS.get(stream.state, "")
    rst = "no" if not stream.rst_seen else f"yes, by the {stream.rst_by or 'unknown side'}"
    karn = (
        f" ({stream.rtt_ms.karn_excluded} excluded by Karn's rule)"
        if stream.rtt_ms.karn_excluded
        else ""
    )

    def frame(number: int | None) -> str:
        return "—" if number is None else f"#{number}"

    return (
        f"state {stream.state}: {meaning}; history {stream.history}",
        f"{stream.packets} packets, frames {stream.first_frame}–{stream.last_frame}; payload "
        f"{stream.bytes_c2s} bytes client→server, {stream.bytes_s2c} bytes server→client",
        f"handshake: SYN {frame(stream.syn_frame)}, SYN-ACK {frame(stream.synack_frame)}, "
        f"ACK {frame(stream.ack_frame)}; iRTT {format_ms(stream.irtt_ms)} ms "
        f"(SYN→SYN-ACK {format_ms(stream.syn_to_synack_ms)} ms, "
        f"SYN-ACK→ACK {format_ms(stream.synack_to_ack_ms)} ms)",
        f"RTT samples: {stream.rtt_ms.samples}, min {format_ms(stream.rtt_ms.min)} ms, median "
        f"{format_ms(stream.rtt_ms.median)} ms, max {format_ms(stream.rtt_ms.max)} ms{karn}",
        f"analysis flags: {stream_flags(stream) or 'none'}",
        f"FIN seen: {'yes' if stream.fin_seen else 'no'}; RST seen: {rst}",
    )


def ping_block(pairs: Sequence[tuple[str, str, EchoSummary | PingResult]]) -> str:
    return "\n\n".join("\n".join(ping_lines(*pair)) for pair in pairs)


def echo_pairs(analysis: Analysis, limit: int) -> list[tuple[str, str, EchoSummary]]:
    """The first ``limit`` address pairs' echo summaries, for ``ping_block``
    (a big capture has hundreds: report.json has them all)."""
    return [(summary.src, summary.dst, summary) for summary in analysis.icmp_echo_summary[:limit]]


def commands_block(run: RunResult) -> str:
    """The run's steps as the `ip` commands a person would type, one comment per step."""
    return "\n".join(
        f"# {step.id}\n" + "\n".join(step.commands) for step in run.steps if step.commands
    )


def hexdump_block(dump: HexDump) -> str:
    return "\n".join([f"#{dump.frame} {dump.header}", *dump.lines])


# The report as an outline of blocks, in reading order. Markdown and HTML walk
# the same outline, so both forms always say the same things in the same order.


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True, slots=True)
class Paragraph:
    text: str
    style: str = ""  # "verdict", "verdict bad", or ""


@dataclass(frozen=True, slots=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CodeBlock:
    body: str
    language: str = "text"


@dataclass(frozen=True, slots=True)
class Image:
    plot: PlotFile


@dataclass(frozen=True, slots=True)
class Group:
    """A titled, collapsible group (HTML ``<details>``; a level-4 heading in Markdown)."""

    title: str
    blocks: tuple[Block, ...]
    open: bool = False


Block = Heading | Paragraph | Bullets | Table | CodeBlock | Image | Group


def run_facts(run: RunResult) -> tuple[str, ...]:
    facts = [f"topology {run.topology}; scenario {run.scenario or 'none (the default experiment)'}"]
    facts += [f"capture {pcap}" for pcap in run.pcaps]
    if run.kernel_drops is not None:
        facts.append(f"packets dropped by the kernel while capturing: {run.kernel_drops}")
    if run.kept:
        facts.append("the topology was left up (--keep); remove it with netdiag down")
    return tuple(facts)


def run_outline(run: RunResult) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "The experiment"),
        Bullets(run_facts(run)),
        steps_table(run),
    ]
    commands = commands_block(run)
    if commands:
        blocks += [Paragraph("The same steps with the ip command:"), CodeBlock(commands, "sh")]
    if run.icmp:
        pairs: list[tuple[str, str, EchoSummary | PingResult]] = [
            (ping.from_ns, ping.to, ping) for ping in run.icmp
        ]
        blocks += [
            Heading(3, "Ping, both ways"),
            CodeBlock(ping_block(pairs)),
            Paragraph(
                "Round-trip times are the capture's kernel timestamps, taken on the captured "
                "interface: for the pings sent from the other end of the link they are the "
                "captured side's turnaround, shorter than what ping on the sender prints."
            ),
        ]
    if run.tcp:
        blocks += [Heading(3, "TCP message"), exchanges_table(run)]
    if run.diagnosis:
        blocks += [Heading(3, "Diagnosis"), findings_table(worst_first(run.diagnosis))]
    return blocks


def stream_group(stream: TcpStream, plots: tuple[PlotFile, ...], opened: bool) -> Group:
    blocks: list[Block] = [Bullets(stream_facts(stream)), CodeBlock(ladder_text(stream))]
    blocks += [Image(plot) for plot in plots]
    return Group(
        f"Stream {stream.stream}: {stream.client} → {stream.server} "
        f"({stream.state}, {plural(stream.packets, 'packet')})",
        tuple(blocks),
        opened,
    )


def capture_outline(section: CaptureSection) -> list[Block]:
    analysis = section.analysis
    info = analysis.file
    icmp_plots = [plot for plot in section.plots if plot.relative.endswith("icmp-rtt.png")]
    tcp_plots = [plot for plot in section.plots if plot not in icmp_plots]
    blocks: list[Block] = [
        Heading(2, f"Capture {section.label}"),
        Bullets(
            (
                *section.summary,
                f"first packet {utc_time(info.first_ts)}, last packet {utc_time(info.last_ts)}",
                *(f"reader warning: {warning}" for warning in info.warnings),
            )
        ),
        Heading(3, "Findings, worst first"),
        findings_table(section.findings) if section.findings else Paragraph("None."),
    ]
    if analysis.icmp_echo or analysis.icmp_echo_summary:
        blocks += [Heading(3, "ICMP echo"), *[Image(plot) for plot in icmp_plots]]
        if analysis.icmp_echo_summary:
            blocks.append(CodeBlock(ping_block(echo_pairs(analysis, TABLE_ROWS))))
            more = _capped(len(analysis.icmp_echo_summary), "address pairs")
            if more:
                blocks.append(Paragraph(more))
        blocks.append(echo_table(analysis))
    if analysis.icmp_errors:
        blocks += [Heading(3, "ICMP errors"), icmp_errors_table(analysis)]
    if analysis.tcp:
        blocks += [Heading(3, "TCP conversations"), streams_table(section.by_size)]
        blocks += [Image(plot) for plot in tcp_plots]
        blocks += [
            stream_group(stream, section.stream_plots.get(stream.stream, ()), index == 0)
            for index, stream in enumerate(section.detailed_streams)
        ]
        hidden = len(analysis.tcp) - len(section.detailed_streams)
        if hidden > 0:
            blocks.append(
                Paragraph(
                    f"Details are shown for the {len(section.detailed_streams)} largest streams; "
                    f"{hidden} more are in the table and in report.json."
                )
            )
    if section.hexdumps or section.hexdump_note:
        form = "tcpdump -XX" if section.hexdump_link_layer else "tcpdump -X"
        blocks.append(Heading(3, f"Hex dumps (as {form})"))
        if section.hexdump_note:
            blocks.append(Paragraph(section.hexdump_note))
        blocks += [CodeBlock(hexdump_block(dump)) for dump in section.hexdumps]
    return blocks


def outline(content: ReportContent) -> list[Block]:
    bad = (content.run is not None and not content.run.ok) or any(
        finding.severity == "error" for section in content.captures for finding in section.findings
    )
    blocks: list[Block] = [
        Heading(1, content.title),
        Paragraph(content.verdict, "verdict bad" if bad else "verdict"),
    ]
    if content.run is not None:
        blocks += run_outline(content.run)
    for section in content.captures:
        blocks += capture_outline(section)
    return blocks
