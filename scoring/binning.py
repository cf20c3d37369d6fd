"""Binning, weight of evidence and information value — the pure half.

A feature holder bins its own column (quantile edges, computed with Spark at the nodes or
exactly here for small data), merges every bin smaller than the minimum size into a neighbour
*before* anything about the bin leaves it (so no total ever describes one person), and learns
each bin's WOE from the label holder. Missing values get a bin of their own when there are
enough of them, else they join the largest bin.

WOE and IV follow the credit-scoring convention with *bad* = label 1 (default):
``WOE_b = ln(bad_share_b / good_share_b)`` (higher WOE = riskier, so a positive weight in the
logit), ``IV = Σ_b (bad_share_b - good_share_b) · WOE_b``; counts are smoothed by
:data:`SMOOTHING` so an all-good or all-bad bin has a finite WOE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SMOOTHING = 0.5
#: Bin index of missing values when they have a bin of their own (see :class:`Binning`).
MISSING = -1

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Binning:
    """Cut points of one feature: bin k holds ``edges[k-1] < x <= edges[k]`` (open ends).

    ``missing_bin`` is the index missing values go to: ``len(edges) + 1`` (a bin of their own)
    or the index of the bin they were merged into.
    """

    feature: str
    edges: tuple[float, ...]
    missing_bin: int

    def __post_init__(self) -> None:
        if any(not math.isfinite(e) for e in self.edges):
            raise ValueError(f"feature {self.feature}: bin edges must be finite")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"feature {self.feature}: bin edges must increase strictly")
        if not 0 <= self.missing_bin <= len(self.edges) + 1:
            raise ValueError(f"feature {self.feature}: missing bin out of range")

    @property
    def n_bins(self) -> int:
        """Value bins plus the missing bin when it is a bin of its own."""
        return len(self.edges) + 1 + (1 if self.missing_bin == len(self.edges) + 1 else 0)

    def assign(self, values: FloatArray) -> IntArray:
        """Bin index of every value (NaN → the missing bin)."""
        idx = np.searchsorted(np.asarray(self.edges, dtype=float), values, side="left")
        idx = idx.astype(np.int64)
        idx[np.isnan(values)] = self.missing_bin
        return idx

    def describe(self, k: int) -> str:
        """Human-readable range of bin k, for scorecards."""
        labels = []
        if k == len(self.edges) + 1:
            return "missing"
        lo = self.edges[k - 1] if k > 0 else None
        hi = self.edges[k] if k < len(self.edges) else None
        if lo is None and hi is None:
            labels.append("all values")
        elif lo is None:
            labels.append(f"<= {hi:g}")
        elif hi is None:
            labels.append(f"> {lo:g}")
        else:
            labels.append(f"({lo:g}, {hi:g}]")
        if k == self.missing_bin:
            labels.append("or missing")
        return " ".join(labels)


@dataclass(frozen=True)
class WoeTable:
    """Each bin's WOE and the feature's IV, as the label holder computed them."""

    feature: str
    woe: tuple[float, ...]
    iv: float
    counts: tuple[int, ...]


def quantile_edges(values: FloatArray, max_bins: int) -> tuple[float, ...]:
    """Exact quantile cut points of the non-missing values (duplicates dropped)."""
    present = values[~np.isnan(values)]
    if present.size == 0 or max_bins < 2:
        return ()
    qs = np.quantile(present, np.linspace(0.0, 1.0, max_bins + 1)[1:-1], method="lower")
    top = float(present.max())
    return tuple(float(q) for q in np.unique(qs) if q < top)


def merge_small_bins(
    feature: str, values: FloatArray, edges: Sequence[float], min_size: int
) -> Binning:
    """Drop cut points until every value bin holds at least ``min_size`` values.

    Greedy: the smallest bin is merged with its smaller neighbour, repeatedly; then the missing
    values get a bin of their own if there are ``min_size`` of them, else they join the largest
    value bin. The result never has a non-empty bin below ``min_size`` unless the whole column
    has fewer values than that (then there is one bin).
    """
    cuts = list(edges)
    present = values[~np.isnan(values)]
    while cuts:
        counts = np.bincount(
            np.searchsorted(np.asarray(cuts), present, side="left"), minlength=len(cuts) + 1
        )
        smallest = int(np.argmin(counts))
        if counts[smallest] >= min_size:
            break
        if smallest == 0:
            del cuts[0]
        elif smallest == len(cuts):
            del cuts[-1]
        elif counts[smallest - 1] <= counts[smallest + 1]:
            del cuts[smallest - 1]
        else:
            del cuts[smallest]
    n_missing = int(np.isnan(values).sum())
    if n_missing >= min_size:
        missing_bin = len(cuts) + 1
    else:
        counts = np.bincount(
            np.searchsorted(np.asarray(cuts), present, side="left"), minlength=len(cuts) + 1
        )
        missing_bin = int(np.argmax(counts))
    return Binning(feature=feature, edges=tuple(cuts), missing_bin=missing_bin)


def woe_table(feature: str, bad: Sequence[int], total: Sequence[int]) -> WoeTable:
    """WOE per bin and IV from per-bin default counts and totals."""
    bad_a = np.asarray(bad, dtype=float)
    tot_a = np.asarray(total, dtype=float)
    if bad_a.shape != tot_a.shape or np.any(bad_a < 0) or np.any(bad_a > tot_a):
        raise ValueError(f"feature {feature}: per-bin counts are inconsistent")
    good_a = tot_a - bad_a
    n_bins = len(bad_a)
    bad_share = (bad_a + SMOOTHING) / (bad_a.sum() + SMOOTHING * n_bins)
    good_share = (good_a + SMOOTHING) / (good_a.sum() + SMOOTHING * n_bins)
    woe = np.log(bad_share / good_share)
    iv = float(np.sum((bad_share - good_share) * woe))
    return WoeTable(
        feature=feature,
        woe=tuple(float(w) for w in woe),
        iv=iv,
        counts=tuple(int(t) for t in tot_a),
    )


def woe_encode(bins: IntArray, table: WoeTable) -> FloatArray:
    """Replace bin indices by their WOE."""
    return np.asarray(table.woe, dtype=float)[bins]


def bin_counts(bins: IntArray, n_bins: int, labels: IntArray) -> tuple[list[int], list[int]]:
    """Plaintext per-bin (bad, total) — the label holder's own features, and the tests."""
    total = np.bincount(bins, minlength=n_bins)
    bad = np.bincount(bins, weights=labels.astype(float), minlength=n_bins)
    return [round(b) for b in bad], [int(t) for t in total]
