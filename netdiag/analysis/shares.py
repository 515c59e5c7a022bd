"""One capture analysed by several processes, each following a share of its conversations.

The per-packet pass is CPU-bound Python, and a big capture is one file: to
use more than one core on it, the conversations are split as a flow-hash
load balancer splits them between Zeek's cluster workers. Every process reads
the whole file (a fifth to a quarter of a share's time), and its decoder
counts every frame but reads the fields of, and gives the TCP tracker, only
the conversations whose direction-symmetric hash falls in its share
(``packet.endpoints_share``); ICMP, ARP, the decode counts and the file's
description are the same in every share, and the first share's (this
process's) are kept.

Wireshark's TCP analysis never looks across conversations, so each share's
streams are exactly the single pass's, numbered within the share. The merge
renumbers them as one pass would (``tcp.stream`` counts conversations in the
order of the frames that began them), sums the flag totals, and joins the
ack_rtt samples (exact statistics whatever the split: samples.py). An ICMP
error quoting a TCP header takes its stream from the share that follows that
conversation (the others find none). Each stream's own findings are made in
its share, as its record is finished (in parallel, and without reading the
record back); grouping them (port scans, sweeps) and ordering every finding
is done on the merged, renumbered lists, as in one pass.

Plot points (``--out`` reports) are capped at ``MAX_POINTS_TOTAL`` over the
whole file, the first ones in frame order. Each share keeps its own first
``MAX_POINTS_TOTAL`` and the frames they came from; the file's first ones are
among those, so the merge finds where one pass would have stopped
(``plot_cut``) and trims every stream's points there (``_within_cut``).

The other shares run in forked child processes (forked.py, ``ForkedCall``:
they ignore Ctrl-C, this process ends them by pid); their finished records
come back through a pipe, spilled ones as references to the child's
anonymous files, which this process opens through ``/proc`` before the child
exits (store.py, ``spilled_by_reference``): nothing of them is copied or held
in memory on the way.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import itertools
import os
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from netdiag.analysis.analyze import FilePass, collection_paused
from netdiag.analysis.forked import ForkedCall
from netdiag.analysis.model import (
    Analysis,
    Finding,
    IcmpError,
    RttSample,
    SeqPoint,
    StreamFindings,
    TcpStream,
)
from netdiag.analysis.store import Interleaved, field_replacer, open_file_of
from netdiag.analysis.tcp import MAX_POINTS_TOTAL

# Below this a second process costs more than it saves (fork, a second read
# of the file, sending the records back): one process analyses the file.
# Above, one more share per SHARE_MIN_BYTES, up to MAX_SHARES: every share
# reads the whole file (about a fifth of a share's time with two),
# so each one more gains less, and costs the memory of one more process.
SHARE_MIN_BYTES = 32 << 20
MAX_SHARES = 4

_renumbered_stream = field_replacer(TcpStream, "stream")
_renumbered_error = field_replacer(IcmpError, "stream")
_renumbered_finding = field_replacer(Finding, "stream")


def shares_for(path: str | os.PathLike[str], jobs: int) -> int:
    """How many shares to split ``path`` into, given ``jobs`` processes."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return 1  # the reader reports the problem, with its own words
    return max(1, min(jobs, MAX_SHARES, size // SHARE_MIN_BYTES + 1))


class SampleFile:
    """A share's spooled ack_rtt samples: pickled as a reference to the child's
    anonymous file (its pid and descriptor), opened through ``/proc`` in the
    parent while the child waits, as its spilled records are (store.py)."""

    def __init__(self, file: IO[bytes] | None, count: int) -> None:
        self.file = file
        self.count = count

    def __reduce__(self) -> tuple[Any, ...]:
        if self.file is None:
            return (SampleFile, (None, 0))
        return (_open_sample_file, (os.getpid(), self.file.fileno(), self.count))


def _open_sample_file(pid: int, descriptor: int, count: int) -> SampleFile:
    return SampleFile(open_file_of(pid, descriptor), count)


@dataclass(frozen=True)
class ShareResult:
    """What a child's share of the conversations gives back."""

    streams: Sequence[TcpStream]  # in the share's own numbering, 0, 1, 2, ...
    judged: Sequence[StreamFindings | None]  # each stream's findings, in the same order
    creation_frames: bytes  # array("q"): the frame that began each stream
    totals: dict[str, int]
    ack_rtt: SampleFile | None  # the share's ack_rtt samples, all written out
    ack_rtt_histogram: tuple[int, ...]  # and their histogram
    error_streams: tuple[int | None, ...]  # per ICMP error, the stream found in this share
    plot_frames: bytes  # array("q"): the frame of each plot point kept, in order


def follow_share(path: str, share: int, shares: int, plot_data: bool) -> ShareResult:
    """The pass over ``path`` for conversations of ``share`` (in a child process)."""
    with collection_paused():
        file_pass = FilePass(path, plot_data, share=share, shares=shares)
        return _share_result(file_pass, for_parent=True)


def _share_result(file_pass: FilePass, for_parent: bool) -> ShareResult:
    """The TCP results of a share's pass; ``for_parent``: also what only the first
    share's process lacks (the ack_rtt samples, the streams of the ICMP errors)."""
    tcp = file_pass.tcp
    streams = tcp.finish()
    return ShareResult(
        streams=streams,
        judged=tcp.judgements,
        creation_frames=tcp.creation_frames.tobytes(),
        totals=tcp.totals(),
        ack_rtt=SampleFile(*tcp.ack_rtt.written()) if for_parent else None,
        ack_rtt_histogram=tuple(tcp.ack_rtt.histogram) if for_parent else (),
        error_streams=(
            tuple(error.stream for error in file_pass.icmp.errors()) if for_parent else ()
        ),
        plot_frames=tcp.plot_frames.tobytes(),
    )


def analyze_in_shares(path: str | os.PathLike[str], shares: int, plot_data: bool) -> Analysis:
    """``analyze_file(path, plot_data)``, the conversations split ``shares`` ways."""
    name = os.fspath(path)
    children: list[ForkedCall[ShareResult]] = []
    try:
        for share in range(1, shares):
            # Known before it starts: a Ctrl-C delivered as it starts still ends it.
            children.append(
                ForkedCall(
                    follow_share,
                    (name, share, shares, plot_data),
                    "analysing a share of the conversations",
                )
            )
            children[-1].start()
        with collection_paused():
            first = FilePass(name, plot_data, share=0, shares=shares)
            own = _share_result(first, for_parent=False)
        tcp = first.tcp
        others = [child.result() for child in children]
    finally:
        for child in children:
            child.end()
    for other in others:
        samples = other.ack_rtt
        if samples is not None and samples.file is not None:
            tcp.ack_rtt.extend_from(samples.file, samples.count, other.ack_rtt_histogram)
    results = [own, *others]
    picks, numbers = file_order(results)
    cut = plot_cut(results)
    numbered = _stream_numbered if cut is None else functools.partial(_within_cut, cut)
    streams = Interleaved([result.streams for result in results], picks, numbered)
    judged = Interleaved([result.judged for result in results], picks, _findings_numbered)
    errors = first.icmp.errors()
    return first.analysis(
        streams,
        judged,
        sum_totals([share.totals for share in [own, *others]]),
        tcp.ack_rtt_totals(),  # over every share's samples, joined above
        renumber_errors(errors, [None, *[other.error_streams for other in others]], numbers),
    )


def file_order(results: Sequence[ShareResult]) -> tuple[array[int], list[array[int]]]:
    """The shares' streams in one pass's order: the share of each, and each share's
    numbers (the share's own stream number -> the file's)."""
    # Each share's streams are in the order of their first frames already:
    # merged lazily, one (frame, share) at a time, nothing held per stream.
    began = []
    for share, result in enumerate(results):
        frames = array("q", result.creation_frames)
        began.append(zip(frames, itertools.repeat(share), strict=False))
    picks = array("b", [share for _frame, share in heapq.merge(*began)])
    numbers = [array("q") for _result in results]
    for number, share in enumerate(picks):
        numbers[share].append(number)
    return picks, numbers


def _stream_numbered(number: int, stream: TcpStream) -> TcpStream:
    return _renumbered_stream(stream, number)


@dataclass(frozen=True)
class PlotCut:
    """Where one pass stopped keeping plot points: every point of a frame before
    ``frame``, and the first ``taken`` (1 or 2: its RTT sample, then its point)
    of ``frame`` itself."""

    frame: int
    taken: int


def plot_cut(results: Sequence[ShareResult]) -> PlotCut | None:
    """The cut of the file's first ``MAX_POINTS_TOTAL`` plot points, or None when
    the shares kept fewer than that together (then every one of them stays)."""
    kept = [array("q", result.plot_frames) for result in results]
    if sum(len(frames) for frames in kept) <= MAX_POINTS_TOTAL:
        return None
    # A frame belongs to one conversation, so to one share: equal frames are
    # neighbours in one share's array, in the order that share kept them.
    first = list(itertools.islice(heapq.merge(*kept), MAX_POINTS_TOTAL))
    last = first[-1]
    return PlotCut(last, first.count(last))


def _within_cut(cut: PlotCut, number: int, stream: TcpStream) -> TcpStream:
    """``stream`` numbered ``number``, with only the plot points one pass kept."""
    stream = _renumbered_stream(stream, number)
    samples, points = stream.rtt_samples, stream.seq_points
    if (not samples or samples[-1].frame < cut.frame) and (
        not points or points[-1].frame < cut.frame
    ):
        return stream
    # The cut frame's RTT sample comes before its point: it takes the first place.
    kept_samples, left = _kept_until(samples, cut.frame, cut.taken)
    kept_points, _left = _kept_until(points, cut.frame, left)
    return dataclasses.replace(stream, rtt_samples=kept_samples, seq_points=kept_points)


PlotItem = TypeVar("PlotItem", RttSample, SeqPoint)


def _kept_until(
    items: tuple[PlotItem, ...], frame: int, places: int
) -> tuple[tuple[PlotItem, ...], int]:
    """The ``items`` of frames before ``frame``, and of ``frame`` while ``places``
    last; and the places left."""
    kept = []
    for item in items:
        if item.frame == frame and places:
            places -= 1
        elif item.frame >= frame:
            break  # in frame order: none of the rest is kept
        kept.append(item)
    return tuple(kept), places


def _findings_numbered(number: int, judged: StreamFindings | None) -> StreamFindings | None:
    """A stream's findings, the stream they name numbered as in the file."""
    if judged is None:
        return None
    findings = tuple(
        finding if finding.stream is None else _renumbered_finding(finding, number)
        for finding in judged.findings
    )
    return StreamFindings(judged.client, judged.server, findings)


def renumber_errors(
    errors: Sequence[IcmpError],
    shares_streams: Sequence[tuple[int | None, ...] | None],
    numbers: Sequence[array[int]],
) -> Sequence[IcmpError]:
    """``errors`` (the first share's) with each quoted stream in the file's numbering.

    ``shares_streams[k]`` lists, per error, the stream share ``k`` found
    (``None`` for the first share: ``errors`` carry its own). One share at most
    follows a conversation, so at most one finds a stream.
    """
    if not errors:
        return errors

    def adjust(index: int, error: IcmpError) -> IcmpError:
        if error.stream is not None:
            return _renumbered_error(error, numbers[0][error.stream])
        for share, found in enumerate(shares_streams):
            stream = None if found is None else found[index]
            if stream is not None:
                return _renumbered_error(error, numbers[share][stream])
        return error

    return Interleaved([errors], array("b", bytes(len(errors))), adjust)


def sum_totals(totals: Sequence[dict[str, int]]) -> dict[str, int]:
    """Flag counts added over the shares (every share lists every flag, in one order)."""
    summed = dict(totals[0])
    for other in totals[1:]:
        for name, count in other.items():
            summed[name] = summed.get(name, 0) + count
    return summed
