"""``netdiag analyze FILE...``: analyze captures and show or write the result.

Without ``--out`` a rich summary goes to the terminal; ``--json`` prints the
contract's analysis document instead (one object for one file, a list for
several); ``--out DIR`` writes one report folder per file, named after the
file's stem (``DIR/<stem>/``), with the forms chosen by ``--format``;
``--hexdump-link`` dumps the ``--hexdump-frames`` as ``tcpdump -XX`` does
(link layer included) instead of ``-X``. ``--jobs`` (default: one per CPU
this process may use) analyses files side by side, or splits one big file
by conversation (analysis/shares.py); the output is the same either way.
Findings never change the exit code: 0 when every file was analyzed; an
unreadable file is an ``InputError`` (exit 2) raised by the analysis.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

from netdiag.errors import ExitStatus, UsageError


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
    from netdiag.analysis.analyze import analyze_files
    from netdiag.report import parse_formats, write_report
    from netdiag.report.jsonstream import write_analyses_json

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
    # Plot points only serve the report folder; --json and the summary do not read them.
    plot_data = out is not None
    if jobs is None:
        jobs = len(os.sched_getaffinity(0))  # the CPUs this process may run on
    analyses = analyze_files([str(file) for file in files], jobs=jobs, plot_data=plot_data)
    written: list[Path] = []
    if out is not None:
        for analysis, folder in zip(analyses, report_folders(out, files), strict=True):
            paths = write_report(
                folder,
                [analysis],
                formats=chosen,
                hexdump_frames=hexdump_frames,
                force=force,
                hexdump_link_layer=hexdump_link,
            )
            written += [path for path in paths if path.parent == folder]
    if json_output:
        # The analysis is finished and lives until exit: frozen, its objects
        # are left out of the collections that the writing's allocations
        # trigger (the GC, off during the pass, would otherwise walk every
        # record kept in memory again and again while the JSON is written).
        gc.freeze()
        # Written record by record: same bytes as json_text(report_document(...)).
        write_analyses_json(analyses, sys.stdout, jobs)
    elif out is None:
        from netdiag.report.terminal import print_summaries

        print_summaries(analyses)
    else:
        for path in written:
            print(f"wrote {path}")
    return int(ExitStatus.OK)
