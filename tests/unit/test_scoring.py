from __future__ import annotations

import math

import pytest

from mpc.contribution import ContributionVector
from scoring.assessment import assess
from scoring.model import FeatureWeight, ModelSlice
from scoring.scorecard import (
    SCORE_MAX,
    SCORE_MIN,
    Grade,
    ScoreScale,
    default_probability,
    grade_for,
    score_from_logit,
)

pytestmark = pytest.mark.unit
SCALE = ScoreScale(base_score=600, base_odds=50, pdo=20)


def test_base_odds_score_the_base_score() -> None:
    # good:bad 50:1 means log-odds of default = -ln 50
    assert score_from_logit(-math.log(50), SCALE) == 600


def test_doubling_the_good_odds_adds_pdo_points() -> None:
    assert score_from_logit(-math.log(100), SCALE) == 620
    assert score_from_logit(-math.log(25), SCALE) == 580


def test_scores_are_clamped_for_display_but_probability_is_not() -> None:
    assert score_from_logit(50.0, SCALE) == SCORE_MIN
    assert score_from_logit(-50.0, SCALE) == SCORE_MAX
    assert default_probability(800.0) == 1.0
    assert 0 < default_probability(-800.0) < 1e-300 or default_probability(-800.0) == 0.0


def test_default_probability_is_the_logistic_function() -> None:
    assert default_probability(0.0) == 0.5
    assert default_probability(math.log(3)) == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("score", "grade"),
    [(700, Grade.A), (620, Grade.A), (619, Grade.B), (580, Grade.B), (560, Grade.C),
     (520, Grade.D), (499, Grade.E), (300, Grade.E)],
)
def test_grade_bands(score: int, grade: Grade) -> None:
    assert grade_for(score) is grade


def test_partial_logit_standardizes_and_skips_missing_values() -> None:
    model = ModelSlice(
        model_version="v1",
        member_id="bank",
        intercept=-2.0,
        features=(FeatureWeight("income", -0.5, mean=100.0, scale=10.0),
                  FeatureWeight("dpd", 0.8)),
    )
    assert model.partial_logit({"income": 120.0, "dpd": 2.0}) == pytest.approx(-1.0 + 1.6)
    assert model.partial_logit({"income": 120.0}) == pytest.approx(-1.0)
    assert model.partial_logit({"income": float("nan")}) == 0.0
    assert ModelSlice.from_dict(model.to_dict()) == model


def test_invalid_feature_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="scale"):
        FeatureWeight("x", 1.0, scale=0.0)


def test_assessment_adds_the_intercept() -> None:
    result = assess(ContributionVector(model_partial=0.5), intercept=-2.0, scale=SCALE)
    assert result.logit == pytest.approx(-1.5)
    assert result.default_probability == pytest.approx(1 / (1 + math.exp(1.5)))
    assert result.grade is grade_for(result.score)


def test_a_binned_slice_scores_bin_woe_times_weight_and_missing_takes_its_bin() -> None:
    from scoring.model import BinnedFeature, ModelSlice
    from scoring.scorecard import ScoreScale, base_points, bin_points, score_range

    doc = {
        "kind": "woe-logistic/v1", "model_version": "trained-x", "member_id": "bank",
        "features": [{"name": "age", "edges": [30.0, 50.0], "missing_bin": 3,
                      "woe": [0.4, -0.1, -0.6, 0.2], "weight": 0.8,
                      "points": [0, 0, 0, 0], "counts": [1, 2, 3, 4]}],
    }
    host = ModelSlice.from_dict(doc)
    assert not host.can_request  # a trained host's slice has no intercept
    f = host.features[0]
    assert isinstance(f, BinnedFeature)
    assert host.partial_logit({"age": 30.0}) == pytest.approx(0.8 * 0.4)
    assert host.partial_logit({"age": 30.5}) == pytest.approx(0.8 * -0.1)
    assert host.partial_logit({"age": 99.0}) == pytest.approx(0.8 * -0.6)
    assert host.partial_logit({}) == pytest.approx(0.8 * 0.2)
    assert ModelSlice.from_dict(host.to_dict() | {"intercept": -1.2}).can_request
    # the scorecard: base points plus each bin's points is the PDO score of the logit
    scale = ScoreScale()
    points = bin_points(0.8, f.woe, scale)
    base = base_points(-1.2, scale)
    logit = -1.2 + host.partial_logit({"age": 40.0})
    assert base + points[1] == pytest.approx(scale.offset + scale.factor * (-logit))
    low, high = score_range(base, [points])
    assert low == pytest.approx(base + min(points)) and high == pytest.approx(base + max(points))
    with pytest.raises(ValueError):
        BinnedFeature("age", (30.0,), 0, (0.1,), 1.0)  # one WOE per bin
