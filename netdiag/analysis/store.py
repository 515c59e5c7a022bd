"""Finished analysis records kept on disk, so memory follows live state only (issue 6).

A capture's finished records (one ``TcpStream`` per conversation, one echo
per request, the findings) are kept until the end of the pass because the
output lists them all. Held as objects they grow with the file (~7 KB per TCP
stream, 160 MB at 2M packets). ``RecordStore`` keeps them in memory up to
``spill_after`` records; past that it encodes every record with ``marshal``
(a tuple of plain values per record, through a ``Codec``) into an anonymous
temporary file and keeps only its offset (8 bytes a record) and the order
wanted at the end.

``seal`` gives the records in their final order: a plain ``tuple`` when
nothing was spilled (small captures see exactly what they saw before), else a
``SpilledRecords``: a read-only ``Sequence`` that decodes a record when asked
(``len``, iteration, indexing, slicing). Consumers that need everything
iterate it once; sorting is done on small keys, never on the records.

The file is made with ``tempfile.TemporaryFile`` (``O_TMPFILE`` on Linux:
it never has a name), so it disappears with its last descriptor on every
path, exceptions, Ctrl-C and SIGKILL included; it lives in ``$TMPDIR``.
A ``SpilledRecords`` pickles as the file's bytes, which the receiving
process writes to its own temporary file: one copy of compact rows instead of
a tree of dataclasses; ``--jobs N``'s children send a reference to the file
instead (``spilled_by_reference``).

``NETDIAG_SPILL_AFTER`` overrides the threshold (0 spills every record:
the tests run the whole corpus that way and compare with the in-memory path).
"""

from __future__ import annotations

import marshal
import operator
import os
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any, Generic, TypeVar, overload

from netdiag.analysis.addr import format_addr
from netdiag.analysis.model import (
    Finding,
    IcmpEcho,
    IcmpError,
    RttSample,
    RttSampleStats,
    SeqPoint,
    StreamFindings,
    TcpStream,
    TimelineEntry,
)
from netdiag.errors import OutputError

T = TypeVar("T")

SPILL_AFTER_VARIABLE = "NETDIAG_SPILL_AFTER"
DEFAULT_SPILL_AFTER = 256  # records held as objects before the store goes to disk
WRITE_BUFFER_BYTES = 1 << 18  # encoded rows gathered before one write
ORDERED_WINDOW = 1024  # rows read together when records are read in an order
ORDERED_SPAN_BYTES = 1 << 20  # a window's span read at once up to this, or 4x its rows


def spill_after_default() -> int:
    """The threshold: ``$NETDIAG_SPILL_AFTER`` when set to an integer, else the default."""
    value = os.environ.get(SPILL_AFTER_VARIABLE, "")
    try:
        return max(0, int(value))
    except ValueError:
        return DEFAULT_SPILL_AFTER


class Codec(Generic[T]):
    """Turns a record into a ``marshal``-able row and back; the identity by default.

    Subclasses are module-level classes so that a ``SpilledRecords`` pickles.
    """

    def encode(self, record: T) -> Any:
        return record

    def decode(self, row: Any) -> T:
        return row  # type: ignore[no-any-return]


def spill_error(error: OSError) -> OutputError:
    return OutputError(
        f"cannot keep finished analysis records in a temporary file: {error}",
        f"free space in {tempfile.gettempdir()} or point $TMPDIR at a larger file system",
    )


def temporary_file(data: bytes) -> IO[bytes]:
    """A nameless file holding ``data``; it goes away with its last descriptor."""
    try:
        # Not a context manager: the file lives as long as the records it holds.
        file = tempfile.TemporaryFile(prefix="netdiag-records-")  # noqa: SIM115
        file.write(data)
        file.flush()
    except OSError as error:
        raise spill_error(error) from error
    return file


def append_to_temporary(file: IO[bytes] | None, data: bytes) -> IO[bytes]:
    """``data`` written at the end of ``file``, or of a new nameless file when None."""
    if file is None:
        return temporary_file(data)
    try:
        file.write(data)
        file.flush()
    except OSError as error:
        raise spill_error(error) from error
    return file


class RecordStore(Generic[T]):
    """Appends records during the pass; ``seal`` hands them back in order, once."""

    def __init__(self, codec: Codec[T], spill_after: int | None = None) -> None:
        self._codec = codec
        self._spill_after = spill_after_default() if spill_after is None else spill_after
        self._held: list[T] = []
        self._file: IO[bytes] | None = None
        self._offsets = array("q", [0])  # start of each spilled row, then the end
        self._buffer: list[bytes] = []
        self._buffered = 0

    def __len__(self) -> int:
        return len(self._offsets) - 1 + len(self._held)

    def append(self, record: T) -> int:
        """Keep ``record``; its position (0, 1, 2, ... in append order) is returned."""
        position = len(self)
        self._held.append(record)
        if len(self._held) > self._spill_after:
            self._spill()
        return position

    def get(self, position: int) -> T:
        """The record at ``position``, held or read back (for the rare look-back)."""
        spilled = len(self._offsets) - 1
        if position >= spilled:
            return self._held[position - spilled]
        if self._buffer:
            self._flush()
        assert self._file is not None
        start = self._offsets[position]
        length = self._offsets[position + 1] - start
        try:
            data = os.pread(self._file.fileno(), length, start)
        except OSError as error:
            raise spill_error(error) from error
        return self._codec.decode(marshal.loads(data))

    def _spill(self) -> None:
        """Encode every held record to the buffer, writing it out when it is full."""
        encode = self._codec.encode
        offsets = self._offsets
        buffer = self._buffer
        end = offsets[-1]
        for record in self._held:
            row = marshal.dumps(encode(record))
            buffer.append(row)
            end += len(row)
            offsets.append(end)
            self._buffered += len(row)
        self._held.clear()
        if self._buffered >= WRITE_BUFFER_BYTES:
            self._flush()

    def _flush(self) -> None:
        self._file = append_to_temporary(self._file, b"".join(self._buffer))
        self._buffer.clear()
        self._buffered = 0

    @property
    def spilled(self) -> bool:
        return len(self._offsets) > 1

    def seal(self, order: Sequence[int] | None = None) -> Sequence[T]:
        """Every record, in append order or in ``order`` (positions in append order;
        it may leave records out). A tuple when nothing went to disk; the store
        is spent afterwards.
        """
        if not self.spilled:
            held = self._held
            self._held = []
            return tuple(held) if order is None else tuple(held[index] for index in order)
        self._spill()
        self._flush()
        assert self._file is not None
        spilled = SpilledRecords(self._file, self._offsets, order, self._codec)
        self._file = None
        self._offsets = array("q", [0])
        return spilled


class _ReadOnlyRecords(Sequence[T]):
    """Indexing shared by the lazy sequences: ``_item`` reads one record by index."""

    def __eq__(self, other: object) -> bool:
        # An Analysis compares its fields: a spilled list equals the tuple
        # the in-memory path gives for the same capture.
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(
            mine == theirs for mine, theirs in zip(self, other, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]

    def _item(self, index: int) -> T:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...

    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        if isinstance(index, slice):
            # A slice is what reports show (the first rows): small, so a tuple.
            return tuple(self._item(position) for position in range(*index.indices(len(self))))
        count = len(self)
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError("record index out of range")
        return self._item(index)


class SpilledRecords(_ReadOnlyRecords[T]):
    """A read-only sequence of records decoded from a temporary file when asked."""

    def __init__(
        self,
        file: IO[bytes],
        offsets: array[int],
        order: Iterable[int] | None,
        codec: Codec[T],
    ) -> None:
        self._file = file
        self._descriptor = file.fileno()
        self._offsets = offsets
        # None: file order. Kept as 8-byte integers, never as a list of ints.
        self._order = None if order is None else array("q", order)
        self._codec = codec

    def __len__(self) -> int:
        return len(self._offsets) - 1 if self._order is None else len(self._order)

    def _read(self, position: int) -> T:
        start = self._offsets[position]
        length = self._offsets[position + 1] - start
        try:
            data = os.pread(self._descriptor, length, start)
        except OSError as error:
            raise spill_error(error) from error
        return self._codec.decode(marshal.loads(data))

    def _item(self, index: int) -> T:
        return self._read(index if self._order is None else self._order[index])

    def __iter__(self) -> Iterator[T]:
        if self._order is None:
            return self._iter_file_order()
        return self._iter_ordered(self._order)

    def _iter_ordered(self, order: array[int]) -> Iterator[T]:
        """The rows in ``order``, read ORDERED_WINDOW at a time.

        The orders asked for (streams by number, echoes by request frame) are
        nearly the file order: the rows of a window usually lie close
        together, and one read of the span holding them all replaces a read
        per row (most of the cost of reading small rows back). A span much
        larger than its rows (a scattered window) is read row by row.
        """
        offsets = self._offsets
        decode = self._codec.decode
        for first in range(0, len(order), ORDERED_WINDOW):
            window = order[first : first + ORDERED_WINDOW]
            low, high = min(window), max(window)
            start = offsets[low]
            span = offsets[high + 1] - start
            rows = sum(offsets[position + 1] - offsets[position] for position in window)
            if span > max(ORDERED_SPAN_BYTES, 4 * rows):
                for position in window:
                    yield self._read(position)
                continue
            try:
                view = memoryview(os.pread(self._descriptor, span, start))
            except OSError as error:
                raise spill_error(error) from error
            for position in window:
                row = view[offsets[position] - start : offsets[position + 1] - start]
                yield decode(marshal.loads(row))

    def _iter_file_order(self) -> Iterator[T]:
        """Sequential reads of about a megabyte, cut into rows."""
        offsets = self._offsets
        decode = self._codec.decode
        count = len(self)
        position = 0
        while position < count:
            start = offsets[position]
            last = position + 1
            while last < count and offsets[last + 1] - start <= (1 << 20):
                last += 1
            try:
                block = os.pread(self._descriptor, offsets[last] - start, start)
            except OSError as error:
                raise spill_error(error) from error
            view = memoryview(block)
            for index in range(position, last):
                row = view[offsets[index] - start : offsets[index + 1] - start]
                yield decode(marshal.loads(row))
            position = last

    def __repr__(self) -> str:
        return f"SpilledRecords({len(self)} records)"

    def decoded_by(self, codec: Codec[Any]) -> SpilledRecords[Any]:
        """The same rows read through another codec (which must read the stored rows)."""
        return SpilledRecords(self._file, self._offsets, self._order, codec)

    def file_bytes(self) -> bytes:
        try:
            return os.pread(self._descriptor, self._offsets[-1], 0)
        except OSError as error:
            raise spill_error(error) from error

    def __reduce__(self) -> tuple[Callable[..., SpilledRecords[T]], tuple[Any, ...]]:
        order = None if self._order is None else self._order.tobytes()
        if _BY_REFERENCE.get():
            return (
                _open_reference,
                (os.getpid(), self._descriptor, self._offsets.tobytes(), order, self._codec),
            )
        return (
            _restore_spilled,
            (self.file_bytes(), self._offsets.tobytes(), order, self._codec),
        )


# Within ``spilled_by_reference``, a SpilledRecords pickles as this process's
# pid and the file's descriptor instead of the file's bytes.
_BY_REFERENCE: ContextVar[bool] = ContextVar("spilled_by_reference", default=False)


@contextmanager
def spilled_by_reference() -> Iterator[None]:
    """Spilled records pickled as references to this process's anonymous files.

    For a child sending its records to the parent that forked it (one file
    analysed in several processes, analysis/shares.py; several files, one per
    child, analysis/forked.py): the parent opens each
    file through ``/proc/<pid>/fd/<n>`` (the same inode, which stays while
    either holds it) while the child waits; nothing is copied or held in
    memory on the way, where the file's bytes grew with the capture.
    """
    token = _BY_REFERENCE.set(True)
    try:
        yield
    finally:
        _BY_REFERENCE.reset(token)


def _open_reference(
    pid: int, descriptor: int, offsets: bytes, order: bytes | None, codec: Codec[T]
) -> SpilledRecords[T]:
    """The other end of a by-reference pickle: the sender's file, opened here."""
    return _records_in(open_file_of(pid, descriptor), offsets, order, codec)


def open_file_of(pid: int, descriptor: int) -> IO[bytes]:
    """Another process's open file (one of its anonymous ones), opened here through
    ``/proc``: the same inode, which stays while either process holds it."""
    try:
        # Returned open: the file lives as long as what reads it.
        return open(f"/proc/{pid}/fd/{descriptor}", "rb")
    except OSError as error:
        raise spill_error(error) from error


def _restore_spilled(
    data: bytes, offsets: bytes, order: bytes | None, codec: Codec[T]
) -> SpilledRecords[T]:
    """The other end of ``SpilledRecords.__reduce__``: the rows in a new temporary file."""
    return _records_in(temporary_file(data), offsets, order, codec)


def _records_in(
    file: IO[bytes], offsets: bytes, order: bytes | None, codec: Codec[T]
) -> SpilledRecords[T]:
    offset_array = array("q")
    offset_array.frombytes(offsets)
    order_array = None
    if order is not None:
        order_array = array("q")
        order_array.frombytes(order)
    return SpilledRecords(file, offset_array, order_array, codec)


class Reordered(_ReadOnlyRecords[T]):
    """``records`` seen in another order (``positions``), read one by one when asked.

    For orders the reports want ("largest first") over spilled records: only
    8 bytes a record are held, never the records.
    """

    def __init__(self, records: Sequence[T], positions: Iterable[int]) -> None:
        self._records = records
        self._positions = array("q", positions)

    def __len__(self) -> int:
        return len(self._positions)

    def _item(self, index: int) -> T:
        return self._records[self._positions[index]]


class Interleaved(_ReadOnlyRecords[T]):
    """The records of several sequences in one order, each passed through ``adjust``.

    ``picks[i]`` names the source of the i-th record; each source is read in
    its own order (its records appear in the result in the order they have
    in it). ``adjust(i, record)`` gives what the result holds at ``i``. The
    shares of one file analysed in several processes (shares.py) become one
    list of streams this way, renumbered; 9 bytes a record are held, never
    the records, and iterating reads each source once, in order.
    """

    def __init__(
        self, sources: Sequence[Sequence[T]], picks: array[int], adjust: Callable[[int, T], T]
    ) -> None:
        self._sources = sources
        self._picks = picks
        self._adjust = adjust
        self._positions = array("q", bytes(8 * len(picks)))
        taken = [0] * len(sources)
        for index, source in enumerate(picks):
            self._positions[index] = taken[source]
            taken[source] += 1
        sizes = [len(source) for source in sources]
        if taken != sizes:
            raise ValueError(f"picks take {taken} records of sources holding {sizes}")

    def __len__(self) -> int:
        return len(self._picks)

    def _item(self, index: int) -> T:
        record = self._sources[self._picks[index]][self._positions[index]]
        return self._adjust(index, record)

    def __iter__(self) -> Iterator[T]:
        readers = [iter(source) for source in self._sources]
        adjust = self._adjust
        for index, source in enumerate(self._picks):
            yield adjust(index, next(readers[source]))


# -- codecs of the analysis records ------------------------------------------


def _record_builder(cls: type[T]) -> Callable[[Sequence[Any]], T]:
    """A function building a ``cls`` from its field values in slot order, as ``cls(*values)``.

    ``cls`` must be a frozen, slotted dataclass whose ``__init__`` only stores
    its arguments (no ``__post_init__``, no conversions): the model's records.
    Their generated ``__init__`` stores each field through ``object.__setattr__``
    by name; this straight-line function calls each slot's member descriptor
    instead, about half the time per record (0.67 -> 0.37 µs for a
    ``TimelineEntry``). Reading spilled streams back for the JSON (and the
    reports) builds tens of thousands of records per million packets; the
    findings never read them back (they are made as each stream is finished).
    The object is the same either way (tests/test_store.py).
    """
    names: tuple[str, ...] = vars(cls)["__slots__"]  # the fields, in __init__ order
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = ["def build(values):", "    record = new(cls)"]
    for index, name in enumerate(names):
        namespace[f"set_{index}"] = getattr(cls, name).__set__
        lines.append(f"    set_{index}(record, values[{index}])")
    lines.append("    return record")
    exec("\n".join(lines), namespace)
    builder: Callable[[Sequence[Any]], T] = namespace["build"]
    return builder


def field_replacer(cls: type[T], name: str) -> Callable[[T, Any], T]:
    """``dataclasses.replace(record, **{name: value})`` for a model record, built
    as ``_record_builder`` builds (renumbering every stream of a big file)."""
    names: tuple[str, ...] = vars(cls)["__slots__"]
    build = _record_builder(cls)
    values_of = operator.attrgetter(*names)
    index = names.index(name)

    def replace(record: T, value: Any) -> T:
        values = list(values_of(record))
        values[index] = value
        return build(values)

    return replace


def _slot_values(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """A function giving a record's field values in slot order, the order
    ``_record_builder(cls)`` reads them back in: one C call for every field
    (a getattr per field was most of encode's time)."""
    names: tuple[str, ...] = vars(cls)["__slots__"]
    # attrgetter of one name gives the value, not a 1-tuple: no record has one field.
    assert len(names) > 1, cls
    return operator.attrgetter(*names)


# Each codec encodes with ``_slot_values`` and decodes with ``_record_builder``
# of the same class: both follow ``__slots__``, so a field added to or moved
# in a model record is carried, never swapped or left to its default.
_stream_values = _slot_values(TcpStream)
_timeline_values = _slot_values(TimelineEntry)
_rtt_stats_values = _slot_values(RttSampleStats)
_rtt_sample_values = _slot_values(RttSample)
_seq_point_values = _slot_values(SeqPoint)
_build_stream = _record_builder(TcpStream)
_build_timeline_entry = _record_builder(TimelineEntry)
_build_rtt_stats = _record_builder(RttSampleStats)
_build_rtt_sample = _record_builder(RttSample)
_build_seq_point = _record_builder(SeqPoint)

_STREAM_FIELDS = TcpStream.__slots__
_TIMELINE = _STREAM_FIELDS.index("timeline")
_RTT_STATS = _STREAM_FIELDS.index("rtt_ms")
_RTT_SAMPLES = _STREAM_FIELDS.index("rtt_samples")
_SEQ_POINTS = _STREAM_FIELDS.index("seq_points")


class TcpStreamCodec(Codec[TcpStream]):
    """A ``TcpStream`` as a tuple of its fields in slot order, nested records as tuples."""

    def encode(self, record: TcpStream) -> Any:
        row = list(_stream_values(record))
        row[_TIMELINE] = tuple(map(_timeline_values, record.timeline))
        row[_RTT_STATS] = _rtt_stats_values(record.rtt_ms)
        row[_RTT_SAMPLES] = tuple(map(_rtt_sample_values, record.rtt_samples))
        row[_SEQ_POINTS] = tuple(map(_seq_point_values, record.seq_points))
        return tuple(row)

    def decode(self, row: Any) -> TcpStream:
        values = list(row)
        values[_TIMELINE] = tuple([_build_timeline_entry(entry) for entry in values[_TIMELINE]])
        values[_RTT_STATS] = _build_rtt_stats(values[_RTT_STATS])
        values[_RTT_SAMPLES] = tuple([_build_rtt_sample(sample) for sample in values[_RTT_SAMPLES]])
        values[_SEQ_POINTS] = tuple([_build_seq_point(point) for point in values[_SEQ_POINTS]])
        return _build_stream(values)


_finding_values = _slot_values(Finding)
_build_finding = _record_builder(Finding)


class FindingCodec(Codec[Finding]):
    """A ``Finding`` as the tuple of its fields in slot order (all plain values)."""

    def encode(self, record: Finding) -> Any:
        return _finding_values(record)

    def decode(self, row: Any) -> Finding:
        return _build_finding(row)


_stream_findings_values = _slot_values(StreamFindings)
_build_stream_findings = _record_builder(StreamFindings)
_FINDINGS = StreamFindings.__slots__.index("findings")


class StreamFindingsCodec(Codec["StreamFindings | None"]):
    """A stream's findings (or None, for most streams: none) as nested tuples in slot order."""

    def encode(self, record: StreamFindings | None) -> Any:
        if record is None:
            return None
        row = list(_stream_findings_values(record))
        row[_FINDINGS] = tuple(map(_finding_values, record.findings))
        return tuple(row)

    def decode(self, row: Any) -> StreamFindings | None:
        if row is None:
            return None
        values = list(row)
        values[_FINDINGS] = tuple([_build_finding(found) for found in values[_FINDINGS]])
        return _build_stream_findings(values)


# An ICMP echo request as the tracker leaves it: family, request frame, reply
# frame (None when unanswered), source and destination addresses (packed),
# identifier, sequence number, request and reply times (epoch ns).
EchoRow = tuple[str, int, "int | None", bytes, bytes, int, int, int, int]


class EchoRowCodec(Codec[IcmpEcho]):
    """Reads an ``EchoRow`` as the ``IcmpEcho`` record, times relative to ``origin_ns``."""

    def __init__(self, origin_ns: int) -> None:
        self.origin_ns = origin_ns

    def decode(self, row: Any) -> IcmpEcho:
        family, frame, reply_frame, source, destination, identifier, sequence, ts, reply_ts = row
        return IcmpEcho(
            family=family,
            frame_req=frame,
            frame_rep=reply_frame,
            src=format_addr(source),
            dst=format_addr(destination),
            id=identifier,
            seq=sequence,
            rtt_ms=None if reply_frame is None else (reply_ts - ts) / 1e6,
            t_req_ms=(ts - self.origin_ns) / 1e6,
        )


_error_values = _slot_values(IcmpError)
_build_error = _record_builder(IcmpError)


class IcmpErrorCodec(Codec[IcmpError]):
    """An ``IcmpError`` as the tuple of its fields in slot order (all plain values)."""

    def encode(self, record: IcmpError) -> Any:
        return _error_values(record)

    def decode(self, row: Any) -> IcmpError:
        return _build_error(row)
