"""report.md: the report as GitHub/GitLab-flavoured Markdown.

Report stage: renders the outline of ``content.outline`` as headings, pipe
tables, fenced code blocks (hex dumps, ladders, ``ip`` commands) and relative
links to the PNG plots. Text from packets or the system (addresses, messages,
step details) is escaped by ``text``/``cell``/``code``: a ``|`` cannot break
a table and ``<script>`` stays text on every renderer (GitHub drops raw HTML
it dislikes, but other viewers might not).
"""

from __future__ import annotations

import re

from netdiag.report.content import (
    Block,
    Bullets,
    Cell,
    CodeBlock,
    Heading,
    Image,
    Paragraph,
    ReportContent,
    Table,
    code_spans,
    outline,
)


def text(value: object) -> str:
    """Escape prose: HTML-significant characters become entities, lines are joined.

    Brackets are escaped too (issue 7): ``[x](javascript:…)`` or ``![x](http://…)``
    from a packet must not become a link or an image fetched when the report is viewed;
    backslashes first, so that the escapes added here cannot be undone by the text.
    """
    return (
        str(value)
        .replace("\\", "\\\\")
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("[", "\\[")
        .replace("]", "\\]")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def code(value: object) -> str:
    """Inline code; a backtick inside gets a longer fence, a pipe is escaped for tables.

    Entities are not decoded inside code spans, so only the pipe is touched.
    """
    content = str(value).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    if "`" in content:
        # The fence must be longer than every backtick run inside (issue 7): with a
        # fixed ``, a ``x`` in a packet closed the span and let <script> out of it.
        runs = [len(run) for run in re.findall("`+", content)]
        fence = "`" * (max(runs) + 1)
        return f"{fence} {content} {fence}"
    return f"`{content}`"


def prose(value: str) -> str:
    """A paragraph or bullet: its `code` spans as code, the rest escaped (a lone
    backtick literal), as ``cell`` does for a "mixed" cell."""
    return "".join(
        code(piece) if is_code else text(piece).replace("`", "\\`")
        for piece, is_code in code_spans(value)
    )


def prose_cell(value: str) -> str:
    """Prose in a table cell: escaped (backslashes by ``text``), ``|`` and backticks literal."""
    return text(value).replace("|", "\\|").replace("`", "\\`")


def cell(value: Cell) -> str:
    if not value.text:
        return ""
    if value.style == "code":
        return code(value.text)
    if value.style == "mixed":
        return "".join(
            code(piece) if is_code else prose_cell(piece)
            for piece, is_code in code_spans(value.text)
        )
    escaped = prose_cell(value.text)
    if value.style in ("bad", "error"):
        return f"**{escaped}**"
    return escaped


def fence_for(body: str) -> str:
    """A backtick fence longer than any run of backticks at a line start in ``body``."""
    longest = 2
    for line in body.splitlines():
        stripped = line.lstrip(" ")
        longest = max(longest, len(stripped) - len(stripped.lstrip("`")))
    return "`" * (longest + 1)


def render_block(block: Block) -> list[str]:
    if isinstance(block, Heading):
        return ["#" * block.level + " " + text(block.text), ""]
    if isinstance(block, Paragraph):
        body = prose(block.text)
        return [f"**{body}**" if block.style.startswith("verdict") else body, ""]
    if isinstance(block, Bullets):
        return [*(f"- {prose(item)}" for item in block.items), ""]
    if isinstance(block, Table):
        lines = [
            "| " + " | ".join(text(header) for header in block.headers) + " |",
            "|"
            + "|".join("---:" if _numeric(block, i) else "---" for i in range(len(block.headers)))
            + "|",
            *("| " + " | ".join(cell(value) for value in row) + " |" for row in block.rows),
            "",
        ]
        return lines + ([text(block.more), ""] if block.more else [])
    if isinstance(block, CodeBlock):
        fence = fence_for(block.body)
        return [f"{fence}{block.language}", block.body, fence, ""]
    if isinstance(block, Image):
        return [
            f"![{text(block.plot.title)}]({block.plot.relative})",
            "",
            f"*{text(block.plot.caption)}*",
            "",
        ]
    # A Group: Markdown has no collapsible block that every renderer honours.
    lines = ["#### " + text(block.title), ""]
    for inner in block.blocks:
        lines += render_block(inner)
    return lines


def _numeric(table: Table, column: int) -> bool:
    """Right-align a column whose cells are all numbers (or dashes)."""
    return bool(table.rows) and all(row[column].style == "num" for row in table.rows)


def render_markdown(content: ReportContent) -> str:
    lines: list[str] = []
    for block in outline(content):
        lines += render_block(block)
    return "\n".join(lines).rstrip("\n") + "\n"
