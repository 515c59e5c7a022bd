"""Forked helper processes that leave Ctrl-C to their parent.

``netdiag analyze`` forks helpers to analyse (analysis/forked.py: the shares
of one big file, or several files) and to write the JSON
(report/jsonstream.py). A terminal's Ctrl-C sends SIGINT
to the whole process group; a helper must not turn it into a
KeyboardInterrupt of its own (in the compiled analysis modules, mypyc can
only treat an exception where it assumed none as fatal, and aborts): the
parent alone answers it, and ends its children by pid (SIGTERM). SIGINT is
blocked across the fork, so that the child ignores it from its first
instruction on, and is delivered to the parent right after the fork: the
parent must already know the child's pid by then (fork inside its
``try``/``finally`` that ends the child).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_INTERRUPT = {signal.SIGINT}


@contextmanager
def interrupts_held() -> Iterator[None]:
    """SIGINT kept pending in this thread (around a fork), delivered at the end."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPT)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _INTERRUPT)


def ignore_interrupts() -> None:
    """The first thing a child forked under ``interrupts_held`` does: SIGINT
    ignored, and SIGTERM (how the parent ends it) back to its default, fatal
    at once whatever the child is doing (a handler it inherited could leave
    it blocked writing to a pipe nobody reads)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _INTERRUPT)
