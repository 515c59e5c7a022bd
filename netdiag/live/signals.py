"""Signals during a run: SIGTERM becomes an exception; teardown is not interruptible.

``netdiag run`` must tear down on Ctrl-C (exit 130) and on SIGTERM (exit 143).
Python turns SIGINT into ``KeyboardInterrupt``; ``terminate_as_exception``
makes SIGTERM raise ``Terminated`` the same way, so one ``finally`` handles
both. Only the process that installed the handler raises: a forked helper
(pyroute2 forks some) that inherited it just exits, never unwinding through
the parent's ``finally`` blocks into a second teardown.

``deferred_signals`` holds SIGINT/SIGTERM back while teardown runs (a second
Ctrl-C must not leave half the namespaces behind) and re-delivers them after.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class Terminated(BaseException):  # named like KeyboardInterrupt, its sibling
    """SIGTERM arrived; raised in the main thread of the process that asked for it."""


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def on_terminate(_signal: int, _frame: FrameType | None) -> None:
        if os.getpid() != owner:
            os._exit(128 + signal.SIGTERM)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be changed from the main thread
        return
    pending: list[int] = []

    def remember(number: int, _frame: FrameType | None) -> None:
        pending.append(number)

    previous: dict[signal.Signals, Any] = {}
    for deferred in (signal.SIGINT, signal.SIGTERM):
        previous[deferred] = signal.signal(deferred, remember)
    try:
        yield
    finally:
        for deferred, handler in previous.items():
            signal.signal(deferred, handler)
        for number in dict.fromkeys(pending):
            signal.raise_signal(number)
