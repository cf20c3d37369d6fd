"""A member's slice of the joint logistic model and its partial logit.

The joint model is ``logit = intercept + Σ_members Σ_j w_j · z_j`` with
``z_j = (x_j - mean_j) / scale_j`` over each member's own features. A member holds only its
own features' weights and standardization; a missing feature value (or a subject the member
has no record for) contributes 0, i.e. it is imputed at the training mean. The intercept and
score scaling are held by every member because any member may be the requester.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scoring.scorecard import ScoreScale


@dataclass(frozen=True)
class FeatureWeight:
    name: str
    weight: float
    mean: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and math.isfinite(self.mean)):
            raise ValueError(f"feature {self.name}: weight and mean must be finite")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"feature {self.name}: scale must be positive")


@dataclass(frozen=True)
class ModelSlice:
    """One member's part of one model version."""

    model_version: str
    member_id: str
    intercept: float
    features: tuple[FeatureWeight, ...]
    scale: ScoreScale = field(default_factory=ScoreScale)

    def partial_logit(self, values: Mapping[str, float]) -> float:
        """Σ w_j · z_j over this member's features; absent or NaN values contribute 0."""
        total = 0.0
        for f in self.features:
            x = values.get(f.name)
            if x is None or not math.isfinite(x):
                continue
            total += f.weight * (x - f.mean) / f.scale
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
            "features": [
                {"name": f.name, "weight": f.weight, "mean": f.mean, "scale": f.scale}
                for f in self.features
            ],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ModelSlice:
        scale = doc.get("score_scale") or {}
        return cls(
            model_version=str(doc["model_version"]),
            member_id=str(doc["member_id"]),
            intercept=float(doc["intercept"]),
            features=tuple(
                FeatureWeight(
                    name=str(f["name"]),
                    weight=float(f["weight"]),
                    mean=float(f.get("mean", 0.0)),
                    scale=float(f.get("scale", 1.0)),
                )
                for f in doc["features"]
            ),
            scale=ScoreScale(**{k: float(v) for k, v in scale.items()}),
        )

