"""One call made in a forked child process, its result sent back to the parent.

``netdiag analyze --jobs N`` analyses several files each in a child of its
own (analyze.py, ``analyses_in_order``), a few at a time (files under
``PROCESS_MIN_BYTES`` are analysed in the parent), and one big file's shares
of conversations in children too (shares.py); a big capture's report writes
its ``report.json`` in a child while the parent draws the pages
(report/output.py, ``TextWrittenInChild``). Only ``--jobs`` above 1 forks:
with ``--jobs 1`` all of it is done in one process. Not a
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

An error the call raises is raised in the parent, its traceback in the child
attached as its cause (``ChildTracebackError``, as ``concurrent.futures`` does), so
that ``--debug`` shows where in the child it failed. A result (or error) that
does not pickle comes back as an ``AnalysisProcessError`` saying so, with the
child's traceback, instead of a child that dies without a word.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any, Generic, TypeVar

from netdiag.analysis.store import spilled_by_reference
from netdiag.children import ignore_interrupts, interrupts_held
from netdiag.errors import AnalysisProcessError

R = TypeVar("R")

# The one advice for a child that failed: every ForkedCall exists only with
# --jobs above 1, and --jobs 1 does the same work in one process.
ONE_PROCESS_ADVICE = (
    "run again with --jobs 1 (no child processes); if that fails too, "
    "the machine may be out of memory"
)


class NoProcessToSpare(Exception):  # noqa: N818 (a condition the callers handle, not an error)
    """The kernel would not make the child (EAGAIN: a process limit; ENOMEM), or
    its pipe (EMFILE). Every caller then does the same work in its own process."""


class ChildTracebackError(Exception):
    """The traceback of a failure in a child, as text: the cause of the error
    raised for it in the parent (``--debug`` prints it above the parent's)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class ForkedCall(Generic[R]):
    """``function(*arguments)`` in a forked child; ``result`` waits for its value.

    ``what`` says what the child does ("analysing a.pcap", "writing
    report.json"), for the error raised when it ends without a result (killed,
    out of memory) or cannot send it. Always ``end`` it, in a ``finally``.
    """

    def __init__(self, function: Callable[..., R], arguments: tuple[Any, ...], what: str) -> None:
        # fork: the child starts with every module this process has loaded.
        context = multiprocessing.get_context("fork")
        # Duplex: the child waits for the parent's word before it exits (below).
        try:
            self._receiver, sender = context.Pipe(duplex=True)
        except OSError as error:
            raise NoProcessToSpare(str(error)) from error
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
            try:
                self._process.start()
            except OSError as error:
                raise NoProcessToSpare(str(error)) from error
        self._sender.close()

    def result(self) -> R:
        """The child's return value, or the exception it raised, raised here
        (caused by a ``ChildTracebackError``: where in the child it was raised)."""
        try:
            outcome, value, child_traceback = self._receiver.recv()
        except EOFError:
            self._process.join()
            raise AnalysisProcessError(
                f"a process {self._what} ended "
                f"(exit code {self._process.exitcode}) without a result",
                ONE_PROCESS_ADVICE,
            ) from None
        except Exception as error:  # it pickled there but does not unpickle here
            raise AnalysisProcessError(
                f"a process {self._what} sent back what cannot be read here: {error}",
                ONE_PROCESS_ADVICE,
            ) from error
        if outcome == "error":
            raise value from ChildTracebackError(child_traceback)
        if outcome == "unsent":
            raise AnalysisProcessError(
                f"a process {self._what} could not send back {value}", ONE_PROCESS_ADVICE
            ) from ChildTracebackError(child_traceback)
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
    """The child: the call, its result (or error) sent to the parent as
    (outcome, value, traceback text): ("result", value, ""), ("error", the
    exception, its traceback) or ("unsent", what did not pickle and why, the
    traceback of the pickling)."""
    ignore_interrupts()  # the parent answers Ctrl-C
    # The parent's end, inherited: closed, so that sending fails (instead of
    # waiting forever) should the parent be gone.
    receiver.close()
    outcome: tuple[str, object, str]
    try:
        outcome = ("result", function(*arguments), "")
    except Exception as error:  # sent to the parent, raised there at the edge
        outcome = ("error", error, "".join(traceback.format_exception(error)))
    # Pickled here, apart from the sending: a value that does not pickle is
    # told to the parent (the pipe is still clean), not a child dying with it.
    with spilled_by_reference():
        try:
            data = ForkingPickler.dumps(outcome)
        except Exception as failure:
            data = ForkingPickler.dumps(_unsent(outcome, failure))
    try:
        sender.send_bytes(data)
        sender.recv()  # until the parent has opened the files (or is gone: EOFError)
    except (OSError, EOFError):
        pass  # the parent stopped listening (interrupted): no one to tell
    finally:
        sender.close()


def _unsent(outcome: tuple[str, object, str], failure: Exception) -> tuple[str, str, str]:
    """The message that replaces an ``outcome`` that does not pickle: plain text."""
    kind, value, child_traceback = outcome
    why = _described(failure)
    if kind == "error":
        # The error the call raised matters more than why it could not travel.
        return (
            "unsent",
            f"its error ({_described(value)}), which does not pickle ({why})",
            child_traceback,
        )
    failure_traceback = "".join(traceback.format_exception(failure))
    return (
        "unsent",
        f"its result ({type(value).__name__}): it does not pickle ({why})",
        failure_traceback,
    )


def _described(error: object) -> str:
    return f"{type(error).__name__}: {error}"
