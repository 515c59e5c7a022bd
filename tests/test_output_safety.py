"""Issue 7, nothing lost and nothing let out, on the file side.

- Report files are replaced atomically: a writer killed in the middle of a write
  (by the kernel, through RLIMIT_FSIZE, so the moment is exact) leaves every
  final name with either the old complete file or the new complete one.
- The analyzer only reads captures: it works on a read-only filesystem and, with
  its capabilities dropped, on a 0444 file in a 0555 folder; analyzing never
  changes the file, adds nothing beside it, and runs nothing found in it.
- Markdown escapes text from packets and runs: ``|`` does not split a table
  cell, backticks do not close a code span early, ``<script>`` and
  ``[link](javascript:…)`` stay text.

(HTML escaping, with a real browser: tests/test_report.py. No experiment packet in
the root namespace: tests/test_containment.py.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netdiag.analysis.analyze import analyze_file
from netdiag.experiment.model import RunResult, StepResult, TcpExchange
from netdiag.report import write_report
from tests.conftest import corpus_files
from tests.test_report import assert_safe_and_self_contained, parse_html

CORPUS = {path.name: path for path in corpus_files()}
needs_corpus = pytest.mark.skipif(not CORPUS, reason="shared corpus not found")
OLD_CAPTURE = "dpkt__http.pcap"
NEW_CAPTURE = "markofu__tcp-con-lost.pcap"
FILE_SIZE_LIMIT = 1024  # bytes: every report file and plot of NEW_CAPTURE is larger

WRITE_UNDER_A_LIMIT = """
import resource, signal, sys
from pathlib import Path

sys.dont_write_bytecode = True
from netdiag.analysis.analyze import analyze_file
from netdiag.report import write_report
import netdiag.report.content, netdiag.report.markdown, netdiag.report.html  # noqa
import netdiag.report.plots, matplotlib.pyplot  # noqa: imported before the limit

capture, out, formats, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
analysis = analyze_file(Path(capture))
# Past `limit` bytes a write kills the process (SIGXFSZ, which Python ignores unless
# told otherwise): a crash inside a write.
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
write_report(Path(out), [analysis], formats=set(formats.split(",")), force=True)
"""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file() and not path.name.startswith(".")
    }


@needs_corpus
@pytest.mark.parametrize("formats", ["json", "md", "md,html,json"])
def test_a_report_killed_mid_write_leaves_only_whole_files(tmp_path: Path, formats: str) -> None:
    report = tmp_path / "report"
    chosen = set(formats.split(","))
    write_report(report, [analyze_file(CORPUS[OLD_CAPTURE])], formats=chosen)
    old = snapshot(report)
    write_report(tmp_path / "whole", [analyze_file(CORPUS[NEW_CAPTURE])], formats=chosen)
    new = snapshot(tmp_path / "whole")
    assert old.keys() & new.keys() and all(old[n] != new[n] for n in old.keys() & new.keys())

    killed = subprocess.run(
        [
            *(sys.executable, "-c", WRITE_UNDER_A_LIMIT, str(CORPUS[NEW_CAPTURE]), str(report)),
            *(formats, str(FILE_SIZE_LIMIT)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGXFSZ, killed.stderr  # it died inside a write
    after = snapshot(report)
    for name, data in after.items():
        assert data in (old.get(name), new.get(name)), f"{name} is neither old nor new"
    assert set(old) <= set(after)  # nothing that was there is lost
    assert after == old  # the first write was cut: every final name still holds the old file


# ---- the analyzer only reads ------------------------------------------------------------


def analysis_document(capture: Path) -> dict[str, object]:
    document = analyze_file(capture).to_json()
    document["file"] = {k: v for k, v in document["file"].items() if k != "path"}
    return document


@pytest.fixture
def read_only_copy(tmp_path: Path) -> Iterator[Path]:
    """A folder of corpus captures, then remounted read-only (root: a real tmpfs mount)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a read-only tmpfs")
    folder = tmp_path / "ro"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], check=True)
    try:
        for name in (OLD_CAPTURE, NEW_CAPTURE, "dpkt__truncated_dns_2.pcap"):
            shutil.copy(CORPUS[name], folder / name)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@needs_corpus
def test_analyzer_reads_captures_on_a_read_only_filesystem(read_only_copy: Path) -> None:
    before = snapshot(read_only_copy)
    for name in before:
        capture = read_only_copy / name
        assert analysis_document(capture) == analysis_document(CORPUS[name])
        result = subprocess.run(
            [sys.executable, "-m", "netdiag", "analyze", str(capture), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["file"]["packets"] > 0
    assert snapshot(read_only_copy) == before
    assert sorted(p.name for p in read_only_copy.iterdir()) == sorted(before)


@needs_corpus
@pytest.mark.skipif(
    shutil.which("setpriv") is None or os.geteuid() != 0,
    reason="needs root and setpriv to drop capabilities",
)
def test_analyzer_without_privileges_reads_a_0444_file_in_a_0555_folder(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    capture = folder / "capture.pcap"
    shutil.copy(CORPUS[NEW_CAPTURE], capture)
    capture.chmod(0o444)
    folder.chmod(0o555)
    stamp = capture.stat().st_mtime_ns
    try:
        # Without CAP_DAC_OVERRIDE, root is bound by the modes: opening for write would fail.
        result = subprocess.run(
            [
                *("setpriv", "--bounding-set", "-all", "--inh-caps", "-all"),
                *(sys.executable, "-m", "netdiag", "analyze", str(capture), "--json"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        folder.chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["file"]["packets"] == analyze_file(capture).file.packets
    assert capture.stat().st_mtime_ns == stamp
    assert [p.name for p in folder.iterdir()] == ["capture.pcap"]


def hostile_payloads(marker: Path) -> list[bytes]:
    """Things that would run if the analyzer ever evaluated or unpickled packet data."""
    import pickle

    class Touch:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (open, (str(marker), "w"))

    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    return [
        pickle.dumps(Touch()),
        code.encode(),
        b"{0.__class__.__mro__[1].__subclasses__} %s%s%n %(x)s ${jndi:ldap://x} $(touch x)",
    ]


def test_analyzer_runs_nothing_from_a_capture(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    marker = tmp_path / "marker"
    payloads = hostile_payloads(marker)
    ether = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    packets = [
        ether / IP(src="10.0.2.0", dst="10.0.1.0") / TCP(sport=40000, dport=7096) / payload
        for payload in payloads
    ] + [ether / IP(src="10.0.2.0", dst="10.0.1.53") / UDP(dport=53) / p for p in payloads]
    capture = tmp_path / "hostile.pcap"
    wrpcap(str(capture), packets)
    analysis = analyze_file(capture)
    assert analysis.file.packets == len(packets)
    write_report(tmp_path / "report", [analysis], hexdump_frames=[1, 2, 3])
    # A file that is a pickle, not a capture, is refused as such.
    pickled = tmp_path / "pickled.pcap"
    pickled.write_bytes(payloads[0])
    refused = subprocess.run(
        [sys.executable, "-m", "netdiag", "analyze", str(pickled)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert not marker.exists()


# ---- Markdown escaping ---------------------------------------------------------------------

HOSTILE = (
    "| a | `b` ``c`` <script>alert(1)</script> ```x "
    "[click](javascript:alert(2)) ![t](http://198.51.100.7/t.png) \\| \\` <img src=x>"
)


def strip_fences(markdown: str) -> tuple[str, list[str]]:
    """(the lines outside fenced blocks, the fenced bodies), as CommonMark closes fences."""
    outside: list[str] = []
    bodies: list[str] = []
    fence = ""
    body: list[str] = []
    for line in markdown.splitlines():
        stripped = line.lstrip(" ")
        run = len(stripped) - len(stripped.lstrip("`"))
        if not fence and run >= 3:
            fence, body = "`" * run, []
        elif fence and run >= len(fence) and stripped.strip() == "`" * run:
            fence = ""
            bodies.append("\n".join(body))
        elif fence:
            body.append(line)
        else:
            outside.append(line)
    assert not fence, "a fenced block is never closed"
    return "\n".join(outside), bodies


def strip_code_spans(line: str) -> tuple[str, list[str]]:
    """(the line without its code spans, the spans' contents), by CommonMark's rule:
    a span opened by N backticks ends at the next run of exactly N backticks."""
    rest = line
    spans: list[str] = []
    out: list[str] = []
    while True:
        match = re.search(r"(?<!\\)`+", rest)
        if match is None:
            out.append(rest)
            return "".join(out), spans
        opener = match.group()
        closing = re.search(rf"(?<!`){opener}(?!`)", rest[match.end() :])
        if closing is None:  # no closer: the backticks are literal
            out.append(rest[: match.end()])
            rest = rest[match.end() :]
            continue
        out.append(rest[: match.start()])
        spans.append(rest[match.end() : match.end() + closing.start()])
        rest = rest[match.end() + closing.end() :]


def unescaped_pipes(row: str) -> int:
    return len(re.findall(r"(?<!\\)\|", row))


def hostile_run() -> RunResult:
    return RunResult(
        ok=False,
        run_id="hostile",
        topology="seed",
        steps=(
            StepResult(
                "tcp-7096",
                False,
                f"server received 54 bytes ({HOSTILE!r}, not the message)",
                1.0,
                f"TCP {HOSTILE}",
                (f"echo '{HOSTILE}\n```\n<script>alert(3)</script>' | nc 10.0.1.0 7096",),
                f"exactly {HOSTILE}",
            ),
        ),
        icmp=(),
        # One run of two backticks: a fixed `` fence would end at it, freeing the tag.
        tcp=(TcpExchange("ns2", "10.0.1.0:7096", True, HOSTILE, "x``<script>alert(5)</script>"),),
        pcaps=(),
        reports=(),
    )


def test_markdown_keeps_packet_text_inert(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    ether = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    client = IP(src="10.0.2.0", dst="10.0.1.0")
    server = IP(src="10.0.1.0", dst="10.0.2.0")
    packets = [
        ether / client / TCP(sport=40000, dport=7096, flags="S", seq=100),
        ether / server / TCP(sport=7096, dport=40000, flags="SA", seq=500, ack=101),
        ether / client / TCP(sport=40000, dport=7096, flags="A", seq=101, ack=501),
        ether / client / TCP(sport=40000, dport=7096, flags="PA", seq=101, ack=501) / HOSTILE,
    ]
    capture = tmp_path / "<img src=x onerror=alert(4)> [a](b) `c`.pcap"
    wrpcap(str(capture), packets)
    out = tmp_path / "report"
    write_report(out, [analyze_file(capture)], hostile_run(), {"md", "html"})
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "alert(1)" in markdown and "javascript:alert(2)" in markdown  # shown, as text

    outside, bodies = strip_fences(markdown)
    assert any("<script>alert(3)</script>" in body for body in bodies)  # stayed in its fence
    tables = re.findall(r"(?m)(?:^\|.*\n?)+", outside)
    assert tables
    for table in tables:
        rows = table.strip("\n").splitlines()
        header = unescaped_pipes(rows[0])
        for row in rows[1:]:
            assert unescaped_pipes(row) == header, f"a cell split: {row}"
    for line in outside.splitlines():
        prose, _spans = strip_code_spans(line)
        assert "<script" not in prose and "<img" not in prose, line
        links = prose.replace("\\]", "")  # an escaped bracket opens no link
        assert "](javascript:" not in links and "](http://198.51.100.7" not in links, line
    page = parse_html(out / "report.html")
    assert_safe_and_self_contained(page)
    assert "<script>alert(1)</script>" in "".join(page.text)  # shown as text
