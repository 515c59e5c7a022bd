"""report.html: one self-contained, responsive HTML page.

Report stage: lays out ``content.ReportContent`` with inline CSS and the PNG
plots embedded as base64 ``data:`` URIs, so the single file works offline,
from an e-mail attachment or a CI artifact, with no external URL and no
JavaScript. Long tables and hex dumps scroll sideways inside their own box,
so the page reads on a phone as on a wide screen.

Every string that reaches the page goes through ``html.escape`` (via ``e``):
addresses, hostnames, step details and hex-dump ASCII come from packets or
the system, and a capture carrying ``<script>`` must render as text.
"""

from __future__ import annotations

import base64
import html

from netdiag.report.content import (
    Block,
    Bullets,
    Cell,
    CodeBlock,
    Heading,
    Image,
    Paragraph,
    PlotFile,
    ReportContent,
    Table,
    code_spans,
    outline,
)

STYLE = """
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #ffffff; --muted: #59636e;
  --line: #d0d7de; --code: #f6f8fa; --error: #b3261e; --warn: #9a6700; --ok: #1a7f37; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #3d444d; --code: #161b22;
    --error: #ff7b72; --warn: #d29922; --ok: #3fb950; }
  img { background: #ffffff; }
}
* { box-sizing: border-box; }
body { margin: 0; padding: 0.75rem; font: 15px/1.5 system-ui, -apple-system, "Segoe UI",
  Roboto, "Noto Sans", sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 78rem; margin: 0 auto; }
h1 { font-size: 1.5rem; margin: 0.3rem 0 0.6rem; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; border-bottom: 1px solid var(--line); padding-bottom: 0.2rem;
  margin-top: 2rem; overflow-wrap: anywhere; }
h3 { font-size: 1.08rem; margin-top: 1.4rem; }
.verdict { font-size: 1.1rem; font-weight: 600; padding: 0.5rem 0.75rem; border-radius: 6px;
  border-left: 5px solid var(--ok); background: var(--code); }
.verdict.bad { border-left-color: var(--error); }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: 0.5rem 0 1rem; }
table { border-collapse: collapse; font-size: 0.88rem; min-width: 50%; }
th, td { border: 1px solid var(--line); padding: 0.25rem 0.5rem; text-align: left;
  vertical-align: top; }
th { background: var(--code); white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono",
  monospace; }
code { font-size: 0.85em; overflow-wrap: anywhere; }
td code { overflow-wrap: normal; white-space: nowrap; }
pre { background: var(--code); padding: 0.6rem 0.75rem; border-radius: 6px; overflow-x: auto;
  font-size: 0.8rem; line-height: 1.35; tab-size: 8; }
.sev-error { color: var(--error); font-weight: 700; }
.sev-warn { color: var(--warn); font-weight: 600; }
.sev-note { color: var(--muted); }
.bad { color: var(--error); font-weight: 600; }
.good { color: var(--ok); }
figure { margin: 0.8rem 0 1.2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 0.85rem; }
details { border: 1px solid var(--line); border-radius: 6px; padding: 0.3rem 0.75rem;
  margin: 0.6rem 0; }
summary { cursor: pointer; font-weight: 600; overflow-wrap: anywhere; }
ul.facts { padding-left: 1.2rem; }
@media (max-width: 40rem) { body { font-size: 14px; padding: 0.5rem; } pre { font-size: 0.7rem; } }
"""


def e(value: object) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


CELL_CLASSES = {
    "bad": "bad",
    "good": "good",
    "error": "sev-error",
    "warn": "sev-warn",
    "note": "sev-note",
}


def prose(value: str) -> str:
    """Escaped text whose `code` spans become ``<code>`` (as Markdown shows them)."""
    return "".join(
        f"<code>{e(piece)}</code>" if is_code else e(piece) for piece, is_code in code_spans(value)
    )


def cell(value: Cell) -> str:
    if value.style == "num":
        return f'<td class="num">{e(value.text)}</td>'
    if value.style == "code" and value.text:
        return f"<td><code>{e(value.text)}</code></td>"
    if value.style == "mixed":
        return f"<td>{prose(value.text)}</td>"
    css = CELL_CLASSES.get(value.style)
    if css:
        return f'<td><span class="{css}">{e(value.text)}</span></td>'
    return f"<td>{e(value.text)}</td>"


def table(block: Table) -> str:
    head = "".join(f"<th>{e(header)}</th>" for header in block.headers)
    rows = "".join("<tr>" + "".join(cell(value) for value in row) + "</tr>" for row in block.rows)
    more = f"<p>{e(block.more)}</p>" if block.more else ""
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>{more}"
    )


def figure(plot: PlotFile) -> str:
    encoded = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{e(plot.title)}">'
        f"<figcaption>{e(plot.caption)}</figcaption></figure>"
    )


def render_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{e(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        css = f' class="{e(block.style)}"' if block.style else ""
        return f"<p{css}>{prose(block.text)}</p>"
    if isinstance(block, Bullets):
        return (
            '<ul class="facts">'
            + "".join(f"<li>{prose(item)}</li>" for item in block.items)
            + "</ul>"
        )
    if isinstance(block, Table):
        return table(block)
    if isinstance(block, CodeBlock):
        return f"<pre>{e(block.body)}</pre>"
    if isinstance(block, Image):
        return figure(block.plot)
    inner = "".join(render_block(item) for item in block.blocks)
    opened = " open" if block.open else ""
    return f"<details{opened}><summary>{e(block.title)}</summary>{inner}</details>"


def render_html(content: ReportContent) -> str:
    blocks = outline(content)
    title = content.title
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing may be fetched or run: no script, no remote font; images are data: URIs.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{e(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body><main>",
        *(render_block(block) for block in blocks),
        "</main></body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)
