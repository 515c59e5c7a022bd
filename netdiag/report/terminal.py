"""The terminal form of a report: ``netdiag analyze`` without ``--out``.

Report stage: prints, with rich, the same ten-second summary and the same
tables as report.md/report.html (built once in ``content``), capped to what
fits a terminal. Every cell is a ``rich.text.Text``, never markup, so a
``[bold]`` or ``[link=…]`` inside a packet-derived string prints as typed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netdiag.analysis.model import Analysis, EchoSummary
from netdiag.experiment.model import PingResult
from netdiag.report.content import (
    Cell,
    Table,
    build_section,
    echo_table,
    findings_table,
    ping_block,
    streams_table,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table as RichTable

TERMINAL_ROWS = 20
STYLES = {
    "bad": "bold red",
    "good": "green",
    "error": "bold red",
    "warn": "yellow",
    "note": "dim",
    "code": "cyan",
}


def rich_table(table: Table, title: str, limit: int = TERMINAL_ROWS) -> RichTable:
    from rich.table import Table as RichTableClass
    from rich.text import Text

    shown = RichTableClass(title=title, title_justify="left", expand=False)
    for index, header in enumerate(table.headers):
        numeric = bool(table.rows) and all(row[index].style == "num" for row in table.rows)
        shown.add_column(header, justify="right" if numeric else "left", overflow="fold")

    def text(cell: Cell) -> Text:
        return Text(cell.text, style=STYLES.get(cell.style, ""))

    for row in table.rows[:limit]:
        shown.add_row(*(text(cell) for cell in row))
    hidden = len(table.rows) - limit
    if hidden > 0 or table.more:
        notes = [f"{hidden} more rows not shown" if hidden > 0 else "", table.more]
        shown.caption = "; ".join(note for note in notes if note) + " (use --json or --out)"
    return shown


def print_summary(console: Console, analysis: Analysis) -> None:
    """One capture: summary sentences, findings, TCP streams and ICMP echo tables."""
    from rich.panel import Panel
    from rich.text import Text

    section = build_section(analysis)
    console.print(
        Panel(
            Text("\n".join(section.summary)),
            title=Text(section.label, style="bold"),
            title_align="left",
        )
    )
    if section.findings:
        console.print(rich_table(findings_table(section.findings), "Findings, worst first"))
    if analysis.tcp:
        console.print(rich_table(streams_table(analysis), "TCP conversations (largest first)"))
    if analysis.icmp_echo_summary:
        pairs: list[tuple[str, str, EchoSummary | PingResult]] = [
            (summary.src, summary.dst, summary) for summary in analysis.icmp_echo_summary
        ]
        console.print(Text(ping_block(pairs)))
    if analysis.icmp_echo:
        console.print(rich_table(echo_table(analysis), "ICMP echo requests", limit=10))


def print_summaries(analyses: list[Analysis], console: Console | None = None) -> None:
    from rich.console import Console

    console = console or Console()
    for index, analysis in enumerate(analyses):
        if index:
            console.print()
        print_summary(console, analysis)
