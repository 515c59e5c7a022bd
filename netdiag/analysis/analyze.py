"""The analysis orchestrator: one pass over a capture file to an ``Analysis``.

``analyze_file`` streams the file once: ``CaptureReader`` yields raw frames,
``Decoder`` turns each into a ``DecodedPacket``, and the packet goes to the
one tracker that wants it (TCP, ICMP/ICMPv6, ARP); that loop lives in
``scan.py``, which mypyc compiles with the modules it calls. Nothing is kept per
packet here; the trackers keep per-conversation state. At the end the
trackers' records, the file description and the findings become one frozen
``Analysis``. Memory follows the live conversations (issue 6): finished
records past a threshold go to a temporary file and come back as read-only
sequences, and idle TCP conversations are retired to it (analysis/store.py,
``TcpTracker``), so a capture twice as long does not need twice the memory.
With ``--jobs`` a child process's spilled lists reach the parent as
references to its temporary files (store.py, ``spilled_by_reference``).

``analyses_in_order`` runs several files and yields each file's
``Analysis`` in the order of the paths given, for the caller to write and
release before the next: memory is bounded by the largest file, not by the
number of files. It first opens every file as a capture (the reader's header
check, no pass), so that a file that is not one is reported before anything
is written. With ``jobs > 1`` the files of ``PROCESS_MIN_BYTES`` or more go
to forked child processes (forked.py; the work is CPU-bound Python, so
threads would not help), at most ``jobs`` at a time, and smaller ones are
analysed here in their turn: a child whose file is done waits with its
result until the files before it have been yielded, so finished results do
not pile up here. One file with ``jobs > 1`` is split by conversation instead
(shares.py). ``analyze_files`` is the same as a list. Errors (a file that is
not a capture, a missing file) are ``NetdiagError`` subclasses raised by the
reader and propagate unchanged, from the child processes too.
"""

from __future__ import annotations

import gc
import os
import stat
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager

from netdiag.analysis.decode import Decoder
from netdiag.analysis.findings import build_findings, stream_findings
from netdiag.analysis.icmp import ArpTracker, IcmpTracker, summarize
from netdiag.analysis.model import Analysis, IcmpError, StreamFindings, TcpStream
from netdiag.analysis.reader import CaptureReader
from netdiag.analysis.scan import scan_frames
from netdiag.analysis.tcp import AckRttTotals, TcpTracker

# Several files with --jobs: one this big or bigger goes to a child process of
# its own; a smaller one is analysed here (a child's fork and hand-over cost
# more than it saves: 20 files of 2.3 MB took 0.59 s in children, 0.50 s
# here; of 8.2 MB, 0.97 s against 1.35 s).
PROCESS_MIN_BYTES = 4 << 20


def analyze_file(path: str | os.PathLike[str], plot_data: bool = True, shares: int = 1) -> Analysis:
    """Analyze one pcap/pcapng file in a single streaming pass.

    ``plot_data=False`` leaves the streams' ``seq_points`` and ``rtt_samples``
    empty (only the HTML plots read them; the JSON document does not).
    ``shares > 1`` splits the conversations over that many processes
    (analysis/shares.py); the result is the same.
    """
    if shares > 1:
        from netdiag.analysis.forked import NoProcessToSpare
        from netdiag.analysis.shares import analyze_in_shares

        try:
            return analyze_in_shares(path, shares, plot_data)
        except NoProcessToSpare:
            pass  # the kernel would not fork: the same analysis in this one process
    with collection_paused():
        file_pass = FilePass(path, plot_data)
        streams = file_pass.tcp.finish()
        tcp = file_pass.tcp
        return file_pass.analysis(
            streams, tcp.judgements, tcp.totals(), tcp.ack_rtt_totals(), file_pass.icmp.errors()
        )


@contextmanager
def collection_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a pass, back as it was after.

    The pass makes millions of short-lived, acyclic objects; the cyclic GC
    would walk every live conversation's state again and again for nothing
    (6-10 % of the time at 1M packets, more as conversations pile up).
    Reference counting still frees everything.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc_was_enabled:
            gc.enable()


class FilePass:
    """The trackers after one pass over a file (of one share of its conversations).

    ``analysis`` assembles the ``Analysis`` from them and the TCP results,
    which the caller gives: those of this pass's tracker, or the shares'
    merged (shares.py).
    """

    def __init__(
        self, path: str | os.PathLike[str], plot_data: bool, share: int = 0, shares: int = 1
    ) -> None:
        self.decoder = Decoder()
        # Each stream's findings are made as its record is finished.
        self.tcp = TcpTracker(plot_data, share=share, shares=shares, judge=stream_findings)
        # Only the first share's echoes are kept (shares.py): the others skip them.
        self.icmp = IcmpTracker(track_echoes=share == 0)
        self.arp = ArpTracker()
        with CaptureReader(path) as reader:
            self.origin_ns = scan_frames(reader, self.decoder, self.tcp, self.icmp, self.arp)
            self.info = reader.info()

    def analysis(
        self,
        streams: Sequence[TcpStream],
        judged_streams: Sequence[StreamFindings | None],
        totals: dict[str, int],
        ack_rtt: AckRttTotals,
        errors: Sequence[IcmpError],
    ) -> Analysis:
        """The records and findings of the file, ``streams`` and the rest as given
        (``judged_streams``: each stream's ``stream_findings``, in stream order)."""
        icmp = self.icmp
        echoes = icmp.echoes(self.origin_ns or 0)
        summaries = summarize(echoes)
        unmatched = icmp.unmatched_replies()
        more_unmatched = icmp.more_unmatched_replies()
        findings = build_findings(
            self.info,
            streams,
            echoes,
            summaries,
            errors,
            self.arp.questions(),
            unmatched_replies=unmatched,
            judged_streams=judged_streams,
            more_unmatched_replies=more_unmatched,
        )
        return Analysis(
            file=self.info,
            decode=self.decoder.counts(),
            icmp_echo=echoes,
            icmp_echo_summary=summaries,
            icmp_errors=errors,
            icmp_unmatched_replies=sum(replies.count for replies in unmatched)
            + (more_unmatched.count if more_unmatched else 0),
            tcp=streams,
            findings=findings,
            tcp_analysis_totals=totals,
            ack_rtt_count=ack_rtt.count,
            ack_rtt_min_ms=ack_rtt.min_ms,
            ack_rtt_median_ms=ack_rtt.median_ms,
            ack_rtt_max_ms=ack_rtt.max_ms,
        )


def analyze_files(
    paths: Sequence[str | os.PathLike[str]], jobs: int = 1, plot_data: bool = True
) -> list[Analysis]:
    """Every file's ``Analysis``, in order, all at once (see ``analyses_in_order``)."""
    return list(analyses_in_order(paths, jobs, plot_data))


def analyses_in_order(
    paths: Sequence[str | os.PathLike[str]], jobs: int = 1, plot_data: bool = True
) -> Generator[Analysis, None, None]:
    """Analyze several files and yield their analyses in order, one at a time.

    ``jobs > 1``: one file is split by conversation over that many processes
    when it is big enough for that to pay (shares.py); of several files, each
    one of ``PROCESS_MIN_BYTES`` or more goes to a child process of its own,
    ``jobs`` of them at a time, and smaller ones are analysed here. Every file
    is opened as a capture first (``check_captures``), before the first
    analysis. Close the iterator when done with it (``contextlib.closing``):
    that ends the child processes still working (on an error or a Ctrl-C in
    the caller).
    """
    check_captures(paths)
    if len(paths) == 1 and jobs > 1:
        from netdiag.analysis.shares import shares_for

        yield analyze_file(paths[0], plot_data, shares_for(paths[0], jobs))
    elif jobs <= 1 or len(paths) <= 1:
        for path in paths:
            yield analyze_file(path, plot_data)
    else:
        yield from _in_child_processes(paths, jobs, plot_data)


def check_captures(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Raise the reader's error for the first path that does not open as a capture.

    Only the header is read. A path that is not a regular file (a pipe) is
    left to its analysis: reading its head here would take it from the pass.
    """
    for path in paths:
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except OSError:
            regular = True  # missing, unreadable: the reader says so in its words
        if regular:
            with CaptureReader(path):
                pass


def _in_child_processes(
    paths: Sequence[str | os.PathLike[str]], jobs: int, plot_data: bool
) -> Iterator[Analysis]:
    """``analyze_file`` of each path, in order: in a forked child, ``jobs`` children
    at a time, for files of ``PROCESS_MIN_BYTES`` or more; smaller ones here.

    The next files' children start as soon as a result is taken, before it is
    yielded, so ``jobs`` files are being analysed while the caller writes one.
    A small file is analysed here when its turn comes, while the children
    work on the bigger ones after it: a child costs a fork and sending the
    result back (a few ms), more than it saves on a file that small.
    """
    from netdiag.analysis.forked import ForkedCall, NoProcessToSpare

    waiting = deque(paths)  # not queued yet
    # In file order: a child analysing the file, or the path of one analysed here.
    queue: deque[ForkedCall[Analysis] | str | os.PathLike[str]] = deque()
    children = 0  # of the queue's items

    def queue_more() -> None:
        nonlocal children
        while waiting and children < jobs:
            path = waiting.popleft()
            if _worth_a_process(path):
                try:
                    child = ForkedCall(
                        analyze_file, (path, plot_data), f"analysing {os.fspath(path)}"
                    )
                except NoProcessToSpare:
                    queue.append(path)  # analysed here in its turn
                    continue
                queue.append(child)  # ended in the finally below, started or not
                children += 1
                try:
                    child.start()
                except NoProcessToSpare:
                    queue[-1] = path  # analysed here in its turn, as a small file is
                    children -= 1
                    child.end()
            else:
                queue.append(path)

    try:
        queue_more()
        while queue:
            item = queue.popleft()
            if isinstance(item, ForkedCall):
                children -= 1
                try:
                    analysis = item.result()
                finally:
                    item.end()
                queue_more()
            else:
                # The children queued after it work while this one is analysed.
                analysis = analyze_file(item, plot_data)
            yield analysis
            del analysis  # released while the next file is awaited
    finally:
        for item in queue:
            if isinstance(item, ForkedCall):
                item.end()


def _worth_a_process(path: str | os.PathLike[str]) -> bool:
    try:
        return os.stat(path).st_size >= PROCESS_MIN_BYTES
    except OSError:
        return False  # analysed here, where the reader reports the problem
