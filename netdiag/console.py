"""The rich console the commands print their terminal output through.

Rich answers a closed stdout pipe (``netdiag analyze big.pcap | head``) by
exiting 1 itself; 1 is the contract's "an expected outcome did not hold".
This console raises ``BrokenPipeError`` instead, which cli.py turns into a
quiet exit 0, as for the JSON and the hex dumps.
"""

from __future__ import annotations

from rich.console import Console


class PipeConsole(Console):
    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more from this console
        raise BrokenPipeError
