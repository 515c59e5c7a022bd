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
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from netdiag.analysis.decode import Decoder
from netdiag.analysis.findings import build_findings
from netdiag.analysis.icmp import ArpTracker, IcmpTracker, summarize
from netdiag.analysis.model import Analysis
from netdiag.analysis.reader import CaptureReader
from netdiag.analysis.scan import scan_frames
from netdiag.analysis.tcp import TcpTracker


def analyze_file(path: str | os.PathLike[str], plot_data: bool = True) -> Analysis:
    """Analyze one pcap/pcapng file in a single streaming pass.

    ``plot_data=False`` leaves the streams' ``seq_points`` and ``rtt_samples``
    empty (only the HTML plots read them; the JSON document does not).
    """
    decoder = Decoder()
    tcp = TcpTracker(plot_data)
    icmp = IcmpTracker()
    arp = ArpTracker()
    # The pass makes millions of short-lived, acyclic objects; the cyclic GC
    # would walk every live conversation's state again and again for nothing
    # (6-10 % of the time at 1M packets, more as conversations pile up).
    # Reference counting still frees everything; collection resumes after.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _analyze_pass(path, decoder, tcp, icmp, arp)
    finally:
        if gc_was_enabled:
            gc.enable()


def _analyze_pass(
    path: str | os.PathLike[str],
    decoder: Decoder,
    tcp: TcpTracker,
    icmp: IcmpTracker,
    arp: ArpTracker,
) -> Analysis:
    """The pass itself: every frame to its tracker, then the records and findings."""
    with CaptureReader(path) as reader:
        origin_ns = scan_frames(reader, decoder, tcp, icmp, arp)
        info = reader.info()
    streams = tcp.finish()
    echoes = icmp.echoes(origin_ns or 0)
    summaries = summarize(echoes)
    errors = icmp.errors()
    unmatched = icmp.unmatched_replies()
    findings = build_findings(
        info, streams, echoes, summaries, errors, arp.questions(), unmatched_replies=unmatched
    )
    totals = tcp.totals()
    ack_rtt = tcp.ack_rtt_totals()
    return Analysis(
        file=info,
        decode=decoder.counts(),
        icmp_echo=echoes,
        icmp_echo_summary=summaries,
        icmp_errors=errors,
        icmp_unmatched_replies=sum(replies.count for replies in unmatched),
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
    """Analyze several files, in order; ``jobs > 1`` spreads them over processes."""
    if jobs <= 1 or len(paths) <= 1:
        return [analyze_file(path, plot_data) for path in paths]
    with ProcessPoolExecutor(max_workers=min(jobs, len(paths))) as pool:
        return list(pool.map(analyze_file, paths, [plot_data] * len(paths)))
