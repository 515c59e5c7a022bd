"""The fast and lean paths of ``netdiag analyze --json`` give the slow path's bytes (issue 6).

* ``write_analyses_json`` (record-by-record JSON) against
  ``json_text(report_document(...))`` (the whole document at once), for one
  file and for a list of files, on every corpus capture.
* ``analyze_file(plot_data=False)`` (no plot points kept) against the default,
  on the JSON document, which never carries plot points.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from netdiag.analysis.analyze import analyze_file
from netdiag.report import json_text, report_document
from netdiag.report.jsonstream import write_analyses_json
from tests.conftest import corpus_files

CORPUS = corpus_files()


def _streamed(analyses: list[object]) -> str:
    out = io.StringIO()
    write_analyses_json(analyses, out)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize("capture", CORPUS, ids=[path.name for path in CORPUS])
def test_streamed_json_is_byte_identical(capture: Path) -> None:
    analysis = analyze_file(capture)
    assert _streamed([analysis]) == json_text(report_document([analysis]))
    # No plot points: the same document (seq_points/rtt_samples are not in it).
    lean = analyze_file(capture, plot_data=False)
    assert all(not stream.seq_points and not stream.rtt_samples for stream in lean.tcp)
    assert _streamed([lean]) == json_text(report_document([analysis]))


def test_streamed_json_of_several_files_and_none(corpus_dir: Path) -> None:
    analyses = [analyze_file(path) for path in CORPUS[:3]]
    assert len(analyses) == 3
    assert _streamed(analyses) == json_text(report_document(analyses))
    assert _streamed([]) == json_text(report_document([]))
