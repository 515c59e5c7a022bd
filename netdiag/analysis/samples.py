"""Exact count, min, median and max of very many integer samples, in bounded memory.

Wireshark's ``tcp.analysis.ack_rtt`` gives a sample for nearly every ACK: half
a million at a million packets, and the file-level statistics must be exact
(they are compared with tshark's) and must not cost memory that grows with
the file (issue 6). A ``SampleSpool`` keeps the newest ``chunk`` samples in an
``array('q')`` and writes every full chunk to an anonymous temporary file
(as store.py does: ``O_TMPFILE``, gone with its descriptor). Count, minimum
and maximum are kept as the samples come; an order statistic is found by
radix selection over the file, read a chunk at a time: a histogram of the
top 16 bits (above the minimum) picks the bucket holding the wanted rank,
the next pass counts only inside it, and so on, one pass per 16 bits of the
samples' span (two for RTTs between microseconds and seconds). When nothing
was written out, the held samples are simply sorted.

The samples' order carries no meaning, so spools merge by concatenation:
one file analysed in several processes (analysis/shares.py) sends each
share's samples as raw bytes to be added to the first share's spool, with
exactly the statistics a single pass gives.
"""

from __future__ import annotations

import operator
import os
from array import array
from collections.abc import Iterator
from types import ModuleType
from typing import IO, Any, Final

from netdiag.analysis.store import append_to_temporary, spill_error

SPOOL_CHUNK: Final = 1 << 16  # samples held in memory (512 KB) before a write
_BUCKET_BITS: Final = 16
_ITEM_BYTES: Final = 8
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


def clamp_to_int64(value: int) -> int:
    """``value`` limited to what an ``array('q')`` holds (timestamps can be absurd)."""
    return max(INT64_MIN, min(value, INT64_MAX))


def _numpy() -> ModuleType:
    # numpy's OpenBLAS starts a thread per core at import, which then spins
    # for a while (~1.5 % of a 1M-packet run's CPU time); the selection uses
    # none of them. Only when the user has not chosen, and only before numpy
    # is first imported (otherwise this changes nothing).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import numpy

    return numpy


class SampleSpool:
    """Integer samples (ns): exact count/min/median/max, ``chunk`` of them in memory."""

    __slots__ = ("_file", "_maximum", "_minimum", "_written", "chunk", "values")

    def __init__(self, chunk: int = SPOOL_CHUNK) -> None:
        self.values = array("q")  # the newest samples; the hot path appends here
        self.chunk = chunk
        self._file: IO[bytes] | None = None
        self._written = 0  # samples in the file
        self._minimum = 0  # over the written samples (meaningless while none)
        self._maximum = 0

    def add(self, value: int) -> None:
        values = self.values
        try:
            values.append(value)
        except OverflowError:  # off the common path
            values.append(clamp_to_int64(value))
        if len(values) >= self.chunk:
            self.spill()

    @property
    def count(self) -> int:
        return self._written + len(self.values)

    def spill(self) -> None:
        """Write the held samples to the file (the hot path calls it when ``chunk`` are held)."""
        values = self.values
        if not values:
            return
        low = min(values)
        high = max(values)
        if self._written:
            low = min(low, self._minimum)
            high = max(high, self._maximum)
        self._minimum, self._maximum = low, high
        self._file = append_to_temporary(self._file, values.tobytes())
        self._written += len(values)
        self.values = array("q")

    def extend_bytes(self, data: bytes) -> None:
        """Add samples given as ``to_bytes`` gave them (another share's spool)."""
        for start in range(0, len(data), self.chunk * _ITEM_BYTES):
            self.values.frombytes(data[start : start + self.chunk * _ITEM_BYTES])
            if len(self.values) >= self.chunk:
                self.spill()

    def to_bytes(self) -> bytes:
        """Every sample as native int64 bytes, written ones first (order is meaningless)."""
        return self._read(0, self._written) + self.values.tobytes()

    def _read(self, first: int, count: int) -> bytes:
        if not count:
            return b""
        assert self._file is not None
        try:
            return os.pread(self._file.fileno(), count * _ITEM_BYTES, first * _ITEM_BYTES)
        except OSError as error:
            raise spill_error(error) from error

    def stats_ms(self) -> tuple[float | None, float | None, float | None]:
        """(min, median, max) in ms, or Nones when there is no sample."""
        count = self.count
        if not count:
            return None, None, None
        values = self.values
        minimum = min(values) if values else self._minimum
        maximum = max(values) if values else self._maximum
        if self._written:
            minimum = min(minimum, self._minimum)
            maximum = max(maximum, self._maximum)
        middle = count // 2
        ranks = (middle,) if count % 2 else (middle - 1, middle)
        if self._written:
            chosen = self._radix_select(ranks, minimum, maximum)
        else:  # at most ``chunk`` samples, all in memory
            ordered = sorted(self.values)
            chosen = [ordered[rank] for rank in ranks]
        # operator.truediv: Python's correctly rounded int / int (mypyc's is not).
        median = float(chosen[0]) if count % 2 else float(operator.truediv(sum(chosen), 2))
        return minimum / 1e6, median / 1e6, maximum / 1e6

    def _chunks(self) -> Iterator[Any]:
        """Every sample as int64 arrays of at most ``chunk`` samples."""
        numpy = _numpy()
        for first in range(0, self._written, self.chunk):
            data = self._read(first, min(self.chunk, self._written - first))
            yield numpy.frombuffer(data, dtype=numpy.int64)
        if self.values:
            yield numpy.frombuffer(self.values, dtype=numpy.int64)

    def _radix_select(self, ranks: tuple[int, ...], minimum: int, maximum: int) -> list[int]:
        """The samples at ``ranks`` (0-based, sorted order), by radix selection.

        Keys are the samples' distances above the minimum, as unsigned 64-bit
        numbers (exact: int64 subtraction wraps modulo 2**64, and every sample
        is at least the minimum). Each pass reads the samples once and, for
        each rank, histograms the next ``_BUCKET_BITS`` bits of the keys that
        share the prefix chosen so far, keeping the bucket the rank falls in
        (the two middle ranks of a median nearly always share every bucket).
        """
        numpy = _numpy()
        span_bits = (maximum - minimum).bit_length()
        levels = max(1, -(-span_bits // _BUCKET_BITS))
        base = numpy.uint64(minimum & 0xFFFFFFFFFFFFFFFF)
        bucket_mask = (1 << _BUCKET_BITS) - 1
        targets = [[rank, 0] for rank in ranks]  # [rank left within the prefix, prefix]
        for level in range(levels):
            shift = (levels - 1 - level) * _BUCKET_BITS
            prefixes = sorted({prefix for _rank, prefix in targets})
            histograms = {
                prefix: numpy.zeros(1 << _BUCKET_BITS, dtype=numpy.int64) for prefix in prefixes
            }
            for chunk in self._chunks():
                keys = chunk.view(numpy.uint64) - base
                for prefix in prefixes:
                    selected = keys[(keys >> (shift + _BUCKET_BITS)) == prefix] if level else keys
                    buckets = ((selected >> shift) & bucket_mask).astype(numpy.intp)
                    histograms[prefix] += numpy.bincount(buckets, minlength=1 << _BUCKET_BITS)
            for target in targets:
                rank, prefix = target
                cumulative = numpy.cumsum(histograms[prefix])
                bucket = int(numpy.searchsorted(cumulative, rank, side="right"))
                if bucket:
                    rank -= int(cumulative[bucket - 1])
                target[0], target[1] = rank, prefix << _BUCKET_BITS | bucket
        return [minimum + prefix for _rank, prefix in targets]
