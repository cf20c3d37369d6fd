"""A member's slice of the joint logistic model and its partial logit.

The joint model is ``logit = intercept + Σ_members Σ_j w_j · z_j`` over each member's own
features, where ``z_j`` is either a standardized value ``(x_j - mean_j) / scale_j``
(:class:`FeatureWeight`, the demo's bootstrap model; a missing value contributes 0, i.e. it is
imputed at the training mean) or the weight of evidence of the bin ``x_j`` falls in
(:class:`BinnedFeature`, what federated training produces; a missing value takes the missing
bin's WOE). A member holds only its own features' weights, bins and WOE. The intercept and
score scaling are held by every member because any member may be the requester.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from scoring.binning import Binning
from scoring.reason_slots import ReasonSlot, default_slot, parse_slot
from scoring.scorecard import ScoreScale


@dataclass(frozen=True)
class FeatureWeight:
    name: str
    weight: float
    mean: float = 0.0
    scale: float = 1.0
    #: The adverse-reason group, when the model file names one; else by name (reason_slots).
    reason: ReasonSlot | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and math.isfinite(self.mean)):
            raise ValueError(f"feature {self.name}: weight and mean must be finite")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"feature {self.name}: scale must be positive")


@dataclass(frozen=True)
class BinnedFeature:
    """A WOE-encoded feature: bin k holds ``edges[k-1] < x <= edges[k]``; see scoring.binning."""

    name: str
    edges: tuple[float, ...]
    missing_bin: int
    woe: tuple[float, ...]
    weight: float
    reason: ReasonSlot | None = None

    def __post_init__(self) -> None:
        Binning(self.name, self.edges, self.missing_bin)  # validates edges and missing bin
        bins = len(self.edges) + 1 + (1 if self.missing_bin == len(self.edges) + 1 else 0)
        if len(self.woe) != bins or not all(math.isfinite(w) for w in (*self.woe, self.weight)):
            raise ValueError(f"feature {self.name}: one finite WOE per bin and a finite weight")

    def contribution(self, x: float | None) -> float:
        if x is None or not math.isfinite(x):
            return self.weight * self.woe[self.missing_bin]
        return self.weight * self.woe[bisect_left(self.edges, x)]


@dataclass(frozen=True)
class ModelSlice:
    """One member's part of one model version."""

    model_version: str
    member_id: str
    intercept: float
    features: tuple[FeatureWeight | BinnedFeature, ...]
    scale: ScoreScale = field(default_factory=ScoreScale)
    #: False for a trained host's slice: it has no intercept, so its member cannot be the
    #: requester with this model version (only the contributions are its to give).
    can_request: bool = True

    def partial_logit(self, values: Mapping[str, float]) -> float:
        """Σ w_j · z_j over this member's features (absent values: see the module docstring)."""
        return self.partials(values)[0]

    def partials(self, values: Mapping[str, float]) -> tuple[float, dict[ReasonSlot, float]]:
        """The partial logit and its split over the adverse-reason groups (the features of
        no group count in the total only)."""
        total = 0.0
        slots = dict.fromkeys(ReasonSlot, 0.0)
        for f in self.features:
            x = values.get(f.name)
            if isinstance(f, BinnedFeature):
                part = f.contribution(x)
            elif x is None or not math.isfinite(x):
                continue
            else:
                part = f.weight * (x - f.mean) / f.scale
            total += part
            slot = f.reason or default_slot(f.name)
            if slot is not None:
                slots[slot] += part
        return total, slots

    def partial_logits(self, columns: Mapping[str, npt.NDArray[np.float64]], rows: int
                       ) -> npt.NDArray[np.float64]:
        """:meth:`partial_logit` for ``rows`` subjects at once: ``columns`` maps a feature name
        to its values (NaN = absent); a feature without a column is absent for everyone."""
        total = np.zeros(rows, dtype=np.float64)
        for f in self.features:
            x = columns.get(f.name)
            missing = np.ones(rows, dtype=bool) if x is None else ~np.isfinite(x)
            if isinstance(f, BinnedFeature):
                woe = np.asarray(f.woe, dtype=np.float64)
                bins = np.full(rows, f.missing_bin, dtype=np.int64)
                if x is not None:
                    found = np.searchsorted(np.asarray(f.edges, dtype=np.float64), x,
                                            side="left")
                    bins = np.where(missing, bins, found)
                total += f.weight * woe[bins]
            elif x is not None:
                total += np.where(missing, 0.0, f.weight * (np.nan_to_num(x) - f.mean) / f.scale)
        return total

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "member_id": self.member_id,
            "intercept": self.intercept,
            "score_scale": {
                "base_score": self.scale.base_score,
                "base_odds": self.scale.base_odds,
                "pdo": self.scale.pdo,
            },
            "features": [_feature_to_dict(f) for f in self.features],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ModelSlice:
        """Either layout: standardized features, or binned ones (a federated training slice,
        whose extra keys — bins, counts, points — are for people and ignored here)."""
        scale = doc.get("score_scale") or {}
        return cls(
            model_version=str(doc["model_version"]),
            member_id=str(doc["member_id"]),
            intercept=float(doc.get("intercept", 0.0)),
            features=tuple(_feature_from_dict(f) for f in doc["features"]),
            scale=ScoreScale(**{k: float(v) for k, v in scale.items()}),
            can_request="intercept" in doc,
        )


def _feature_to_dict(f: FeatureWeight | BinnedFeature) -> dict[str, Any]:
    doc: dict[str, Any] = (
        {"name": f.name, "edges": list(f.edges), "missing_bin": f.missing_bin,
         "woe": list(f.woe), "weight": f.weight}
        if isinstance(f, BinnedFeature) else
        {"name": f.name, "weight": f.weight, "mean": f.mean, "scale": f.scale}
    )
    if f.reason is not None:
        doc["reason"] = f.reason.name.lower()
    return doc


def _feature_from_dict(f: Mapping[str, Any]) -> FeatureWeight | BinnedFeature:
    name = str(f["name"])
    reason = parse_slot(str(f["reason"]), name) if f.get("reason") is not None else None
    if "edges" in f:
        return BinnedFeature(
            name=name,
            edges=tuple(float(e) for e in f["edges"]),
            missing_bin=int(f["missing_bin"]),
            woe=tuple(float(w) for w in f["woe"]),
            weight=float(f["weight"]),
            reason=reason,
        )
    return FeatureWeight(
        name=name,
        weight=float(f["weight"]),
        mean=float(f.get("mean", 0.0)),
        scale=float(f.get("scale", 1.0)),
        reason=reason,
    )
