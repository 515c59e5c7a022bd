"""A big capture's report folder written by two processes (report/output.py,
``TextWrittenInChild``): report.json by a forked child while the first process
draws the plots and pages.

The files must be the same bytes as one process writes; the child's failure
(an error, or its death) must reach the caller as netdiag's error; and whatever
happens, no temporary file is left in the report folder and no child lives on.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import TextIO

import pytest

from netdiag.analysis.analyze import analyze_file
from netdiag.errors import AnalysisProcessError, OutputError
from netdiag.report import jsonstream, output, write_report
from tests.helpers import load_bench_generator


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def assert_gone(pid: int | None) -> None:
    assert pid is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped already: not our child any more
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_big_report_is_the_same_written_by_two_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = tmp_path / "bench.pcap"
    load_bench_generator("bench_gen_for_report").generate(capture, 20_000, seed=3)
    analysis = analyze_file(capture, plot_data=True)
    assert jsonstream.streamed_records(analysis) > 100
    # The capture is big enough for the test, not for the real threshold.
    monkeypatch.setattr(jsonstream, "PARALLEL_RECORDS", 100)
    children: list[int | None] = []

    class Counted(output.TextWrittenInChild):
        def start(self) -> None:
            super().start()
            children.append(self.pid)

    monkeypatch.setattr(output, "TextWrittenInChild", Counted)
    write_report(tmp_path / "one", [analysis], jobs=1)
    assert children == []
    write_report(tmp_path / "two", [analysis], jobs=2)
    assert len(children) == 1 and children[0] != os.getpid()
    assert_gone(children[0])
    one, two = files_in(tmp_path / "one"), files_in(tmp_path / "two")
    assert {"report.md", "report.html", "report.json"} <= one.keys()
    assert two == one  # no temporary file left either: the names are the same


def test_the_child_writes_the_file_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    writer = output.TextWrittenInChild(path, lambda out: out.write('{"ünï": 1}\n'))
    try:
        writer.start()
        writer.finish()
    finally:
        writer.end()
    assert path.read_text(encoding="utf-8") == '{"ünï": 1}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [entry.name for entry in tmp_path.iterdir()] == ["report.json"]
    assert_gone(writer.pid)


def full_disk(out: TextIO) -> None:
    out.write("partial")
    out.flush()
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def child_dies(out: TextIO) -> None:
    out.write("partial")
    out.flush()
    os._exit(9)  # killed, out of memory: no result sent


@pytest.mark.parametrize(
    ("write", "error", "words"),
    [
        (full_disk, OutputError, "No space left on device"),
        (child_dies, AnalysisProcessError, "exit code 9"),
    ],
    ids=["error", "death"],
)
def test_a_failed_child_leaves_the_old_file_and_no_temporary_one(
    tmp_path: Path, write: object, error: type[Exception], words: str
) -> None:
    path = tmp_path / "report.json"
    path.write_text("old\n")
    writer = output.TextWrittenInChild(path, write)  # type: ignore[arg-type]
    try:
        writer.start()
        with pytest.raises(error, match=words) as raised:
            writer.finish()
    finally:
        writer.end()
    assert str(path) in str(raised.value)
    assert [entry.name for entry in tmp_path.iterdir()] == ["report.json"]
    assert path.read_text() == "old\n"
    assert_gone(writer.pid)


def test_ended_before_it_finishes_the_child_is_stopped_and_its_file_removed(
    tmp_path: Path,
) -> None:
    """The first process interrupted (Ctrl-C, or its own pages failed) while the
    child still writes: ``end`` stops the child and removes its temporary file."""
    started_read, started_write = os.pipe()
    held_read, held_write = os.pipe()

    def blocks(out: TextIO) -> None:
        out.write("partial")
        out.flush()
        os.write(started_write, b"w")  # inside its write now
        os.read(held_read, 1)  # never answered: only SIGTERM ends it

    path = tmp_path / "report.json"
    path.write_text("old\n")
    writer = output.TextWrittenInChild(path, blocks)
    try:
        writer.start()
        assert os.read(started_read, 1) == b"w"
        assert len(list(tmp_path.iterdir())) == 2  # report.json and the child's file
    finally:
        writer.end()
        for descriptor in (started_read, started_write, held_read, held_write):
            os.close(descriptor)
    assert [entry.name for entry in tmp_path.iterdir()] == ["report.json"]
    assert path.read_text() == "old\n"
    assert_gone(writer.pid)
