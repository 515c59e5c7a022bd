"""``netdiag analyze FILE...``: analyze captures and show or write the result.

Without ``--out`` a rich summary goes to the terminal; ``--json`` prints the
contract's analysis document instead (one object for one file, a list for
several); ``--out DIR`` writes one report folder per file, named after the
file's stem (``DIR/<stem>/``), with the forms chosen by ``--format``;
``--hexdump-link`` dumps the ``--hexdump-frames`` as ``tcpdump -XX`` does
(link layer included) instead of ``-X``. ``--jobs`` (default: one per CPU
this process may use) analyses files side by side, or splits one big file
by conversation (analysis/shares.py); the output is the same either way.

The files flow through one at a time, in the order given: each file's
analysis is written (its folder, its part of the JSON document, its summary)
and released before the next one's is taken (``analyses_in_order``), so
memory follows the largest file, not the number of files. Before anything is
analysed or written, every report folder is checked and every file opened as
a capture: an unreadable file is an ``InputError`` (exit 2) with nothing on
stdout. An error that can only show later (a full ``$TMPDIR``, a read error)
still exits with its own code and message, and leaves on stdout what was
written before it: an incomplete document (docs/contract-additions.md).
Findings never change the exit code: 0 when every file was analyzed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from netdiag.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from netdiag.analysis.model import Analysis
    from netdiag.report.jsonstream import AnalysesJsonWriter


def report_folders(out: Path, files: list[Path]) -> list[Path]:
    """``out/<stem>`` per file; a stem used twice gets ``-2``, ``-3``, ..."""
    folders: list[Path] = []
    used: set[str] = set()
    for file in files:
        name = file.stem or "capture"
        candidate, suffix = name, 2
        while candidate in used:
            candidate, suffix = f"{name}-{suffix}", suffix + 1
        used.add(candidate)
        folders.append(out / candidate)
    return folders


def execute(
    files: list[Path],
    json_output: bool,
    formats: str | None,
    out: Path | None,
    hexdump_frames: list[int],
    jobs: int | None,
    force: bool,
    hexdump_link: bool = False,
) -> int:
    from netdiag.analysis.analyze import analyses_in_order, collection_paused
    from netdiag.report import parse_formats, write_report
    from netdiag.report.jsonstream import AnalysesJsonWriter
    from netdiag.report.output import check_folder

    if not files:
        raise UsageError("no capture file given", "netdiag analyze FILE.pcap [FILE...]")
    chosen = parse_formats(formats)
    if out is None and (formats is not None or hexdump_frames or hexdump_link):
        raise UsageError(
            "--format, --hexdump-frames and --hexdump-link apply to a report folder",
            "add --out DIR to write one",
        )
    for file in files:
        if not file.is_file():
            raise UsageError(
                f"{file} is not a file" if file.exists() else f"{file} does not exist",
                "give the path of a pcap or pcapng capture",
            )
    # Refused up front, before anything is analysed or written: a report
    # folder that would be refused, and (analyses_in_order checks every
    # header before its first analysis) a file that is not a capture.
    folders = report_folders(out, files) if out is not None else []
    for folder in folders:
        check_folder(folder, force)
    # Plot points only serve the Markdown and HTML reports; report.json, --json
    # and the summary do not read them.
    plot_data = out is not None and bool({"md", "html"} & chosen)
    if jobs is None:
        jobs = len(os.sched_getaffinity(0))  # the CPUs this process may run on
    output = _Output(
        AnalysesJsonWriter(sys.stdout, len(files), jobs) if json_output else None,
        folders,
        partial(
            write_report,
            formats=chosen,
            hexdump_frames=hexdump_frames,
            force=force,
            hexdump_link_layer=hexdump_link,
            jobs=jobs,
        ),
    )
    # Each file's analysis is written as it arrives and released before the
    # next one's is taken: memory follows the largest file, not their number.
    paths = [str(file) for file in files]
    with closing(analyses_in_order(paths, jobs=jobs, plot_data=plot_data)) as analyses:
        for analysis in analyses:  # not enumerate(): its reused tuple would hold it
            # The cyclic GC off while one analysis is written, as during its
            # pass: the writing makes many short-lived acyclic objects, and a
            # collection would walk the analysis's records again and again. On
            # again between files, for whatever cycle the writing left.
            with collection_paused():
                output.write(analysis)
            del analysis  # released before the next one is analysed or received
    output.finish()
    return int(ExitStatus.OK)


class _Output:
    """Where each analysis goes as it arrives, in the order of the files: its
    report folder (``folders``, by ``write_folder``), its part of the JSON
    document, or its summary on the terminal."""

    def __init__(
        self,
        json_writer: AnalysesJsonWriter | None,
        folders: list[Path],
        write_folder: Callable[[Path, list[Analysis]], list[Path]],
    ) -> None:
        self.json_writer = json_writer
        self.folders = folders
        self.write_folder = write_folder
        self.console: Console | None = None
        self.written = 0

    def write(self, analysis: Analysis) -> None:
        if self.folders:
            folder = self.folders[self.written]
            paths = self.write_folder(folder, [analysis])
            if self.json_writer is None:
                for path in paths:
                    if path.parent == folder:
                        print(f"wrote {path}")
        if self.json_writer is not None:
            self.json_writer.write(analysis)
        elif not self.folders:
            from netdiag.report.terminal import print_summary

            if self.console is None:
                from netdiag.console import PipeConsole

                self.console = PipeConsole()
            else:
                self.console.print()  # a blank line between files
            print_summary(self.console, analysis)
        sys.stdout.flush()  # this file's part out before the next file's wait
        self.written += 1

    def finish(self) -> None:
        if self.json_writer is not None:
            self.json_writer.finish()
