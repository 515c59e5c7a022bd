"""The report stage: analysis records (and a run's results) -> a report folder.

``write_report`` is the one entry point other stages call. It writes, into
one folder, ``report.md`` (GitHub-flavoured Markdown), ``report.html`` (one
self-contained page, plots embedded) and ``report.json`` (the contract's
analysis document, plus the run's document under ``"run"``), and the PNG
plots under ``plots/`` that the Markdown links to. ``formats`` picks a subset;
plots are drawn only when Markdown or HTML is asked for.

Each file is written atomically (``output.atomic_write_bytes``) and an
existing non-empty folder is refused unless ``force`` (``OutputError``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from netdiag.analysis.model import Analysis
from netdiag.errors import NetdiagError, UsageError
from netdiag.experiment.model import RunResult

FORMATS = frozenset({"md", "html", "json"})
PLOT_FOLDER = "plots"


def parse_formats(value: str | None) -> set[str]:
    """``"md,html"`` -> ``{"md", "html"}``; None means all three; unknown names: UsageError."""
    if value is None:
        return set(FORMATS)
    chosen = {name.strip().lower() for name in value.split(",") if name.strip()}
    chosen = {"md" if name in ("markdown",) else name for name in chosen}
    unknown = chosen - FORMATS
    if unknown or not chosen:
        raise UsageError(
            f"unknown report format {', '.join(sorted(unknown)) or repr(value)}",
            "use --format with a comma-separated subset of md,html,json",
        )
    return chosen


def report_document(analyses: list[Analysis], run: RunResult | None = None) -> Any:
    """The report.json document.

    Without a run it is exactly ``netdiag analyze --json``: one object for one
    capture, a list for several. With a run every capture's object gains a
    ``"run"`` key holding the ``netdiag run --json`` document (steps included).
    """
    documents = []
    for analysis in analyses:
        document = analysis.to_json()
        if run is not None:
            document["run"] = run.to_json()
        documents.append(document)
    if len(documents) == 1:
        return documents[0]
    if not documents and run is not None:
        return {"run": run.to_json()}
    return documents


def json_text(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "capture"


def _hexdumps_for(
    analysis: Analysis, frames: list[int], note: str, link_layer: bool = False
) -> tuple[tuple[Any, ...], str]:
    from netdiag.report.content import HexDump
    from netdiag.report.hexdump import dump_frames

    if not frames:
        return (), note
    try:
        found = dump_frames(Path(analysis.file.path), frames, link_layer)
    except (OSError, NetdiagError) as error:
        return (), f"The frames could not be read again from {analysis.file.path}: {error}"
    dumps = tuple(
        HexDump(frame=number, header=header, lines=tuple(lines)) for number, header, lines in found
    )
    missing = sorted(set(frames) - {dump.frame for dump in dumps})
    if missing:
        note = (note + " " if note else "") + (
            f"Not in this capture: frame {', '.join(str(number) for number in missing)}."
        )
    return dumps, note


def _make_plots(
    analysis: Analysis, out_dir: Path, prefix: str, streams: Iterable[Any]
) -> tuple[tuple[Any, ...], dict[int, tuple[Any, ...]]]:
    from netdiag.report import plots
    from netdiag.report.content import PLOTTED_STREAMS, PlotFile

    def plot_file(name: str, title: str, caption: str) -> PlotFile:
        relative = f"{PLOT_FOLDER}/{prefix}{name}"
        return PlotFile(relative=relative, title=title, caption=caption, path=out_dir / relative)

    general = []
    icmp = plot_file(
        "icmp-rtt.png",
        "ICMP echo RTT per sequence number",
        "Round-trip time of each echo request, per direction; x at 0 ms: no reply.",
    )
    if plots.plot_icmp_rtt(analysis, icmp.path):
        general.append(icmp)
    plotted = list(streams)[:PLOTTED_STREAMS]
    rtt = plot_file(
        "tcp-rtt.png",
        "TCP RTT samples over time",
        f"Data-to-ACK round-trip times of the {len(plotted)} largest streams.",
    )
    if plots.plot_rtt_samples(analysis, plotted, rtt.path):
        general.append(rtt)
    per_stream: dict[int, tuple[PlotFile, ...]] = {}
    for stream in plotted:
        chosen = []
        ladder = plot_file(
            f"tcp-stream-{stream.stream}-ladder.png",
            f"TCP stream {stream.stream} ladder diagram",
            "Handshake and teardown between client (left) and server (right), with times.",
        )
        if plots.plot_ladder(stream, ladder.path):
            chosen.append(ladder)
        timeseq = plot_file(
            f"tcp-stream-{stream.stream}-timeseq.png",
            f"TCP stream {stream.stream} time-sequence graph",
            "tcptrace style: data segments as bars, retransmissions red, ACKs green.",
        )
        if plots.plot_time_sequence(stream, timeseq.path):
            chosen.append(timeseq)
        if chosen:
            per_stream[stream.stream] = tuple(chosen)
    return tuple(general), per_stream


def write_report(
    out_dir: Path,
    analyses: list[Analysis],
    run: RunResult | None = None,
    formats: set[str] | frozenset[str] = FORMATS,
    hexdump_frames: list[int] | None = None,
    force: bool = False,
    hexdump_link_layer: bool = False,
    jobs: int = 1,
) -> list[Path]:
    """Write the report folder and return the paths written (report files first).

    ``hexdump_frames`` chooses the frames to dump (in every capture); when it
    is empty and a run is given, the data segments of the run's TCP message
    are dumped. ``hexdump_link_layer`` dumps them as ``tcpdump -XX`` (link
    layer included) instead of ``tcpdump -X``. ``jobs > 1`` lets a second
    process write a big capture's ``report.json`` while this one draws the
    plots and pages, or, when JSON is the only form, encode half of it
    (jsonstream.py). The files are the same whatever ``jobs`` is.
    """
    from netdiag.analysis.forked import NoProcessToSpare
    from netdiag.report.jsonstream import write_analyses_json
    from netdiag.report.output import (
        TextWrittenInChild,
        atomic_write_text,
        atomic_write_text_by,
        prepare_folder,
    )

    unknown = set(formats) - FORMATS
    if unknown or not formats:
        raise UsageError(f"unknown report format {', '.join(sorted(unknown))}")
    out_dir = Path(out_dir)
    prepare_folder(out_dir, force)
    json_path = out_dir / "report.json"
    want_pages = bool({"md", "html"} & set(formats))
    json_child: TextWrittenInChild | None = None
    try:
        if "json" in formats and run is None and want_pages and jobs > 1 and _big(analyses):
            # A big capture's report.json (record by record, ~0.7 s at a
            # million packets) is written by a second process while this one
            # draws the plots and the pages, which need no JSON.
            json_child = TextWrittenInChild(
                json_path, partial(write_analyses_json, analyses, jobs=1)
            )
            try:
                json_child.start()  # held above first: a Ctrl-C as it forks still ends it
            except NoProcessToSpare:  # the kernel would not fork: written here below
                json_child.end()
                json_child = None
        reports: list[Path] = []
        written: list[Path] = []
        if want_pages:
            reports, written = _write_pages(
                out_dir, analyses, run, formats, hexdump_frames, hexdump_link_layer
            )
        if json_child is not None:
            json_child.finish()
            reports.append(json_path)
        elif "json" in formats:
            if run is None:
                # Exactly `netdiag analyze --json`: written record by record, as it
                # is (a big capture's document is tens of MB).
                atomic_write_text_by(json_path, partial(write_analyses_json, analyses, jobs=jobs))
            else:
                atomic_write_text(json_path, json_text(report_document(analyses, run)))
            reports.append(json_path)
    finally:
        if json_child is not None:
            json_child.end()
    if want_pages:
        # Only a new report.md/html replaces the old one's plots: after a
        # --force of report.json alone, the old pages still link to theirs.
        _remove_stale_plots(out_dir, set(written))
    return reports + written


def _big(analyses: list[Analysis]) -> bool:
    """Worth a second process for report.json (a fork costs a few ms): at least
    as many records in all, streams, echoes, errors and findings together, as
    make jsonstream.py encode one list in two processes."""
    from netdiag.report.jsonstream import PARALLEL_RECORDS, streamed_records

    return sum(streamed_records(analysis) for analysis in analyses) >= PARALLEL_RECORDS


def _write_pages(
    out_dir: Path,
    analyses: list[Analysis],
    run: RunResult | None,
    formats: set[str] | frozenset[str],
    hexdump_frames: list[int] | None,
    hexdump_link_layer: bool,
) -> tuple[list[Path], list[Path]]:
    """report.md and/or report.html: (the pages written, the plots drawn)."""
    from dataclasses import replace

    from netdiag.report.content import (
        ReportContent,
        build_section,
        message_frames,
        overall_verdict,
        report_title,
        run_port,
    )
    from netdiag.report.output import atomic_write_text

    written: list[Path] = []
    sections = []
    port = run_port(run) if run is not None else None
    for index, analysis in enumerate(analyses):
        section = build_section(analysis)
        if hexdump_frames:
            frames, note = list(hexdump_frames), ""
        elif port is not None:
            frames = message_frames(analysis, port)
            note = (
                f"The data segments of the run's TCP message (port {port})."
                if frames
                else f"No data segment to port {port} was captured here."
            )
        else:
            frames, note = [], ""
        if hexdump_link_layer and frames:
            note = (note + " " if note else "") + (
                "Link layer included, as `tcpdump -XX` prints it."
            )
        dumps, note = _hexdumps_for(analysis, frames, note, hexdump_link_layer)
        prefix = ""
        if len(analyses) > 1:
            prefix = f"{index + 1}-{_safe_name(Path(analysis.file.path).stem)}-"
        general, per_stream = _make_plots(analysis, out_dir, prefix, section.detailed_streams)
        sections.append(
            replace(
                section,
                hexdumps=dumps,
                hexdump_note=note,
                hexdump_link_layer=hexdump_link_layer,
                plots=general,
                stream_plots=per_stream,
            )
        )
        written += [plot.path for plot in general]
        written += [plot.path for plots in per_stream.values() for plot in plots]
    content = ReportContent(
        title=report_title(analyses, run),
        verdict=overall_verdict(sections, run),
        run=run,
        captures=tuple(sections),
    )
    reports: list[Path] = []
    if "md" in formats:
        from netdiag.report.markdown import render_markdown

        reports.append(out_dir / "report.md")
        atomic_write_text(reports[-1], render_markdown(content))
    if "html" in formats:
        from netdiag.report.html import render_html

        reports.append(out_dir / "report.html")
        atomic_write_text(reports[-1], render_html(content))
    return reports, written


def _remove_stale_plots(out_dir: Path, current: set[Path]) -> None:
    """After --force, drop PNGs of an earlier report that this one no longer links to."""
    folder = out_dir / PLOT_FOLDER
    if not folder.is_dir():
        return
    for path in folder.glob("*.png"):
        if path not in current:
            path.unlink(missing_ok=True)
