"""A map from byte keys to record positions, kept on disk (issue 6, bounded memory).

The ICMP tracker retires echo requests that waited too long for a reply: their
rows go to a ``RecordStore`` and only "key -> position in the store" must stay
findable, because tshark pairs a reply with its request however late it comes.
Kept as a dict that would be ~150 bytes a request, so a flood of unanswered
pings would still grow memory with the file. ``DiskIndex`` keeps the pairs in a
SQLite table instead (stdlib ``sqlite3``): a temporary database, which SQLite
unlinks right after creating it (like ``RecordStore``'s file it has no name and
goes away on every exit, SIGKILL included; it lives in ``$SQLITE_TMPDIR``,
else ``$TMPDIR``, else /var/tmp), with a bounded page cache (2 MiB). An
insertion costs ~2 µs (in batches, one transaction each), a look-up about as
much: the tracker inserts each retired request once and looks up only replies
whose request is not in memory (after a filter of its own), never on the usual
path. ``sqlite3`` is imported with the first database (~5 ms that a small
capture does not pay).

Keys are exact bytes (no hashing, so no collisions); a key maps to at most one
position.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from netdiag.errors import OutputError

if TYPE_CHECKING:
    import sqlite3

# Pages SQLite may hold in memory (negative: KiB), whatever the table's size.
CACHE_KIB = 2048


def _index_error(error: Exception) -> OutputError:
    # SQLite's own choice of folder for temporary databases (Unix).
    folder = os.environ.get("SQLITE_TMPDIR") or os.environ.get("TMPDIR") or "/var/tmp"
    return OutputError(
        f"cannot keep the index of retired analysis records in a temporary database: {error}",
        f"free space in {folder} or point $TMPDIR at a larger file system",
    )


class DiskIndex:
    """``bytes -> int`` on disk; created empty, with no file until the first insertion."""

    def __init__(self) -> None:
        self._connection: sqlite3.Connection | None = None
        self._error: type[Exception] = OSError  # sqlite3.Error once a database exists

    def _open(self) -> sqlite3.Connection:
        import sqlite3

        self._error = sqlite3.Error
        try:
            # "" is a private temporary database on disk, deleted when closed.
            connection = sqlite3.connect("", isolation_level=None)
            connection.execute("PRAGMA journal_mode=OFF")
            connection.execute("PRAGMA synchronous=OFF")
            connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            connection.execute(
                "CREATE TABLE entries (key BLOB PRIMARY KEY, position INTEGER) WITHOUT ROWID"
            )
        except self._error as error:
            raise _index_error(error) from error
        self._connection = connection
        return connection

    def insert_many(self, entries: Iterable[tuple[bytes, int]]) -> None:
        """Map each key to its position (a key already there is remapped)."""
        connection = self._connection or self._open()
        try:
            # One transaction for the batch, not one per row (~5x faster).
            connection.execute("BEGIN")
            connection.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?)", entries)
            connection.execute("COMMIT")
        except self._error as error:
            raise _index_error(error) from error

    def pop(self, key: bytes) -> int | None:
        """The position ``key`` maps to, removed from the index; None when absent."""
        connection = self._connection
        if connection is None:
            return None
        try:
            # One statement: the row is deleted at its first step, its position returned.
            rows = connection.execute(
                "DELETE FROM entries WHERE key = ? RETURNING position", (key,)
            ).fetchall()
        except self._error as error:
            raise _index_error(error) from error
        if not rows:
            return None
        position: int = rows[0][0]
        return position

    def discard(self, key: bytes) -> None:
        """Forget ``key`` if it is there."""
        connection = self._connection
        if connection is None:
            return
        try:
            connection.execute("DELETE FROM entries WHERE key = ?", (key,))
        except self._error as error:
            raise _index_error(error) from error

    def close(self) -> None:
        """Drop the database (its file goes with it); the index is empty again."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
