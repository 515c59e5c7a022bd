"""Errors that cross layers, and the exit codes they map to.

Lower layers raise a ``NetdiagError`` subclass (``raise ... from e``) and never
print or exit; only ``netdiag.cli`` catches them, once, and turns them into
one ``netdiag: error:`` line, an optional advice line and the contract's exit
code (see ``shared/spec/contract.md``).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitStatus(IntEnum):
    """Exit codes of the CLI contract."""

    OK = 0
    EXPECTATION_FAILED = 1  # an expected outcome did not hold / not reachable
    USAGE = 2  # bad usage or input (unreadable capture, bad topology file, ...)
    ENVIRONMENT = 3  # not root, kernel feature missing
    SIGTERM = 143
    INTERRUPTED = 130


class NetdiagError(Exception):
    """Base of every error netdiag reports to a user.

    ``advice`` is one optional line telling the user what to do next.
    """

    exit_status: ExitStatus = ExitStatus.USAGE

    def __init__(self, message: str, advice: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.advice = advice

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross processes (analyze --jobs): keep the advice and any
        # attribute a subclass adds, whatever its __init__ takes.
        return (_restore_error, (type(self), self.message, dict(self.__dict__)))


def _restore_error(cls: type[NetdiagError], message: str, state: dict[str, Any]) -> NetdiagError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class UsageError(NetdiagError):
    """Bad command-line usage or a bad value given by the user."""

    exit_status = ExitStatus.USAGE


class InputError(NetdiagError):
    """An input file that cannot be read or understood (capture, topology)."""

    exit_status = ExitStatus.USAGE


class CaptureFormatError(InputError):
    """A file that is not a pcap/pcapng capture at all."""


class TopologyError(InputError):
    """A topology file or spec that fails validation.

    ``subject`` names the list entry at fault when the problem is only visible
    across the whole topology (``("links", 2)``, ``("routes", 0)``), so that a
    file loader can point at that entry's line rather than the file's top.
    """

    def __init__(
        self, message: str, advice: str | None = None, subject: tuple[str, int] | None = None
    ) -> None:
        super().__init__(message, advice)
        self.subject = subject


class UnsupportedEnvironmentError(NetdiagError):
    """The machine cannot do what was asked: not root, no netns, missing feature."""

    exit_status = ExitStatus.ENVIRONMENT


class ResourceConflictError(NetdiagError):
    """A name the run wants already exists and was not made by netdiag."""

    exit_status = ExitStatus.USAGE


class OutputError(NetdiagError):
    """An output folder or file cannot be written (permissions, disk full, exists)."""

    exit_status = ExitStatus.USAGE


class CaptureError(NetdiagError):
    """A capture stopped by a failure of its socket (the interface went away, ...)."""

    exit_status = ExitStatus.ENVIRONMENT


class AnalysisProcessError(NetdiagError):
    """A child process of ``analyze --jobs`` (analysing a file or a share of one,
    writing a report.json: analysis/forked.py) ended without a result, or could
    not send it back."""

    exit_status = ExitStatus.ENVIRONMENT
