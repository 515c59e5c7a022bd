"""``netdiag hexdump FILE [--frame N]... [--filter EXPR] [--link/-XX]``.

Prints each chosen frame as ``tcpdump -X`` would: a one-line summary (netdiag's
own, in tcpdump's style, prefixed with the frame number) and the hex lines,
byte-identical to tcpdump's (``-XX`` with ``--link``). Plain ``stdout`` writes,
not rich: tabs and columns must come out exactly. Frames asked for with
``--frame`` that the file does not have are a usage error, reported after the
frames that exist have been printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from netdiag.errors import ExitStatus, UsageError


def execute(file: Path, frames: list[int], filter_expression: str | None, link_layer: bool) -> int:
    from netdiag.analysis.filter import compile_filter
    from netdiag.report.hexdump import format_frame, iter_decoded

    predicate = compile_filter(filter_expression) if filter_expression is not None else None
    if not file.is_file():
        raise UsageError(
            f"{file} is not a file" if file.exists() else f"{file} does not exist",
            "give the path of a pcap or pcapng capture",
        )
    wanted = set(frames)
    bad = sorted(number for number in wanted if number < 1)
    if bad:
        raise UsageError(f"frame numbers start at 1 (got {bad[0]})")
    last_wanted = max(wanted, default=0)
    seen: set[int] = set()
    count = 0
    # `netdiag hexdump big.pcap | head`: the reader going away ends this with
    # BrokenPipeError, which cli.py turns into a quiet exit 0.
    for frame, packet in iter_decoded(file):
        count = frame.number
        if wanted and frame.number not in wanted:
            if frame.number > last_wanted:
                break
            continue
        seen.add(frame.number)
        if predicate is None or predicate(packet):
            sys.stdout.write(format_frame(frame, packet, link_layer=link_layer))
    missing = sorted(wanted - seen)
    if missing:
        raise UsageError(
            f"{file} has no frame {', '.join(str(number) for number in missing)}"
            f" (it has {count} frames)",
            "frame numbers are 1-based positions in the file, as Wireshark shows them",
        )
    return int(ExitStatus.OK)
