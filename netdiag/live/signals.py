"""Signals during a run: SIGTERM becomes an exception; teardown is not interruptible.

``netdiag run`` must tear down on Ctrl-C (exit 130) and on SIGTERM (exit 143).
Python turns SIGINT into ``KeyboardInterrupt``; ``terminate_as_exception``
makes SIGTERM raise ``Terminated`` the same way, so one ``finally`` handles
both. Only the process that installed the handler raises: a forked helper
(pyroute2 forks some) that inherited it just exits, never unwinding through
the parent's ``finally`` blocks into a second teardown.

Python raises a handler's exception wherever the main thread happens to be,
and one raised inside a weakref callback or a ``__del__`` (the garbage
collector runs them at any allocation) is printed as "Exception ignored in"
and lost: the run went on to the end and exited 0 (seen in CI, one Ctrl-C in
a few hundred). So the handlers also note the signal, and
``raise_if_signalled`` raises it again where the run can take it: between
steps, and in waiting loops.

pyroute2 runs each netlink request in an asyncio event loop, and asyncio takes
an exception other than KeyboardInterrupt raised in one of its callbacks for
that callback's own error: it logs "Exception in callback", never resumes the
request, and the run hung (SIGTERM, seen in repeated runs on a loaded
machine); raised in the loop's poll, the exception left pyroute2's generators
half-run, printing tracebacks when the loop closed. So while an event loop
runs, a signal is only noted, and raised by ``raise_if_signalled`` once the
request is done.

``deferred_signals`` holds SIGINT/SIGTERM back while teardown runs (a second
Ctrl-C must not leave half the namespaces behind) and re-delivers them after.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class Terminated(BaseException):  # named like KeyboardInterrupt, its sibling
    """SIGTERM arrived; raised in the main thread of the process that asked for it."""


# Signals taken by terminate_as_exception's handlers and not yet raised by
# raise_if_signalled: each one's exception may have been swallowed.
_signalled: list[int] = []


def _exception_for(number: int) -> BaseException:
    return KeyboardInterrupt() if number == signal.SIGINT else Terminated()


def _inside_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def raise_if_signalled() -> None:
    """Raise the exception of a signal that arrived since the last call, in case
    it was swallowed where it was first raised (nothing happens otherwise: a
    run that took the exception has left its steps for teardown)."""
    if _signalled:
        number = _signalled[0]
        _signalled.clear()
        raise _exception_for(number)


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` and SIGINT ``KeyboardInterrupt``, each noted
    for ``raise_if_signalled`` too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def on_signal(number: int, _frame: FrameType | None) -> None:
        if os.getpid() != owner:
            os._exit(128 + number)
        _signalled.append(number)
        if _inside_event_loop():
            return  # raised by raise_if_signalled, outside the loop (module docstring)
        raise _exception_for(number)

    previous_hook = sys.unraisablehook

    def quiet_when_noted(unraisable: Any) -> None:
        # The swallowed exception of a noted signal: raised again later, not
        # printed now as "Exception ignored in ... Traceback".
        if not (_signalled and isinstance(unraisable.exc_value, KeyboardInterrupt | Terminated)):
            previous_hook(unraisable)

    previous = {
        handled: signal.signal(handled, on_signal) for handled in (signal.SIGINT, signal.SIGTERM)
    }
    sys.unraisablehook = quiet_when_noted
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for handled, handler in previous.items():
            signal.signal(handled, handler)
        _signalled.clear()


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
