"""Exact count, min, median and max of very many integer samples, in bounded memory.

Wireshark's ``tcp.analysis.ack_rtt`` gives a sample for nearly every ACK: half
a million at a million packets, and the file-level statistics must be exact
(they are compared with tshark's) and must not cost memory that grows with
the file (issue 6). A ``SampleSpool`` keeps the newest ``chunk`` samples in an
``array('q')`` and writes every full chunk to an anonymous temporary file
(as store.py does: ``O_TMPFILE``, gone with its descriptor). As each sample
comes it also counts it in a histogram of ``BUCKETS`` buckets that follow
the value's magnitude (``bucket_of``: exact below 256, then 128 buckets per
power of two, so a bucket is under 1 % of its values wide). An order
statistic is then one walk of the histogram, which names the bucket holding
the wanted rank, and one pass over the samples, which keeps only those in
that bucket to sort. No numpy: importing it cost more than the whole
selection (about 0.08 s against 0.015 s at a million packets).

The samples' order carries no meaning, so spools merge by concatenation
(and their histograms by addition): one file analysed in several processes
(analysis/shares.py) hands each share's spooled file, with its histogram,
to the first share's spool, which reads it a chunk at a time: exactly the
statistics a single pass gives.
"""

from __future__ import annotations

import operator
import os
from array import array
from collections.abc import Iterator, Sequence
from typing import IO, Final

from netdiag.analysis.store import append_to_temporary, spill_error

SPOOL_CHUNK: Final = 1 << 16  # samples held in memory (512 KB) before a write
_ITEM_BYTES: Final = 8
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
# bucket_of: 0 for values <= 0, the value itself up to 255, then 128 buckets
# for each bit length from 9 to 63 (the largest int64 lands in the last).
BUCKETS: Final = 56 * 128 + 128


def clamp_to_int64(value: int) -> int:
    """``value`` limited to what an ``array('q')`` holds (timestamps can be absurd)."""
    return max(INT64_MIN, min(value, INT64_MAX))


def bucket_of(value: int) -> int:
    """The histogram bucket of an int64 ``value``; larger values never get a smaller one.

    Values up to 255 have a bucket each (all those <= 0 share bucket 0); above,
    a value's bit length and the 7 bits after its leading one pick the bucket.
    """
    if value < 256:
        return value if value > 0 else 0
    bits = value.bit_length()
    return (bits - 7) * 128 + ((value >> (bits - 8)) & 127)


class SampleSpool:
    """Integer samples (ns): exact count/min/median/max, ``chunk`` of them in memory."""

    __slots__ = ("_file", "_maximum", "_minimum", "_written", "chunk", "histogram", "values")

    def __init__(self, chunk: int = SPOOL_CHUNK) -> None:
        self.values = array("q")  # the newest samples
        self.histogram = [0] * BUCKETS  # samples per bucket_of, held and written alike
        self.chunk = chunk
        self._file: IO[bytes] | None = None
        self._written = 0  # samples in the file
        self._minimum = 0  # over the written samples (meaningless while none)
        self._maximum = 0

    def add(self, value: int) -> None:
        """One sample: the per-ACK path of the TCP tracker."""
        if not INT64_MIN <= value <= INT64_MAX:
            value = clamp_to_int64(value)  # a corrupt timestamp's RTT (issue 7)
        values = self.values
        values.append(value)
        self.histogram[bucket_of(value)] += 1
        if len(values) >= self.chunk:
            self.spill()

    @property
    def count(self) -> int:
        return self._written + len(self.values)

    def spill(self) -> None:
        """Write the held samples to the file."""
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

    def written(self) -> tuple[IO[bytes] | None, int]:
        """Every sample written out (the held ones too): the file, and how many it holds."""
        self.spill()
        return self._file, self._written

    def extend_from(self, file: IO[bytes], count: int, histogram: Sequence[int]) -> None:
        """Add ``count`` samples read from ``file`` (another spool's ``written``), a
        chunk at a time, and that spool's ``histogram``."""
        step = self.chunk
        for first in range(0, count, step):
            size = min(step, count - first) * _ITEM_BYTES
            try:
                data = os.pread(file.fileno(), size, first * _ITEM_BYTES)
            except OSError as error:
                raise spill_error(error) from error
            self.values.frombytes(data)
            if len(self.values) >= self.chunk:
                self.spill()
        self._add_histogram(histogram)

    def _add_histogram(self, histogram: Sequence[int]) -> None:
        counts = self.histogram
        for bucket in range(BUCKETS):
            counts[bucket] += histogram[bucket]

    def _read(self, first: int, count: int) -> bytes:
        if not count:
            return b""
        assert self._file is not None
        try:
            return os.pread(self._file.fileno(), count * _ITEM_BYTES, first * _ITEM_BYTES)
        except OSError as error:
            raise spill_error(error) from error

    def _chunks(self) -> Iterator[array[int]]:
        """Every sample, at most ``chunk`` at a time."""
        for first in range(0, self._written, self.chunk):
            chunk = array("q")
            chunk.frombytes(self._read(first, min(self.chunk, self._written - first)))
            yield chunk
        yield self.values

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
        ranks = [middle] if count % 2 else [middle - 1, middle]
        chosen = self._order_statistics(ranks)
        # operator.truediv: Python's correctly rounded int / int (mypyc's is not).
        median = float(chosen[0]) if count % 2 else float(operator.truediv(sum(chosen), 2))
        return minimum / 1e6, median / 1e6, maximum / 1e6

    def _order_statistics(self, ranks: list[int]) -> list[int]:
        """The samples at ``ranks`` (0-based, in sorted order; ascending ranks)."""
        # Walk the histogram to the bucket of each rank, and the rank within it.
        wanted: list[tuple[int, int]] = []  # (bucket, rank among its samples)
        below = 0  # samples in the buckets before ``bucket``
        bucket = 0
        for rank in ranks:
            while below + self.histogram[bucket] <= rank:
                below += self.histogram[bucket]
                bucket += 1
            wanted.append((bucket, rank - below))
        # One pass keeps the samples of those buckets (one, nearly always).
        kept: dict[int, list[int]] = {bucket: [] for bucket, _rank in wanted}
        for chunk in self._chunks():
            for value in chunk:
                found = kept.get(bucket_of(value))
                if found is not None:
                    found.append(value)
        for members in kept.values():
            members.sort()
        return [kept[bucket][rank] for bucket, rank in wanted]
