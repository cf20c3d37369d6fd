"""What a party keeps after training: its own model slice (bins, WOE, weight and scorecard
points per feature) and, for the guest, the intercept, the scaling and its private metrics.

Each party writes only its own file; no party ever holds another's slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scoring.binning import Binning, WoeTable
from scoring.scorecard import ScoreScale, base_points, bin_points

SLICE_KIND = "woe-logistic/v1"


def feature_entries(
    binnings: Sequence[Binning], tables: Sequence[WoeTable], weights: Sequence[float],
    scale: ScoreScale,
) -> list[dict[str, Any]]:
    out = []
    for b, t, w in zip(binnings, tables, weights, strict=True):
        out.append({
            "name": b.feature,
            "edges": list(b.edges),
            "missing_bin": b.missing_bin,
            "bins": [b.describe(k) for k in range(b.n_bins)],
            "counts": list(t.counts),
            "woe": list(t.woe),
            "iv": t.iv,
            "weight": w,
            "points": [round(p, 4) for p in bin_points(w, t.woe, scale)],
        })
    return out


def slice_document(
    version: str, party: str, role: str, binnings: Sequence[Binning],
    tables: Sequence[WoeTable], weights: Sequence[float], scale: ScoreScale,
    intercept: float | None = None,
) -> dict[str, Any]:
    """The party's slice; loadable as a :class:`scoring.model.ModelSlice` (the node's model
    directory holds it as ``<version>.json``)."""
    doc: dict[str, Any] = {
        "kind": SLICE_KIND,
        "model_version": version,
        "member_id": party,
        "role": role,
        "features": feature_entries(binnings, tables, weights, scale),
    }
    if intercept is not None:
        doc["intercept"] = intercept
        doc["score_scale"] = {
            "base_score": scale.base_score, "base_odds": scale.base_odds, "pdo": scale.pdo,
        }
        doc["base_points"] = round(base_points(intercept, scale), 4)
    return doc


def binning_from_entry(entry: dict[str, Any]) -> tuple[Binning, WoeTable, float]:
    b = Binning(str(entry["name"]), tuple(float(e) for e in entry["edges"]),
                int(entry["missing_bin"]))
    t = WoeTable(b.feature, tuple(float(w) for w in entry["woe"]), float(entry["iv"]),
                 tuple(int(c) for c in entry["counts"]))
    return b, t, float(entry["weight"])
