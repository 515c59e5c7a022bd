"""The terminal form of a report: ``netdiag analyze`` without ``--out``.

Report stage: prints, with rich, the same ten-second summary and the same
tables as report.md/report.html (built once in ``content``), capped to what
fits a terminal. Every cell is a ``rich.text.Text``, never markup, so a
``[bold]`` or ``[link=…]`` inside a packet-derived string prints as typed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from netdiag.analysis.model import Analysis, Finding, TcpStream
from netdiag.report.content import (
    Cell,
    Table,
    build_section,
    code_spans,
    echo_pairs,
    echo_table,
    ladder_text,
    ping_block,
    stream_flags,
    streams_table,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

TERMINAL_ROWS = 20
# A capture this small (a `netdiag run`, a reproduction of one problem) also gets
# each conversation's handshake ladder and its first data segments in hex, so
# the terminal alone shows what tcpdump -X and nc showed in the article.
DETAILED_CAPTURE_STREAMS = 3
DETAILED_CAPTURE_PACKETS = 10_000
DATA_SEGMENTS_PER_STREAM = 2
DATA_SEGMENT_LINES = 8  # 128 bytes of each segment; `netdiag hexdump --frame N` shows all
NARROW_TERMINAL = 120  # columns below which endpoints are stacked
# Shown in --json and the report; flags are listed under the table instead.
TERMINAL_HIDDEN_COLUMNS = frozenset({"history", "iRTT ms", "analysis flags"})
STYLES = {
    "bad": "bold red",
    "good": "green",
    "error": "bold red",
    "warn": "yellow",
    "note": "dim",
    "code": "cyan",
}


def without_columns(table: Table, hidden: frozenset[str]) -> Table:
    """The table without the named columns (the terminal has less room than a page)."""
    keep = [index for index, header in enumerate(table.headers) if header not in hidden]
    return replace(
        table,
        headers=tuple(table.headers[index] for index in keep),
        rows=tuple(tuple(row[index] for index in keep) for row in table.rows),
    )


def stacked_endpoints(table: Table) -> Table:
    """Client and server in one column, one above the other, for a narrow terminal."""
    client = table.headers.index("client")
    server = table.headers.index("server")
    keep = [index for index in range(len(table.headers)) if index not in (client, server)]

    def row_of(row: tuple[Cell, ...]) -> tuple[Cell, ...]:
        both = Cell(f"{row[client].text}\n→ {row[server].text}", "code")
        return (row[keep[0]], both, *(row[index] for index in keep[1:]))

    headers = (table.headers[keep[0]], "client → server", *(table.headers[i] for i in keep[1:]))
    return replace(table, headers=headers, rows=tuple(row_of(row) for row in table.rows))


def rich_table(table: Table, title: str, limit: int = TERMINAL_ROWS) -> RichTable:
    from rich import box
    from rich.table import Table as RichTableClass
    from rich.text import Text

    shown = RichTableClass(
        title=title, title_justify="left", expand=False, box=box.SIMPLE_HEAD, pad_edge=False
    )
    for index, header in enumerate(table.headers):
        styles = {row[index].style for row in table.rows}
        # Addresses keep their line; headers and prose wrap first on a narrow terminal.
        shown.add_column(
            header,
            justify="right" if styles == {"num"} else "left",
            overflow="fold",
            no_wrap=styles == {"code"},
        )

    def text(cell: Cell) -> Text:
        return Text(cell.text, style=STYLES.get(cell.style, ""))

    for row in table.rows[:limit]:
        shown.add_row(*(text(cell) for cell in row))
    # The rows past this limit and those the table itself left out, as one count.
    hidden = max(0, len(table.rows) - limit) + table.omitted
    if hidden:
        shown.caption = f"{hidden} more {table.what} not shown (use --json or --out)"
    return shown


def with_code_spans(line: Text, prose: str) -> Text:
    """Append prose to ``line``, its `code` spans styled as code (backticks dropped)."""
    for piece, is_code in code_spans(prose):
        line.append(piece, style=STYLES["code"] if is_code else "")
    return line


def print_findings(console: Console, findings: tuple[Finding, ...]) -> None:
    """Findings as a list, not a table: messages and hint commands need the whole width."""
    from rich.text import Text

    console.print(Text("Findings, worst first", style="italic"))
    for finding in findings[:TERMINAL_ROWS]:
        where = [] if finding.stream is None else [f"stream {finding.stream}"]
        if finding.frames:
            where.append("frames " + ", ".join(str(frame) for frame in finding.frames[:10]))
        line = Text("  ")
        line.append(f"{finding.severity:<5}", style=STYLES.get(finding.severity, ""))
        line.append(" ")
        line.append(finding.code, style=STYLES["code"])
        line.append(f" ({'; '.join(where)})" if where else "")
        line.append(": ")
        console.print(with_code_spans(line, finding.message))
        if finding.hint:
            hint = Text("        hint: ")
            if "`" in finding.hint:
                console.print(with_code_spans(hint, finding.hint))
            else:
                hint.append(finding.hint, style=STYLES["code"])
                console.print(hint)
    if len(findings) > TERMINAL_ROWS:
        console.print(Text(f"  … {len(findings) - TERMINAL_ROWS} more findings (use --json)"))


def print_summary(console: Console, analysis: Analysis) -> None:
    """One capture: summary sentences, findings, TCP streams and ICMP echo tables."""
    from rich.panel import Panel
    from rich.text import Text

    section = build_section(analysis)
    console.print(
        Panel(
            Text(
                "\n".join(
                    (
                        *section.summary,
                        *(f"reader warning: {warning}" for warning in analysis.file.warnings),
                    )
                )
            ),
            title=Text(section.label, style="bold"),
            title_align="left",
        )
    )
    if section.findings:
        print_findings(console, section.findings)
    if analysis.tcp:
        streams = without_columns(streams_table(section.by_size), TERMINAL_HIDDEN_COLUMNS)
        if console.width < NARROW_TERMINAL:
            streams = stacked_endpoints(streams)
        console.print(rich_table(streams, "TCP conversations (largest first)"))
        # Counted in one pass, only the rows shown kept (a capture may have many).
        shown: list[TcpStream] = []
        flagged = 0
        for stream in section.by_size:
            if stream_flags(stream):
                flagged += 1
                if len(shown) < TERMINAL_ROWS:
                    shown.append(stream)
        for stream in shown:
            console.print(Text(f"  stream {stream.stream}: {stream_flags(stream)}"))
        if flagged > TERMINAL_ROWS:
            console.print(Text(f"  … {flagged - TERMINAL_ROWS} more streams with flags"))
        print_conversation_details(console, analysis)
    if analysis.icmp_echo_summary:
        console.print(Text(ping_block(echo_pairs(analysis, TERMINAL_ROWS))))
        hidden = len(analysis.icmp_echo_summary) - TERMINAL_ROWS
        if hidden > 0:
            console.print(Text(f"… {hidden} more address pairs not shown (use --json or --out)"))
    if analysis.icmp_echo:
        console.print(rich_table(echo_table(analysis), "ICMP echo requests", limit=10))


def print_conversation_details(console: Console, analysis: Analysis) -> None:
    """Handshake ladders and first payload segments, for small captures only."""
    from rich.text import Text

    from netdiag.errors import NetdiagError
    from netdiag.report.hexdump import first_data_segments

    if (
        len(analysis.tcp) > DETAILED_CAPTURE_STREAMS
        or analysis.file.packets > DETAILED_CAPTURE_PACKETS
    ):
        return
    for stream in analysis.tcp:
        console.print(
            Text(
                f"stream {stream.stream} ({stream.state} {stream.history}): handshake and teardown"
            )
        )
        console.print(Text(ladder_text(stream)))
    try:
        dumps = first_data_segments(
            Path(analysis.file.path),
            [(s.client, s.server, s.first_frame, s.last_frame) for s in analysis.tcp],
            DATA_SEGMENTS_PER_STREAM,
        )
    except (OSError, NetdiagError) as error:
        console.print(Text(f"(the data segments could not be read again: {error})"))
        return
    if dumps:
        console.print(Text("First data segments (as tcpdump -X shows them):"))
        for dump in dumps:
            header, *lines = dump.rstrip("\n").split("\n")
            if len(lines) > DATA_SEGMENT_LINES:
                frame = header.split(" ", 1)[0].lstrip("#")
                hidden = len(lines) - DATA_SEGMENT_LINES
                command = f"netdiag hexdump {analysis.file.path} --frame {frame}"
                lines = [*lines[:DATA_SEGMENT_LINES], f"\t… {hidden} more lines: {command}"]
            # soft_wrap: a dump line is never folded, so offsets and columns stay aligned
            console.print(Text("\n".join([header, *lines])), soft_wrap=True)
