"""One call made in a forked child process, its result sent back to the parent.

``netdiag analyze --jobs N`` analyses several files each in a child of its
own (analyze.py, ``analyses_in_order``), a few at a time, and one big file's
shares of conversations in children too (shares.py). Not a
``ProcessPoolExecutor``: the child must ignore SIGINT (netdiag/children.py:
the parent answers Ctrl-C and ends its children by pid, SIGTERM), and
nothing may run beside the analysis in the parent (a pool runs a management
thread there, which unpickles finished results as they come, however far
ahead of the writing; with it, a Ctrl-C once made the compiled pass abort,
"fatal: out of memory", in tests).

The child's result comes back through a pipe, its spilled records as
references to the child's anonymous files (store.py,
``spilled_by_reference``), opened through ``/proc`` by the parent before the
child is told it may exit. A child whose result is ready waits in ``send``
(the pipe is full) until the parent asks for it: what is finished early stays
in the child, not in the parent.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

from netdiag.analysis.store import spilled_by_reference
from netdiag.children import ignore_interrupts, interrupts_held
from netdiag.errors import AnalysisProcessError

R = TypeVar("R")


class ForkedCall(Generic[R]):
    """``function(*arguments)`` in a forked child; ``result`` waits for its value.

    ``what`` says what the child does ("analysing a.pcap"), for the error
    raised when it ends without a result (killed, out of memory). Always
    ``end`` it, in a ``finally``.
    """

    def __init__(self, function: Callable[..., R], arguments: tuple[Any, ...], what: str) -> None:
        # fork: the child starts with every module this process has loaded.
        context = multiprocessing.get_context("fork")
        # Duplex: the child waits for the parent's word before it exits (below).
        self._receiver, sender = context.Pipe(duplex=True)
        self._sender = sender
        self._what = what
        self._answered = False
        self._process = context.Process(
            target=_forked_main, args=(sender, self._receiver, function, arguments), daemon=True
        )

    def start(self) -> None:
        # Known before it starts (the caller holds this object in its
        # try/finally): a Ctrl-C delivered as it starts still ends it.
        with interrupts_held():
            self._process.start()
        self._sender.close()

    def result(self) -> R:
        """The child's return value, or the exception it raised, raised here."""
        try:
            outcome, value = self._receiver.recv()
        except EOFError:
            self._process.join()
            raise AnalysisProcessError(
                f"a process {self._what} ended "
                f"(exit code {self._process.exitcode}) without a result",
                "run again with --jobs 1 (one process); if it ends too, the "
                "machine may be out of memory",
            ) from None
        if outcome == "error":
            raise value
        # The child's spilled records came as references to its files, opened
        # here as they were unpickled: now it may go (if it is gone already,
        # killed after sending, there is no one to tell and nothing is lost).
        with contextlib.suppress(OSError):
            self._receiver.send("done")
        self._answered = True  # it exits by itself now
        return value  # type: ignore[no-any-return]

    def end(self) -> None:
        """Wait for the child, or end it (SIGTERM, by its pid) if it is still working."""
        self._receiver.close()
        self._sender.close()
        if self._process.pid is None:
            return  # never started
        if not self._answered and self._process.is_alive():
            self._process.terminate()
        self._process.join()

    @property
    def pid(self) -> int | None:
        """The child's process id once started (None before)."""
        return self._process.pid

    def __repr__(self) -> str:
        return f"ForkedCall({self._what!r}, pid={self._process.pid})"


def _forked_main(
    sender: Connection,
    receiver: Connection,
    function: Callable[..., object],
    arguments: tuple[Any, ...],
) -> None:
    """The child: the call, its result (or error) sent to the parent."""
    ignore_interrupts()  # the parent answers Ctrl-C
    # The parent's end, inherited: closed, so that sending fails (instead of
    # waiting forever) should the parent be gone.
    receiver.close()
    outcome: tuple[str, object]
    try:
        outcome = ("result", function(*arguments))
    except Exception as error:  # sent to the parent, raised there at the edge
        outcome = ("error", error)
    try:
        with spilled_by_reference():
            sender.send(outcome)
        sender.recv()  # until the parent has opened the files (or is gone: EOFError)
    except (OSError, EOFError):
        pass  # the parent stopped listening (interrupted): no one to tell
    finally:
        sender.close()
