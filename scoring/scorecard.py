"""Scorecard scaling (points to double the odds) and grades.

Score = offset + factor · ln(good:bad odds), factor = PDO / ln 2,
offset = base_score - factor · ln(base_odds). With the defaults (600 points at 50:1 good:bad
odds, 20 points to double the odds) a default probability of 50% scores ≈ 487, 10% ≈ 550
and 1% ≈ 620. Scores are clamped to [300, 900] for display; the probability is never clamped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

SCORE_MIN = 300
SCORE_MAX = 900


@dataclass(frozen=True)
class ScoreScale:
    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0

    def __post_init__(self) -> None:
        if self.pdo <= 0 or self.base_odds <= 0:
            raise ValueError("pdo and base_odds must be positive")

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        return self.base_score - self.factor * math.log(self.base_odds)


class Grade(StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"


#: Lower score bounds of each grade, best first.
GRADE_FLOORS: tuple[tuple[Grade, int], ...] = (
    (Grade.A, 620),  # P(default) below about 1%
    (Grade.B, 580),  # below about 4%
    (Grade.C, 540),  # below about 14%
    (Grade.D, 500),  # below about 39%
    (Grade.E, SCORE_MIN),
)


def default_probability(logit: float) -> float:
    """P(default) from the joint logit (log-odds of default), numerically stable."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    e = math.exp(logit)
    return e / (1.0 + e)


def score_from_logit(logit: float, scale: ScoreScale) -> int:
    """PDO-scaled score; the good:bad log-odds are -logit."""
    raw = scale.offset + scale.factor * (-logit)
    return round(min(max(raw, SCORE_MIN), SCORE_MAX))


def grade_for(score: int) -> Grade:
    for grade, floor in GRADE_FLOORS:
        if score >= floor:
            return grade
    return Grade.E


def bin_points(weight: float, woe: Sequence[float], scale: ScoreScale) -> tuple[float, ...]:
    """Points of each bin of one feature: ``-factor · w · WOE_b`` (riskier bin, fewer points)."""
    return tuple(-scale.factor * weight * w for w in woe)


def base_points(intercept: float, scale: ScoreScale) -> float:
    """Points every applicant starts from: ``offset - factor · intercept``."""
    return scale.offset - scale.factor * intercept


def score_range(base: float, points: Sequence[Sequence[float]]) -> tuple[float, float]:
    """Lowest and highest raw score a scorecard can give (before display clamping)."""
    low = base + sum(min(p) for p in points if p)
    high = base + sum(max(p) for p in points if p)
    return low, high
