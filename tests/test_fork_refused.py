"""--jobs above 1 where the kernel refuses every fork (a process limit, EAGAIN):
netdiag does the same work in its one process, with the same output, instead
of a traceback. The limit is real: the test's child becomes an unprivileged
user allowed no process (root is exempt from RLIMIT_NPROC), after loading what
it needs while still root (the interpreter's own library may be root's alone).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from netdiag.analysis.analyze import analyze_file
from netdiag.analysis.shares import SHARE_MIN_BYTES
from netdiag.report import jsonstream, write_report
from tests.helpers import load_bench_generator
from tests.test_report_in_two import files_in

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to become an unprivileged user with no process to spare"
)

# Appended to every script: from here on, no process to spare.
NO_PROCESS = """
import os, resource
os.setgid(65534)
os.setuid(65534)
resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
"""


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder the unprivileged user may read and write (pytest's are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="netdiag-test-nproc-"))
    try:
        folder.chmod(0o777)
        yield folder
    finally:
        shutil.rmtree(folder)


def capture_in(folder: Path, packets: int, seed: int) -> Path:
    capture = folder / "bench.pcap"
    load_bench_generator("bench_gen_for_fork").generate(capture, packets, seed=seed)
    capture.chmod(0o644)
    return capture


def without_a_process(prepare: str, work: str, *arguments: str) -> str:
    """``prepare`` as root, then ``work`` with no process to spare; its stdout."""
    result = subprocess.run(
        [sys.executable, "-B", "-c", prepare + NO_PROCESS + work, *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_json_is_encoded_by_one(shared: Path) -> None:
    capture = capture_in(shared, 3000, seed=4)
    prepare = """
import io, os, sys
from netdiag.analysis.analyze import analyze_file
from netdiag.report import jsonstream

analysis = analyze_file(sys.argv[1])
jsonstream.PARALLEL_RECORDS = 10  # a small capture takes the two-process path
"""
    work = """
try:
    os.fork()
except BlockingIOError:
    pass
else:
    raise SystemExit("fork was not refused")
text = io.StringIO()
jsonstream.write_analyses_json([analysis], text, jobs=2)
sys.stdout.write(text.getvalue())
"""
    expected = io.StringIO()
    jsonstream.write_analyses_json([analyze_file(capture)], expected, jobs=1)
    assert without_a_process(prepare, work, str(capture)) == expected.getvalue()


def test_the_report_is_written_by_one(shared: Path, tmp_path: Path) -> None:
    capture = capture_in(shared, 3000, seed=4)
    prepare = """
import sys
from pathlib import Path
from netdiag.analysis.analyze import analyze_file
from netdiag.report import jsonstream, write_report
import multiprocessing.popen_fork, multiprocessing.connection  # noqa
import netdiag.analysis.forked  # noqa

analysis = analyze_file(sys.argv[1], plot_data=True)
# Once as root, in one process: every module the report loads lazily (matplotlib's
# backend, its fonts) is loaded before the unprivileged user, who may not read the
# interpreter's or the virtualenv's files, takes over.
write_report(Path(sys.argv[2]).parent / "warm-up", [analysis], jobs=1)
jsonstream.PARALLEL_RECORDS = 10  # a small capture takes the two-process path
"""
    work = "write_report(Path(sys.argv[2]), [analysis], jobs=2)\n"
    without_a_process(prepare, work, str(capture), str(shared / "two"))
    write_report(tmp_path / "one", [analyze_file(capture, plot_data=True)], jobs=1)
    assert files_in(shared / "two") == files_in(tmp_path / "one")


@pytest.mark.parametrize("files", [1, 2], ids=["one-big-file", "two-files"])
def test_analyze_uses_one(shared: Path, files: int) -> None:
    """One big file (split in shares with --jobs 2) and several files (one child
    each): analysed in the one process, the output that of --jobs 1."""
    capture = capture_in(shared, 140_000, seed=6)
    assert capture.stat().st_size >= SHARE_MIN_BYTES
    paths = [str(capture)] * files
    prepare = """
import sys
from pathlib import Path
import multiprocessing.popen_fork, multiprocessing.connection  # noqa
import netdiag.commands.analyze, netdiag.analysis.analyze  # noqa
import netdiag.analysis.shares, netdiag.analysis.forked, netdiag.report.jsonstream  # noqa
import netdiag.report.output  # noqa
"""
    # The command's body as cli.py calls it (typer's parsing loads more modules).
    work = """
netdiag.commands.analyze.execute(
    files=[Path(path) for path in sys.argv[1:]],
    json_output=True,
    formats=None,
    out=None,
    hexdump_frames=[],
    jobs=2,
    force=False,
)
"""
    one = subprocess.run(
        [sys.executable, "-m", "netdiag", "analyze", *paths, "--json", "--jobs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert without_a_process(prepare, work, *paths) == one.stdout
