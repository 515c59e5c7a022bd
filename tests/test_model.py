"""``round_ms``'s shortcut gives exactly ``round(value, 3)`` (analysis/model.py).

The shortcut skips the decimal string ``round`` goes through when the scaled
value is clearly away from a tie; these tests aim at where it could go wrong:
ties and near-ties, values whose thousandfold is off by the product's
rounding, signed zeros, the size limit, non-finite values and non-floats.
"""

from __future__ import annotations

import math
import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from netdiag.analysis.model import round_ms


def _same(value: float) -> bool:
    mine, theirs = round_ms(value), round(value, 3)
    if isinstance(theirs, float) and math.isnan(theirs):
        return isinstance(mine, float) and math.isnan(mine)
    # Same type, same value, same sign of zero: what JSON would write.
    return type(mine) is type(theirs) and repr(mine) == repr(theirs)


def test_round_ms_keeps_none_and_non_floats() -> None:
    assert round_ms(None) is None
    # An int stays an int, as round(5, 3) leaves it (JSON writes 5, not 5.0).
    assert round_ms(5) == 5 and type(round_ms(5)) is int  # type: ignore[arg-type]


def test_round_ms_on_ties_zeros_limits_and_odd_values() -> None:
    values = [0.0, -0.0, 1e-4, -1e-4, 4.9e-4, 5e-4, -5e-4, 5.0000001e-4, 0.0015, 0.0025]
    values += [1.0005, 2.0005, 1.2345, 1.2355, -1.2345, 123456.7895, 1e9 + 0.0005]
    values += [2.0**40 / 1000, 2.0**40 / 1000 + 0.0005, 2.0**41, 1e15, 1e16, 1e300, 5e-324]
    values += [math.inf, -math.inf, math.nan, 1764000000.008252, 0.1 + 0.2]
    for value in values:
        assert _same(value), value


def test_round_ms_near_every_kind_of_tie() -> None:
    # x whose thousandfold sits at n + 0.5, and the doubles right around it.
    rng = random.Random(6)
    for _ in range(20_000):
        scale = 10.0 ** rng.randint(-3, 12)
        tie = (math.floor(rng.random() * scale) + 0.5) / 1000 * rng.choice((1, -1))
        for value in (tie, math.nextafter(tie, math.inf), math.nextafter(tie, -math.inf)):
            assert _same(value), value


def test_round_ms_on_random_doubles() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        assert _same(value), value
        assert _same(rng.uniform(-1e6, 1e6)), value


@settings(max_examples=2_000, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_round_ms_is_round_to_three_places(value: float) -> None:
    assert _same(value)


@settings(max_examples=2_000, deadline=None)
@given(st.integers(min_value=-(2**45), max_value=2**45), st.integers(min_value=-3, max_value=3))
def test_round_ms_at_and_beside_the_thousandths(thousandths: int, offset: int) -> None:
    # k/1000, halfway points and their neighbours a few ulps away.
    for base in (thousandths / 1000, (thousandths + 0.5) / 1000):
        value = base
        for _ in range(abs(offset)):
            value = math.nextafter(value, math.copysign(math.inf, offset))
        assert _same(value)
