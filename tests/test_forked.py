"""A call in a forked child (analysis/forked.py, ``ForkedCall``): how its failures
reach the parent.

Real children, forked here: an error raised in the child is raised in the
parent with the child's traceback as its cause (what ``--debug`` shows); a
result or an error that does not pickle is reported as such, not as a child
that died; a child that dies gets advice that fits every use of ``ForkedCall``
(analysing, writing report.json). No child outlives its test.
"""

from __future__ import annotations

import os
import threading
import traceback
from typing import Any

import pytest

from netdiag.analysis.forked import ChildTracebackError, ForkedCall
from netdiag.errors import AnalysisProcessError, OutputError
from tests.test_report_in_two import assert_gone


def outcome_of(function: Any, what: str = "testing a call") -> BaseException:
    """The exception ``ForkedCall(function, (), what).result()`` raises here."""
    call: ForkedCall[object] = ForkedCall(function, (), what)
    try:
        call.start()
        with pytest.raises(BaseException) as raised:
            call.result()
    finally:
        call.end()
    assert_gone(call.pid)
    return raised.value


def _write_the_spill_file() -> None:
    try:
        raise OSError(28, "No space left on device")
    except OSError as error:
        raise OutputError("cannot spill", "free some space") from error


def fails_two_calls_down() -> None:
    _write_the_spill_file()


def test_an_error_in_the_child_carries_the_child_traceback() -> None:
    error = outcome_of(fails_two_calls_down)
    assert isinstance(error, OutputError)
    assert (error.message, error.advice) == ("cannot spill", "free some space")
    cause = error.__cause__
    assert isinstance(cause, ChildTracebackError)
    # Where in the child, and the error it was raised from there.
    assert "in fails_two_calls_down" in cause.text
    assert "in _write_the_spill_file" in cause.text
    assert "OSError: [Errno 28] No space left on device" in cause.text
    # What --debug prints: the child's frames above the parent's.
    printed = "".join(traceback.format_exception(error))
    assert "in _write_the_spill_file" in printed
    assert printed.index("_write_the_spill_file") < printed.index("in result")


def returns_a_lock() -> object:
    return threading.Lock()


def test_a_result_that_does_not_pickle_is_an_error_not_a_dead_child() -> None:
    error = outcome_of(returns_a_lock, "analysing a.pcap")
    assert isinstance(error, AnalysisProcessError)
    assert error.message == (
        "a process analysing a.pcap could not send back its result (lock): it does not "
        "pickle (TypeError: cannot pickle '_thread.lock' object)"
    )
    assert error.advice is not None and "--jobs 1" in error.advice
    assert "exit code" not in error.message  # not taken for a child that died
    assert isinstance(error.__cause__, ChildTracebackError)
    assert "TypeError: cannot pickle '_thread.lock' object" in error.__cause__.text


def raises_an_error_holding_a_lock() -> None:
    error = ValueError("boom")
    error.lock = threading.Lock()  # type: ignore[attr-defined]
    raise error


def test_an_error_that_does_not_pickle_is_told_with_its_own_message() -> None:
    error = outcome_of(raises_an_error_holding_a_lock, "analysing a.pcap")
    assert isinstance(error, AnalysisProcessError)
    assert error.message.startswith(
        "a process analysing a.pcap could not send back its error (ValueError: boom), "
        "which does not pickle (TypeError: cannot pickle '_thread.lock' object)"
    )
    assert isinstance(error.__cause__, ChildTracebackError)
    assert "in raises_an_error_holding_a_lock" in error.__cause__.text  # where it was raised


def dies() -> None:
    os._exit(9)  # as the OOM killer would leave it: nothing sent


@pytest.mark.parametrize("what", ["analysing a.pcap", "writing /tmp/out/report.json"])
def test_a_child_that_dies_is_told_in_words_that_fit_what_it_did(what: str) -> None:
    error = outcome_of(dies, what)
    assert isinstance(error, AnalysisProcessError)
    assert error.message == f"a process {what} ended (exit code 9) without a result"
    # Every ForkedCall is --jobs work that --jobs 1 does in this process.
    assert error.advice == (
        "run again with --jobs 1 (no child processes); if that fails too, "
        "the machine may be out of memory"
    )
    assert error.__cause__ is None  # no traceback: the child said nothing


class NeedsTwoArgumentsError(Exception):
    """Pickles (as its args) but does not unpickle: its __init__ wants two."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} {second}")


def raises_an_error_that_does_not_unpickle() -> None:
    raise NeedsTwoArgumentsError("half", "way")


def test_an_error_that_does_not_unpickle_here_is_an_error_not_a_traceback() -> None:
    error = outcome_of(raises_an_error_that_does_not_unpickle, "analysing a.pcap")
    assert isinstance(error, AnalysisProcessError)
    assert error.message.startswith(
        "a process analysing a.pcap sent back what cannot be read here: "
    )
    assert isinstance(error.__cause__, TypeError)
