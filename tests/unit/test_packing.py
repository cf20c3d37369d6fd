"""Packed plaintexts: exact, linear, and unable to overflow at the contribution bounds."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mpc.contribution import (
    EXPOSURE_FIELDS,
    FIXED_FIELDS,
    FIXED_POINT_SCALE,
    MAX_ABS_PARTIAL,
    MAX_EXPOSURE,
    MAX_FIXED_SHARE,
    MAX_MEMBERS,
    MIN_MODULUS_BITS,
    PACKING,
    ContributionVector,
    encode,
    pack,
    unpack,
)
from mpc.packing import SlotLayout
from mpc.paillier import SMALL_PLAINTEXT_BITS

pytestmark = pytest.mark.unit


@st.composite
def layouts_and_values(draw: st.DrawFn, count: int = 1
                       ) -> tuple[SlotLayout, list[list[int]]]:
    widths = draw(st.lists(st.integers(2, 90), min_size=1, max_size=12))
    layout = SlotLayout(tuple(widths))
    rows = [[draw(st.integers(-layout.bound(i), layout.bound(i) - 1)) for i in range(len(widths))]
            for _ in range(count)]
    return layout, rows


@given(layouts_and_values())
def test_unpack_inverts_pack(case: tuple[SlotLayout, list[list[int]]]) -> None:
    layout, (values,) = case
    assert layout.unpack(layout.pack(values)) == tuple(values)


@given(layouts_and_values(count=2))
def test_packing_is_linear_while_every_slot_total_fits(
    case: tuple[SlotLayout, list[list[int]]]
) -> None:
    layout, (a, b) = case
    totals = [x + y for x, y in zip(a, b, strict=True)]
    assume(all(-layout.bound(i) <= t < layout.bound(i) for i, t in enumerate(totals)))
    assert layout.unpack(layout.pack(a) + layout.pack(b)) == tuple(totals)


def test_a_value_outside_its_slot_is_refused_and_a_top_overflow_detected() -> None:
    layout = SlotLayout((8, 8))
    with pytest.raises(ValueError, match="slot 1"):
        layout.pack([0, 128])
    with pytest.raises(ValueError, match="slot 0"):
        layout.pack([-129, 0])
    with pytest.raises(ValueError, match="top slot"):
        layout.unpack(layout.pack([0, 127]) + layout.pack([0, 1]))
    with pytest.raises(ValueError, match="at least 2 bits"):
        SlotLayout((8, 1))


def test_capacity_is_checked_against_members_and_modulus() -> None:
    layout = SlotLayout((10, 10))
    layout.check_capacity([10, 10], members=51, modulus_bits=64)  # 510 < 512
    with pytest.raises(ValueError, match="slot 1: 52 members"):
        layout.check_capacity([9, 11], members=52, modulus_bits=64)
    with pytest.raises(ValueError, match="below n/2"):
        layout.check_capacity([1, 1], members=1, modulus_bits=21)


def test_the_contribution_packing_fits_half_a_decryption_with_margin() -> None:
    # |total| < 2^(bits - 1) <= 2^SMALL_PLAINTEXT_BITS: the larger prime alone recovers it.
    assert PACKING.bits == 979 <= SMALL_PLAINTEXT_BITS + 1 < MIN_MODULUS_BITS // 2
    PACKING.check_capacity([MAX_FIXED_SHARE] * len(FIXED_FIELDS)
                           + [MAX_EXPOSURE - 1] * len(EXPOSURE_FIELDS),
                           MAX_MEMBERS, MIN_MODULUS_BITS)


_extreme_fixed = st.sampled_from([-MAX_ABS_PARTIAL, MAX_ABS_PARTIAL, 0.0, -1e-9, 1e-9])
_extreme_int = st.sampled_from([0, 1, MAX_EXPOSURE - 1])


@given(st.fixed_dictionaries(dict.fromkeys(FIXED_FIELDS, _extreme_fixed)
                             | dict.fromkeys(EXPOSURE_FIELDS, _extreme_int)),
       st.sampled_from([1, 2, 1000, MAX_MEMBERS]))
def test_the_largest_alliance_at_the_bounds_cannot_overflow(
    fields: dict[str, float], members: int
) -> None:
    """``members`` identical shares at the per-member bounds: the packed sum (``members`` times
    one packing) unpacks to exactly ``members`` times each field, and stays inside what half a
    decryption recovers."""
    vector = ContributionVector(**fields)  # type: ignore[arg-type]
    total = pack(vector) * members
    assert abs(total) < 2**SMALL_PLAINTEXT_BITS
    summed = unpack(total)
    for name, value in zip((*FIXED_FIELDS, *EXPOSURE_FIELDS), encode(vector), strict=True):
        got = getattr(summed, name)
        if name in FIXED_FIELDS:
            assert round(got * FIXED_POINT_SCALE) == value * members
        else:
            assert got == value * members


@given(st.lists(st.fixed_dictionaries(
    {n: st.floats(-MAX_ABS_PARTIAL, MAX_ABS_PARTIAL, allow_nan=False) for n in FIXED_FIELDS}
    | {n: st.integers(0, MAX_EXPOSURE - 1) for n in EXPOSURE_FIELDS}), min_size=1, max_size=6))
def test_packed_sums_equal_field_by_field_sums(members: list[dict[str, float]]) -> None:
    vectors = [ContributionVector(**m) for m in members]  # type: ignore[arg-type]
    total = unpack(sum(pack(v) for v in vectors))
    encoded = [encode(v) for v in vectors]
    expected = [sum(column) for column in zip(*encoded, strict=True)]
    assert [round(getattr(total, n) * FIXED_POINT_SCALE) for n in FIXED_FIELDS] == (
        expected[:len(FIXED_FIELDS)])
    assert [getattr(total, n) for n in EXPOSURE_FIELDS] == expected[len(FIXED_FIELDS):]
