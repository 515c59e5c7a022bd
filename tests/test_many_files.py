"""`netdiag analyze` on several files: each written and released in turn (issue 6).

The files flow through one at a time (analysis/analyze.py, ``analyses_in_order``):
the JSON must be the same bytes as the all-at-once document and as each file's
own document put into a list, in one process and with ``--jobs 2`` (forked
children, a few at a time); what can be refused is refused before the first
byte of output; an error that can only happen later still exits with its
code, and leaves an incomplete document on stdout (docs/contract-additions.md).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import signal
import subprocess
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from netdiag.analysis import analyze as analyze_module
from netdiag.analysis.analyze import analyses_in_order, analyze_file, analyze_files
from netdiag.analysis.store import SPILL_AFTER_VARIABLE
from netdiag.report import json_text, report_document
from tests.helpers import (
    interrupt_at_moments,
    load_bench_generator,
    netdiag,
    one_line_error,
    reading,
)

# Small and larger captures, pcap and pcapng, TCP and ICMP; one given twice.
NAMES = (
    "dpkt__http.pcap",
    "pcapplusplus__650HttpResponses.pcap",
    "markofu__portscan.pcap",
    "dpkt__dns_icmp.pcap",
    "pcapplusplus__pcapng-example.pcapng",
    "dpkt__http.pcap",
)
# Spilled records of the first file fit under it, the second file's do not.
FILE_SIZE_LIMIT = 64 << 10


def run(
    *arguments: str | Path,
    spill_after: str | None = None,
    before_exec: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != SPILL_AFTER_VARIABLE}
    if spill_after is not None:
        environment[SPILL_AFTER_VARIABLE] = spill_after
    return netdiag(
        *map(str, arguments), timeout=120, environment=environment, before_exec=before_exec
    )


def as_list_item(document: str) -> str:
    """A file's own document (one object) laid out as an element of the several-files list."""
    return "  " + document.rstrip("\n").replace("\n", "\n  ")


@pytest.fixture(scope="module")
def alone(corpus_dir: Path) -> dict[str, str]:
    """Each file's own ``--json`` document, from a run on that file alone."""
    documents = {}
    for name in set(NAMES):
        result = run("analyze", "--json", "--jobs", "1", corpus_dir / name)
        assert result.returncode == 0, result.stderr
        documents[name] = result.stdout
    return documents


@pytest.mark.parametrize("spill_after", ["0", None])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_several_files_give_the_bytes_of_each_alone_and_of_all_at_once(
    corpus_dir: Path,
    alone: dict[str, str],
    jobs: str,
    spill_after: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = [corpus_dir / name for name in NAMES]
    streamed = run("analyze", "--json", "--jobs", jobs, *paths, spill_after=spill_after)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == "[\n" + ",\n".join(as_list_item(alone[n]) for n in NAMES) + "\n]\n"
    # The old way: every analysis first, then the whole document at once; with
    # two jobs, each file in a child, however small (the CLI keeps small files
    # in one process).
    if spill_after is not None:
        monkeypatch.setenv(SPILL_AFTER_VARIABLE, spill_after)
    monkeypatch.setattr(analyze_module, "PROCESS_MIN_BYTES", 0)
    all_at_once = analyze_files(paths, jobs=int(jobs), plot_data=False)
    assert streamed.stdout == json_text(report_document(all_at_once))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_analyses_come_in_order_with_at_most_jobs_files_in_flight(
    corpus_dir: Path, jobs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(analyze_module, "PROCESS_MIN_BYTES", 0)  # every file in a child
    paths = [corpus_dir / name for name in NAMES]
    taken = 0
    with closing(analyses_in_order(paths, jobs=int(jobs), plot_data=False)) as analyses:
        for analysis in analyses:
            # The next files' children (none with one job) wait for their turn.
            in_flight = len(multiprocessing.active_children())
            assert in_flight <= (int(jobs) if int(jobs) > 1 else 0)
            assert analysis == analyze_file(paths[taken], plot_data=False)
            taken += 1
    assert taken == len(paths)
    assert multiprocessing.active_children() == []


def test_closing_the_analyses_early_ends_the_children(
    corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(analyze_module, "PROCESS_MIN_BYTES", 0)  # every file in a child
    paths = [corpus_dir / name for name in NAMES]
    with closing(analyses_in_order(paths, jobs=2, plot_data=False)) as analyses:
        first = next(analyses)
        # The next files' children wait (with their results) for the parent's word.
        assert len(multiprocessing.active_children()) == 2
    assert first.file.path == str(paths[0])
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("form", [["--json"], [], ["--out", "{tmp}/reports"]])
def test_a_second_file_that_is_not_a_capture_is_refused_before_any_output(
    corpus_dir: Path, tmp_path: Path, jobs: str, form: list[str]
) -> None:
    bad = tmp_path / "notes.pcap"
    bad.write_text("this is not a capture at all\n")
    arguments = [argument.replace("{tmp}", str(tmp_path)) for argument in form]
    result = run(
        "analyze",
        "--jobs",
        jobs,
        *arguments,
        corpus_dir / "dpkt__http.pcap",
        bad,
        corpus_dir / "dpkt__dns_icmp.pcap",
    )
    lines = one_line_error(result, 2)
    assert str(bad) in lines[0] and "not a pcap or pcapng capture" in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "reports").exists()  # not even the first file's folder


def test_a_report_folder_that_would_be_refused_is_refused_before_any_output(
    corpus_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "reports"
    (out / "dpkt__dns_icmp").mkdir(parents=True)
    (out / "dpkt__dns_icmp" / "notes.txt").write_text("mine\n")
    result = run(
        "analyze", corpus_dir / "dpkt__http.pcap", corpus_dir / "dpkt__dns_icmp.pcap", "--out", out
    )
    lines = one_line_error(result, 2)
    assert lines[0].startswith("netdiag: error: report folder") and "dpkt__dns_icmp" in lines[0]
    assert result.stdout == ""
    assert not (out / "dpkt__http").exists()


def limit_file_size() -> None:
    """In the child before exec: files written may not pass FILE_SIZE_LIMIT (the
    kernel refuses the write with EFBIG; SIGXFSZ, which would end the process
    first, ignored). Stdout and stderr are pipes, which the limit does not touch."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_error_after_the_output_began_keeps_its_exit_code(
    corpus_dir: Path, alone: dict[str, str], jobs: str
) -> None:
    """Every record spilled to the temporary file (``NETDIAG_SPILL_AFTER=0``) under
    a file size limit that the second file's records pass: its analysis fails
    with an ``OutputError`` once the first file's object is out. The exit code
    and the message are the error's; stdout holds the list's start and the
    first object, an incomplete document that no JSON parser accepts."""
    first, second = corpus_dir / NAMES[0], corpus_dir / NAMES[1]
    result = run(
        "analyze",
        "--json",
        "--jobs",
        jobs,
        first,
        second,
        spill_after="0",
        before_exec=limit_file_size,
    )
    lines = one_line_error(result, 2)
    assert "cannot keep finished analysis records in a temporary file" in lines[0]
    assert result.stdout == "[\n" + as_list_item(alone[NAMES[0]])
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)


def test_small_files_are_analysed_here_and_big_ones_in_children(
    corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, big = corpus_dir / "dpkt__dns_icmp.pcap", corpus_dir / "dpkt__http.pcap"
    assert small.stat().st_size < big.stat().st_size
    monkeypatch.setattr(analyze_module, "PROCESS_MIN_BYTES", big.stat().st_size)
    paths = [small, big, small, big]
    children_then = []
    with closing(analyses_in_order(paths, jobs=2, plot_data=False)) as analyses:
        for path, analysis in zip(paths, analyses, strict=True):
            children_then.append(len(multiprocessing.active_children()))
            assert analysis == analyze_file(path, plot_data=False)
    # Both big files' children start at once, while the first small file is
    # analysed here; each ends once its result is taken.
    assert children_then == [2, 1, 1, 0]
    assert multiprocessing.active_children() == []


@pytest.fixture(scope="module")
def generated_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("several") / "generated.pcap"
    load_bench_generator("bench_gen_for_several_files").generate(path, 60_000, seed=4)
    return path


def children_reading(pid: int, path: Path) -> bool:
    """Whether a child of process ``pid`` has read into ``path`` yet."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii").split()
    except OSError:
        return False
    return any(reading(int(child), path) for child in children)


def test_big_files_in_children_give_the_bytes_of_one_process(generated_capture: Path) -> None:
    assert generated_capture.stat().st_size >= analyze_module.PROCESS_MIN_BYTES
    files = [generated_capture, generated_capture]
    one = run("analyze", "--json", "--jobs", "1", *files)
    two = run("analyze", "--json", "--jobs", "2", *files)
    assert one.returncode == two.returncode == 0, two.stderr
    assert two.stdout == one.stdout


def test_ctrl_c_ends_every_child_with_130(generated_capture: Path) -> None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) at moments through
    three files with ``--jobs 2``: exit 130 with netdiag's one line, no traceback
    from a child (the process pool of before printed its workers' ones), and no
    process of the group left behind."""
    interrupted = interrupt_at_moments(
        ["analyze", "--json", "--jobs", "2"] + [str(generated_capture)] * 3,
        lambda pid: children_reading(pid, generated_capture),  # a child's pass has begun
        (0.0, 0.1, 0.25, 0.5, 0.8),
        lambda stdout: len(json.loads(stdout)) == 3,
    )
    assert interrupted >= 3
