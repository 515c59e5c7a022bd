"""SampleSpool: the file-level ack_rtt statistics, exact at any size in bounded memory.

The spool's answer is checked against ``sorted()`` of the same samples, held in
memory, written out in many chunks, and merged from several spools (as the
shares of one file analysed in several processes are), on values chosen to
reach every radix level: the int64 extremes, duplicates, negative samples.
"""

from __future__ import annotations

import os
import random
from array import array

import pytest

from netdiag.analysis.samples import BUCKETS, INT64_MAX, INT64_MIN, SampleSpool, bucket_of


def expected_stats(values: list[int]) -> tuple[float, float, float]:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        median = float(ordered[middle])
    else:
        median = (ordered[middle - 1] + ordered[middle]) / 2
    return ordered[0] / 1e6, median / 1e6, ordered[-1] / 1e6


def spool_of(values: list[int], chunk: int) -> SampleSpool:
    spool = SampleSpool(chunk)
    for value in values:
        spool.add(value)
    return spool


SHAPES = {
    "rtts": lambda generator, count: [
        generator.randrange(8_000, 2_000_000_000) for _ in range(count)
    ],
    "duplicates": lambda generator, count: [
        generator.choice((50_000, 51_000, 7)) for _ in range(count)
    ],
    "negative": lambda generator, count: [
        generator.randrange(-(10**12), 10**6) for _ in range(count)
    ],
    "extremes": lambda generator, count: (
        [INT64_MAX, INT64_MIN, 0] + [generator.randrange(-(2**63), 2**63) for _ in range(count - 3)]
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("count", [1, 2, 3, 1000, 1001, 4099])
def test_spool_statistics_equal_sorted_ones_held_or_written(shape: str, count: int) -> None:
    generator = random.Random(f"{shape}-{count}")
    values = SHAPES[shape](generator, max(count, 3) if shape == "extremes" else count)
    for chunk in (1 << 16, 64, 7, 1):  # all held, then more and more chunks on disk
        spool = spool_of(values, chunk)
        assert spool.count == len(values)
        assert spool.stats_ms() == expected_stats(values), chunk


def test_empty_spool_has_no_statistics() -> None:
    assert SampleSpool().stats_ms() == (None, None, None)
    assert SampleSpool().count == 0


def test_values_beyond_int64_are_clamped_not_raised() -> None:
    spool = spool_of([2**70, -(2**70), 5], 2)
    assert spool.stats_ms() == (INT64_MIN / 1e6, 5 / 1e6, INT64_MAX / 1e6)


@pytest.mark.parametrize("chunk", [1 << 16, 50, 3])
def test_spools_merged_from_bytes_equal_one_spool(chunk: int) -> None:
    generator = random.Random(chunk)
    shares = [[generator.randrange(0, 10**9) for _ in range(size)] for size in (700, 0, 333)]
    merged = spool_of(shares[0], chunk)
    for share in shares[1:]:
        other = spool_of(share, chunk)
        file, count = other.written()
        if file is not None:
            merged.extend_from(file, count, other.histogram)
    everything = [value for share in shares for value in share]
    assert merged.count == len(everything)
    assert merged.stats_ms() == expected_stats(everything)
    file, count = merged.written()
    assert file is not None and count == len(everything)
    assert sorted(as_ints(os.pread(file.fileno(), 8 * count, 0))) == sorted(everything)


def as_ints(data: bytes) -> list[int]:
    values = array("q")
    values.frombytes(data)
    return list(values)


def test_buckets_follow_the_values_order_and_cover_int64() -> None:
    generator = random.Random(3)
    values = sorted(
        {INT64_MIN, -1, 0, 1, 255, 256, 257, 511, 512, INT64_MAX}
        | {2**bits + delta for bits in range(8, 63) for delta in (-1, 0, 1)}
        | {generator.randrange(-(2**63), 2**63) for _ in range(10_000)}
    )
    buckets = [bucket_of(value) for value in values]
    assert buckets == sorted(buckets)
    assert buckets[0] == 0 and buckets[-1] == BUCKETS - 1
    assert {bucket_of(value) for value in range(1, 256)} == set(range(1, 256))
    # Above 255 a bucket is at most 1/128 of its values wide.
    for bits in range(9, 64):
        low = 2 ** (bits - 1)
        assert bucket_of(low + low // 128 - 1) == bucket_of(low) != bucket_of(low + low // 128)


def test_one_bucket_holding_every_sample() -> None:
    values = [50_000] * 999 + [49_999, 50_001]
    for chunk in (1 << 16, 10):
        assert spool_of(values, chunk).stats_ms() == expected_stats(values)
