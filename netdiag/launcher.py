"""The console script's entry point: Ctrl-C while the command line is still loading.

``netdiag.cli`` maps an interrupt to exit 130 and ``netdiag: interrupted``,
but only once it is imported: typer, click and rich take ~50 ms to load, and a
Ctrl-C in that window used to end in Python's own KeyboardInterrupt traceback.
This module imports nothing but ``sys`` before it guards that import, so only
the interpreter's own start-up (before any of netdiag runs) is left unguarded.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130  # ExitStatus.INTERRUPTED, not imported: that import is what is guarded


def main() -> None:
    try:
        from netdiag.cli import main as cli_main
    except KeyboardInterrupt:
        print("netdiag: interrupted", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    cli_main()
