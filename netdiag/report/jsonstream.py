"""Writing ``netdiag analyze --json`` piece by piece (report stage, issue 6).

``json_text(report_document(analyses))`` builds the whole document as dicts
and then as one string; on a million-packet capture that string alone is
tens of MB, and the pure-Python encoder that ``indent`` selects keeps every
chunk of it in a list before joining them. ``write_analyses_json`` writes the
same bytes to a text stream as it goes: the top-level keys one by one, and
the ``"tcp"`` list one stream record at a time, so only one record's dict
and text exist at any moment.

Byte-identity with ``json_text`` rests on one property of ``json.dumps``
with ``indent``: a nested value is laid out exactly as it would be at the top
level, with every line after the first indented one more level. JSON text
never holds a raw newline (strings escape it), so re-indenting a value is
replacing each newline by a newline plus the indent. ``tests/test_fast_path.py``
compares both writers on every corpus file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, TextIO

from netdiag.analysis.model import Analysis

INDENT = "  "  # json_text's indent=2

# Keys of Analysis.to_json whose value is a list written item by item.
_STREAMED_LISTS = frozenset({"tcp"})


def _dumps(value: Any, level: int) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text.replace("\n", "\n" + INDENT * level) if level else text


def _write_list(out: TextIO, items: Iterable[Any], level: int) -> None:
    """A JSON list at ``level``, each item encoded and written on its own."""
    inner = INDENT * (level + 1)
    first = True
    for item in items:
        out.write(("[\n" if first else ",\n") + inner + _dumps(item, level + 1))
        first = False
    out.write("[]" if first else "\n" + INDENT * level + "]")


def _write_analysis(out: TextIO, analysis: Analysis, level: int) -> None:
    """One analysis object as ``Analysis.to_json`` would give it, at ``level``."""
    inner = INDENT * (level + 1)
    # The key order of Analysis.to_json, taken from it on an empty-streams
    # copy, so a key added there is written here too without a change.
    skeleton = _skeleton(analysis)
    out.write("{")
    separator = "\n"
    for key, value in skeleton.items():
        out.write(separator + inner + json.dumps(key, ensure_ascii=False) + ": ")
        if key in _STREAMED_LISTS:
            _write_list(out, (stream.to_json() for stream in analysis.tcp), level + 1)
        else:
            out.write(_dumps(value, level + 1))
        separator = ",\n"
    out.write("}" if separator == "\n" else "\n" + INDENT * level + "}")


def _skeleton(analysis: Analysis) -> dict[str, Any]:
    """``analysis.to_json()`` without building the stream records' dicts."""
    return replace(analysis, tcp=()).to_json()


def write_analyses_json(analyses: list[Analysis], out: TextIO) -> None:
    """Write what ``json_text(report_document(analyses))`` returns, to ``out``.

    One object for one analysis, a list for several (or none), then a newline.
    """
    if len(analyses) == 1:
        _write_analysis(out, analyses[0], 0)
    elif not analyses:
        out.write("[]")
    else:
        out.write("[")
        for index, analysis in enumerate(analyses):
            out.write(("\n" if index == 0 else ",\n") + INDENT)
            _write_analysis(out, analysis, 1)
        out.write("\n]")
    out.write("\n")
