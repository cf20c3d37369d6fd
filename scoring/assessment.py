"""From the decrypted joint total to the credit assessment a lender reads."""

from __future__ import annotations

from dataclasses import dataclass

from mpc.contribution import ContributionVector
from scoring.scorecard import Grade, ScoreScale, default_probability, grade_for, score_from_logit


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
