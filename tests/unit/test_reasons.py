"""Reason-code slots, the blacklist count and the multi-lender count in the decision."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc.contribution import REASON_SLOT_FIELDS
from node.contribution import contribution_for
from node.ingest.snapshot import EXPOSURE_COLUMNS, SubjectRecord
from scoring.decision import JointFacts, ReasonCode, decide, lend, lending_document
from scoring.lending_policy import Outcome, default_policy
from scoring.model import FeatureWeight, ModelSlice
from scoring.reason_slots import ReasonSlot, default_slot, parse_slot
from tests.support.lending import facts

pytestmark = pytest.mark.unit
POLICY = default_policy()


def codes(f: JointFacts) -> list[ReasonCode]:
    return [r.code for r in decide(f, POLICY).reasons]


def test_slots_are_the_vector_fields_in_order() -> None:
    assert tuple(s.value for s in ReasonSlot) == REASON_SLOT_FIELDS


def test_catalog_features_fall_into_groups_and_protected_ones_never_do() -> None:
    assert default_slot("max_days_past_due") is ReasonSlot.PAYMENT_HISTORY
    assert default_slot("revolving_utilization") is ReasonSlot.AMOUNTS_OWED
    assert default_slot("oldest_account_months") is ReasonSlot.CREDIT_HISTORY
    assert default_slot("inquiries_window") is ReasonSlot.NEW_CREDIT
    assert default_slot("PAY_0") is ReasonSlot.PAYMENT_HISTORY
    assert default_slot("pay_amt3") is ReasonSlot.PAYMENT_HISTORY
    assert default_slot("BILL_AMT1") is ReasonSlot.AMOUNTS_OWED
    for never in ("age_years", "AGE", "SEX", "MARRIAGE", "EDUCATION", "income_monthly",
                  "declared_income_monthly", "gambling_share", "PAY_"):
        assert default_slot(never) is None, never
    assert parse_slot("new_credit", "x") is ReasonSlot.NEW_CREDIT
    with pytest.raises(ValueError, match="feature x: reason must be one of"):
        parse_slot("character", "x")


_values = st.floats(-1e3, 1e3, allow_nan=False)


@given(st.fixed_dictionaries({"max_days_past_due": _values, "total_balance": _values,
                              "age_years": _values, "loans_opened_window": _values,
                              "custom": _values}))
def test_the_groups_and_the_ungrouped_features_add_up_to_the_partial(values: dict[str, float]
                                                                      ) -> None:
    model = ModelSlice("v", "m", -1.0, (
        FeatureWeight("max_days_past_due", 0.5, 10, 5), FeatureWeight("total_balance", 0.2),
        FeatureWeight("age_years", -0.3, 40, 10), FeatureWeight("loans_opened_window", 0.1),
        FeatureWeight("custom", 1.0, reason=ReasonSlot.CREDIT_HISTORY)))
    total, slots = model.partials(values)
    ungrouped = -0.3 * (values["age_years"] - 40) / 10
    assert sum(slots.values()) + ungrouped == pytest.approx(total, abs=1e-6)
    assert slots[ReasonSlot.CREDIT_HISTORY] == pytest.approx(values["custom"])
    assert total == model.partial_logit(values)


def test_an_explicit_reason_round_trips_through_the_model_file() -> None:
    model = ModelSlice("v", "m", 0.0, (FeatureWeight("custom", 1.0,
                                                      reason=ReasonSlot.NEW_CREDIT),))
    doc = model.to_dict()
    assert doc["features"][0]["reason"] == "new_credit"
    assert ModelSlice.from_dict(doc) == model
    doc["features"][0]["reason"] = "mood"
    with pytest.raises(ValueError, match="feature custom: reason"):
        ModelSlice.from_dict(doc)


def test_a_member_contributes_its_flag_even_without_a_record() -> None:
    model = ModelSlice("v", "m", 0.0, (FeatureWeight("max_days_past_due", 1.0),))
    assert contribution_for(None, model, flagged=True).flagged == 1
    assert contribution_for(None, model).flagged == 0
    none = contribution_for(None, model, flagged=True)
    assert none.has_record == 0 and none.model_partial == 0 and none.with_active_loans == 0
    exposures = dict.fromkeys(EXPOSURE_COLUMNS, 0) | {"active_loans": 2}
    record = SubjectRecord(exposures, {"max_days_past_due": 30.0})
    vector = contribution_for(record, model)
    assert vector.with_active_loans == 1 and vector.active_loans == 2 and vector.flagged == 0
    assert vector.reason_payment_history == vector.model_partial == 30.0
    lines_only = SubjectRecord(dict.fromkeys(EXPOSURE_COLUMNS, 0) | {"open_credit_lines": 3}, {})
    assert contribution_for(lines_only, model).with_active_loans == 0


def test_blacklist_flags_refer_once_and_decline_twice_without_naming_anyone() -> None:
    once = decide(facts(blacklist_flags=1), POLICY)
    assert once.admission.outcome is Outcome.REFER
    assert [r.rule_id for r in once.admission.fired] == ["FLAGGED"]
    assert once.reasons[0].code is ReasonCode.FLAGGED
    assert "which member" in once.reasons[0].text
    twice = decide(facts(blacklist_flags=2), POLICY)
    assert twice.admission.outcome is Outcome.DECLINE and twice.limit == 0
    assert codes(facts(blacklist_flags=2)).count(ReasonCode.FLAGGED) == 1
    assert ReasonCode.FLAGGED not in codes(facts())


def test_active_loans_at_three_members_refer() -> None:
    decision = decide(facts(institutions_with_active_loans=3), POLICY)
    assert decision.admission.outcome is Outcome.REFER
    assert decision.reasons[0].code is ReasonCode.MANY_LENDERS


def test_reasons_come_from_the_joint_slots_heaviest_first_above_the_threshold() -> None:
    slots = {ReasonSlot.PAYMENT_HISTORY: 0.3, ReasonSlot.AMOUNTS_OWED: 0.8,
             ReasonSlot.CREDIT_HISTORY: 0.05, ReasonSlot.NEW_CREDIT: -0.9}
    assert codes(facts(reason_slots=slots)) == [ReasonCode.AMOUNTS_OWED,
                                                ReasonCode.PAYMENT_HISTORY]
    # Hard facts come before what the model weighs; four at most.
    mixed = codes(facts(reason_slots=slots, accounts_30dpd=1, blacklist_flags=1,
                        score=545))
    assert mixed == [ReasonCode.FLAGGED, ReasonCode.DELINQUENCY_30, ReasonCode.AMOUNTS_OWED,
                     ReasonCode.PAYMENT_HISTORY]
    # A rule that fires comes first: grade D's LOW_SCORE refers, and the fourth reason goes.
    low = codes(facts(reason_slots=slots, accounts_30dpd=1, blacklist_flags=1, score=510))
    assert low == [ReasonCode.FLAGGED, ReasonCode.LOW_SCORE, ReasonCode.DELINQUENCY_30,
                   ReasonCode.AMOUNTS_OWED]


@given(st.dictionaries(st.sampled_from(list(ReasonSlot)), st.floats(-5, 5)))
def test_slot_reasons_are_exactly_the_heavy_groups_in_weight_order(
    slots: dict[ReasonSlot, float]
) -> None:
    named = [c for c in codes(facts(reason_slots=slots))
             if c in {ReasonCode.PAYMENT_HISTORY, ReasonCode.AMOUNTS_OWED,
                      ReasonCode.CREDIT_HISTORY, ReasonCode.NEW_CREDIT}]
    heavy = sorted((s for s in slots if slots[s] >= 0.1), key=lambda s: -slots[s])
    assert len(named) == len(heavy)
    weights = [slots[ReasonSlot[c.name]] for c in named]
    assert weights == sorted(weights, reverse=True)


def test_the_report_carries_the_groups_and_the_counts() -> None:
    slots = {ReasonSlot.PAYMENT_HISTORY: 0.31234567}
    outcome = lend(facts(reason_slots=slots), POLICY, Decimal(1000), 12, Decimal(1000))
    doc = lending_document(outcome, POLICY)
    assert doc["reason_groups"] == {"payment_history": 0.3123, "amounts_owed": 0.0,
                                    "credit_history": 0.0, "new_credit": 0.0}
    assert doc["reasons"][0]["code"] == "RC11"
