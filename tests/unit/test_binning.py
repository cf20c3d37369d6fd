from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.binning import (
    Binning,
    bin_counts,
    merge_small_bins,
    quantile_edges,
    woe_encode,
    woe_table,
)

pytestmark = pytest.mark.unit


def test_assign_uses_right_closed_bins_and_a_missing_bin() -> None:
    b = Binning("age", (30.0, 50.0), missing_bin=3)
    values = np.array([18.0, 30.0, 30.5, 50.0, 70.0, np.nan])
    assert b.assign(values).tolist() == [0, 0, 1, 1, 2, 3]
    assert b.n_bins == 4
    assert [b.describe(k) for k in range(4)] == ["<= 30", "(30, 50]", "> 50", "missing"]


def test_missing_values_merged_into_the_largest_bin_are_described() -> None:
    b = Binning("x", (1.0,), missing_bin=0)
    assert b.n_bins == 2
    assert b.assign(np.array([np.nan]))[0] == 0
    assert b.describe(0) == "<= 1 or missing"


def test_invalid_binnings_are_refused() -> None:
    with pytest.raises(ValueError):
        Binning("x", (2.0, 1.0), missing_bin=0)
    with pytest.raises(ValueError):
        Binning("x", (1.0, math.inf), missing_bin=0)
    with pytest.raises(ValueError):
        Binning("x", (1.0,), missing_bin=5)


def test_quantile_edges_drop_duplicates_and_the_maximum() -> None:
    values = np.array([1.0] * 50 + [2.0] * 30 + [3.0] * 20 + [np.nan] * 7)
    assert quantile_edges(values, 10) == (1.0, 2.0)
    assert quantile_edges(np.array([np.nan, np.nan]), 10) == ()


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(math.nan)), min_size=1,
                    max_size=400),
    max_bins=st.integers(2, 20),
    min_size=st.integers(1, 60),
)
def test_no_merged_bin_describes_fewer_than_min_size_people(
    values: list[float], max_bins: int, min_size: int
) -> None:
    x = np.asarray(values, dtype=float)
    binning = merge_small_bins("x", x, quantile_edges(x, max_bins), min_size)
    counts = np.bincount(binning.assign(x), minlength=binning.n_bins)
    value_bins = len(binning.edges) + 1
    if value_bins > 1:  # a single value bin is the whole column: nothing left to merge
        assert all(c >= min_size for c in counts[:value_bins])
    if binning.n_bins > value_bins:  # missing values have a bin of their own
        assert counts[value_bins] >= min_size
    assert counts.sum() == len(x)


def test_woe_and_iv_match_the_definition() -> None:
    table = woe_table("x", bad=[10, 30], total=[100, 100])
    bad_share = np.array([10.5, 30.5]) / 41.0
    good_share = np.array([90.5, 70.5]) / 161.0
    expected = np.log(bad_share / good_share)
    assert table.woe == pytest.approx(tuple(expected))
    assert table.iv == pytest.approx(float(np.sum((bad_share - good_share) * expected)))
    assert table.woe[1] > 0 > table.woe[0]  # riskier bin, higher WOE
    assert woe_encode(np.array([1, 0, 1]), table).tolist() == pytest.approx(
        [expected[1], expected[0], expected[1]])


def test_inconsistent_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        woe_table("x", bad=[5, 50], total=[10, 40])


def test_plaintext_counts() -> None:
    bad, total = bin_counts(np.array([0, 1, 1, 2]), 3, np.array([1, 0, 1, 1]))
    assert bad == [1, 1, 1] and total == [1, 2, 1]
