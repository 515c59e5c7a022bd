"""Writing report files safely: atomic replacement and the report-folder guard.

Report stage. Every file is written under a temporary name in its final
folder and moved into place with ``os.replace`` (atomic on one filesystem),
so a reader -- a browser refreshing the HTML, a CI job picking up the JSON --
never sees half a file, and an interrupted run leaves the previous report
intact. Failures become ``OutputError`` with the path and the reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

from netdiag.errors import OutputError

if TYPE_CHECKING:
    from netdiag.analysis.forked import ForkedCall


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    atomic_write_with(path, lambda handle: handle.write(data))


def atomic_write_text_by(path: Path, write: Callable[[TextIO], object]) -> None:
    """``write(stream)`` to ``path`` (UTF-8) as it goes, replacing it atomically at the end.

    For documents too big to build as one string first (the JSON of a big capture).
    """

    def write_text(handle: BinaryIO) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        write(text)
        text.flush()
        text.detach()  # the binary file stays with atomic_write_with, which closes it

    atomic_write_with(path, write_text)


def atomic_write_with(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(file)`` to a temporary file beside ``path``, then ``os.replace`` it there."""
    descriptor = -1
    temporary = ""
    try:
        descriptor, temporary = _temporary_beside(path)
        with os.fdopen(descriptor, "wb") as handle:
            descriptor = -1  # now owned by the file object
            write(handle)
        _move_into_place(temporary, path)
        temporary = ""
    except OSError as error:
        raise _write_error(path, error) from error
    finally:
        if descriptor >= 0:
            os.close(descriptor)
        if temporary:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _temporary_beside(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)


def _move_into_place(temporary: str, path: Path) -> None:
    # mkstemp creates 0600; a report is meant to be read by others too.
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def _write_error(path: Path, error: OSError) -> OutputError:
    return OutputError(
        f"cannot write {path}: {error.strerror or error}",
        "check the folder's permissions and free space, or choose another --out",
    )


class TextWrittenInChild:
    """``atomic_write_text_by(path, write)`` done by a forked child, while this
    process goes on with other work (the Markdown, HTML and plots of a big
    capture's report are drawn while its ``report.json`` is written).

    This process owns the temporary file: ``start`` creates it and forks, and
    ``end`` either finds it moved into place by ``finish`` (the child wrote it
    all) or removes it (the child failed, was killed, or this process was
    interrupted and ended the child), so no half-written file is left in the
    report folder. The child inherits whatever it writes from (a capture's
    spilled records are read with ``pread``: no file offset is shared).
    Hold the object in a ``try`` before ``start`` (a Ctrl-C can arrive as the
    child is forked), call ``finish`` for the file, and always ``end`` it in
    the ``finally``.
    """

    def __init__(self, path: Path, write: Callable[[TextIO], object]) -> None:
        self.path = path
        self._write = write
        self._temporary = ""
        self._child: ForkedCall[None] | None = None

    def start(self) -> None:
        from netdiag.analysis.forked import ForkedCall

        try:
            descriptor, self._temporary = _temporary_beside(self.path)
            os.close(descriptor)
        except OSError as error:
            raise _write_error(self.path, error) from error
        arguments = (self._temporary, self.path, self._write)
        self._child = ForkedCall(_write_text_to, arguments, f"writing {self.path}")
        self._child.start()

    def finish(self) -> None:
        """Wait for the child; the file in place, or the child's error raised here."""
        if self._child is None:
            raise RuntimeError("finish() before start()")
        self._child.result()
        try:
            _move_into_place(self._temporary, self.path)
        except OSError as error:
            raise _write_error(self.path, error) from error
        self._temporary = ""

    @property
    def pid(self) -> int | None:
        return None if self._child is None else self._child.pid

    def end(self) -> None:
        """End the child if it still writes (SIGTERM, by pid); remove what it left."""
        if self._child is not None:
            self._child.end()
        if self._temporary:
            with contextlib.suppress(OSError):
                os.unlink(self._temporary)
            self._temporary = ""


def _write_text_to(temporary: str, path: Path, write: Callable[[TextIO], object]) -> None:
    """The child's part of ``TextWrittenInChild``: the text into the temporary file."""
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as text:
            write(text)
    except OSError as error:
        raise _write_error(path, error) from error


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def prepare_folder(out_dir: Path, force: bool) -> None:
    """Create the report folder; refuse a non-empty one unless ``force``.

    With ``force`` the files netdiag writes are replaced one by one and
    nothing else in the folder is touched.
    """
    check_folder(out_dir, force)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _folder_error(out_dir, error) from error


def check_folder(out_dir: Path, force: bool) -> None:
    """``prepare_folder``'s refusals, without creating anything: for a command
    that writes several folders to refuse before it begins (analyze.py)."""
    try:
        if out_dir.exists():
            if not out_dir.is_dir():
                raise OutputError(f"{out_dir} exists and is not a folder", "choose another --out")
            if any(out_dir.iterdir()) and not force:
                raise OutputError(
                    f"report folder {out_dir} already exists and is not empty",
                    "use --force to overwrite it, or choose another --out",
                )
    except OSError as error:
        raise _folder_error(out_dir, error) from error


def _folder_error(out_dir: Path, error: OSError) -> OutputError:
    return OutputError(
        f"cannot create report folder {out_dir}: {error.strerror or error}",
        "check the folder's permissions, or choose another --out",
    )
