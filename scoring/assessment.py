"""From the decrypted joint total to the credit assessment a lender reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mpc.contribution import ContributionVector
from scoring.scorecard import (
    GRADE_FLOORS,
    SCORE_MAX,
    SCORE_MIN,
    Grade,
    ScoreScale,
    default_probability,
    grade_for,
    score_from_logit,
)


@dataclass(frozen=True)
class Assessment:
    logit: float
    default_probability: float
    score: int
    grade: Grade


def assess(total: ContributionVector, intercept: float, scale: ScoreScale) -> Assessment:
    """Score the joint total (which already includes the requester's own contribution)."""
    logit = intercept + total.model_partial
    score = score_from_logit(logit, scale)
    return Assessment(
        logit=logit,
        default_probability=default_probability(logit),
        score=score,
        grade=grade_for(score),
    )


@dataclass(frozen=True)
class Assessments:
    """:func:`assess` for many subjects at once (portfolio jobs), same formulas."""

    logits: npt.NDArray[np.float64]
    default_probabilities: npt.NDArray[np.float64]
    scores: npt.NDArray[np.int64]
    grades: npt.NDArray[np.str_]


def assess_many(partials: npt.NDArray[np.float64], intercept: float, scale: ScoreScale
                ) -> Assessments:
    """Score joint totals of the model partial (the requester's own share included)."""
    logits = intercept + partials
    e = np.exp(-np.abs(logits))
    probabilities = np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    raw = scale.offset + scale.factor * (-logits)
    scores = np.round(np.clip(raw, SCORE_MIN, SCORE_MAX)).astype(np.int64)
    grades = np.full(len(scores), Grade.E.value, dtype="<U1")
    for grade, floor in reversed(GRADE_FLOORS):
        grades[scores >= floor] = grade.value
    return Assessments(logits, probabilities, scores, grades)
