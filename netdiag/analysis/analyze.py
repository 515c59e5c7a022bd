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
With ``--jobs`` each worker's spilled lists travel back as their encoded rows.

``analyze_files`` runs several files, in a process pool when ``jobs > 1``
(the work is CPU-bound Python, so threads would not help). Results come back
in the order of the paths given. Errors (a file that is not a capture, a
missing file) are ``NetdiagError`` subclasses raised by the reader and
propagate unchanged.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from netdiag.analysis.decode import Decoder
from netdiag.analysis.findings import build_findings, stream_findings
from netdiag.analysis.icmp import ArpTracker, IcmpTracker, summarize
from netdiag.analysis.model import Analysis, IcmpError, StreamFindings, TcpStream
from netdiag.analysis.reader import CaptureReader
from netdiag.analysis.scan import scan_frames
from netdiag.analysis.tcp import AckRttTotals, TcpTracker


def analyze_file(path: str | os.PathLike[str], plot_data: bool = True, shares: int = 1) -> Analysis:
    """Analyze one pcap/pcapng file in a single streaming pass.

    ``plot_data=False`` leaves the streams' ``seq_points`` and ``rtt_samples``
    empty (only the HTML plots read them; the JSON document does not).
    ``shares > 1`` splits the conversations over that many processes
    (analysis/shares.py); the result is the same.
    """
    if shares > 1:
        from netdiag.analysis.shares import analyze_in_shares

        return analyze_in_shares(path, shares, plot_data)
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
    """Analyze several files, in order; ``jobs > 1`` spreads them over processes.

    One file is split by conversation over ``jobs`` processes when it is big
    enough for that to pay (shares.py); several files go one per process.
    """
    if len(paths) == 1 and jobs > 1:
        from netdiag.analysis.shares import shares_for

        return [analyze_file(paths[0], plot_data, shares_for(paths[0], jobs))]
    if jobs <= 1 or len(paths) <= 1:
        return [analyze_file(path, plot_data) for path in paths]
    with ProcessPoolExecutor(max_workers=min(jobs, len(paths))) as pool:
        return list(pool.map(analyze_file, paths, [plot_data] * len(paths)))
