"""The lending decision on a joint result: admission (approve / refer / decline with the rules
that fired), grade, credit limit and the adverse reasons in plain language.

Pure: the requester node applies it to the decrypted joint result and its own data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any

from scoring.installments import Capacity, PlanChoice, PlanOutcome, cents, choose_plan
from scoring.lending_policy import LendingPolicy, Metric, Outcome, Rule, grade_of
from scoring.products import TERMS_MONTHS, Matching, NoMatch, Product, match_products
from scoring.reason_slots import ReasonSlot
from scoring.scorecard import Grade

MAX_REASONS = 4


@dataclass(frozen=True)
class JointFacts:
    """What the decision sees: the joint score, the alliance-wide exposures (sums over every
    member that answered) and the applicant's verified annual income (``None``: unknown);
    the counts of members that flag the applicant or hold an active loan of theirs, and the
    joint log-odds each adverse-reason group adds (scoring.reason_slots)."""

    score: int
    outstanding_debt: Decimal
    active_loans: int
    open_credit_lines: int
    accounts_30dpd: int
    accounts_90dpd: int
    inquiries_90d: int
    institutions_with_records: int
    annual_income: Decimal | None
    institutions_with_active_loans: int = 0
    blacklist_flags: int = 0
    reason_slots: Mapping[ReasonSlot, float] = field(default_factory=dict)

    def metric(self, metric: Metric) -> float | None:
        """A rule's input; ``None`` when it cannot be computed (debt-to-income without an
        income)."""
        if metric is Metric.DEBT_TO_INCOME:
            if self.annual_income is None or self.annual_income <= 0:
                return None
            return float(self.outstanding_debt / self.annual_income)
        if metric is Metric.SCORE:
            return float(self.score)
        return float(getattr(self, metric.value))


@dataclass(frozen=True)
class Admission:
    outcome: Outcome
    fired: tuple[Rule, ...]
    #: Rules whose input is unknown (no income for debt-to-income): they refer, never approve.
    unevaluated: tuple[Rule, ...]


def admit(facts: JointFacts, policy: LendingPolicy) -> Admission:
    fired, unknown = [], []
    for rule in policy.rules:
        value = facts.metric(rule.metric)
        if value is None:
            unknown.append(rule)
        elif rule.fires(value):
            fired.append(rule)
    if any(r.outcome is Outcome.DECLINE for r in fired):
        outcome = Outcome.DECLINE
    elif fired or unknown:
        outcome = Outcome.REFER
    else:
        outcome = Outcome.APPROVE
    return Admission(outcome, tuple(fired), tuple(unknown))


def credit_limit(grade: Grade, annual_income: Decimal | None, alliance_debt: Decimal,
                 policy: LendingPolicy, product_cap: Decimal | None = None) -> Decimal | None:
    """``multiple(grade) x verified annual income - alliance debt``, capped by the product,
    never negative, rounded down to the currency unit; ``None`` without a verified income."""
    if annual_income is None or annual_income <= 0:
        return None
    raw = policy.limit_multiples[grade] * annual_income - alliance_debt
    if product_cap is not None:
        raw = min(raw, product_cap)
    return max(raw, Decimal(0)).to_integral_value(rounding=ROUND_FLOOR)


class ReasonCode(StrEnum):
    """Stable codes; the texts may be reworded, the codes never change meaning."""

    DELINQUENCY_90 = "RC01"
    DELINQUENCY_30 = "RC02"
    DEBT_TO_INCOME = "RC03"
    MANY_LOANS = "RC04"
    MANY_INQUIRIES = "RC05"
    LOW_SCORE = "RC06"
    THIN_FILE = "RC07"
    INCOME_UNKNOWN = "RC08"
    NO_CREDIT_ROOM = "RC09"
    FLAGGED = "RC10"
    PAYMENT_HISTORY = "RC11"
    AMOUNTS_OWED = "RC12"
    CREDIT_HISTORY = "RC13"
    NEW_CREDIT = "RC14"
    MANY_LENDERS = "RC15"


REASON_TEXT: dict[ReasonCode, str] = {
    ReasonCode.DELINQUENCY_90: "An account at an alliance member is 90 or more days past due.",
    ReasonCode.DELINQUENCY_30: "An account at an alliance member is 30 or more days past due.",
    ReasonCode.DEBT_TO_INCOME: "Existing debt is high compared with income.",
    ReasonCode.MANY_LOANS: "Several loans are already active across the alliance.",
    ReasonCode.MANY_INQUIRIES: "Many recent credit applications.",
    ReasonCode.LOW_SCORE: "The joint credit score is in a low band.",
    ReasonCode.THIN_FILE: "Little credit history is known to the alliance.",
    ReasonCode.INCOME_UNKNOWN: "Income could not be verified.",
    ReasonCode.NO_CREDIT_ROOM: "Existing debt leaves no room for new credit at this grade.",
    ReasonCode.FLAGGED: "An alliance member has flagged the applicant (fraud, litigation or "
                        "identity misuse); the lender does not learn which member or why.",
    ReasonCode.PAYMENT_HISTORY: "Payment history across the alliance (late or missed "
                                "payments) lowers the score most.",
    ReasonCode.AMOUNTS_OWED: "Amounts owed and credit used, compared with limits and income, "
                             "lower the score.",
    ReasonCode.CREDIT_HISTORY: "A short or limited credit history lowers the score.",
    ReasonCode.NEW_CREDIT: "Recently opened accounts and credit applications lower the score.",
    ReasonCode.MANY_LENDERS: "Active loans at several alliance members.",
}
#: Reason groups (joint reason-code slots) and the reason each one gives when it is adverse.
SLOT_REASON = {
    ReasonSlot.PAYMENT_HISTORY: ReasonCode.PAYMENT_HISTORY,
    ReasonSlot.AMOUNTS_OWED: ReasonCode.AMOUNTS_OWED,
    ReasonSlot.CREDIT_HISTORY: ReasonCode.CREDIT_HISTORY,
    ReasonSlot.NEW_CREDIT: ReasonCode.NEW_CREDIT,
}
#: Rule metrics and the reason each one gives when it fires.
_RULE_REASON = {
    Metric.ACCOUNTS_90DPD: ReasonCode.DELINQUENCY_90,
    Metric.ACCOUNTS_30DPD: ReasonCode.DELINQUENCY_30,
    Metric.DEBT_TO_INCOME: ReasonCode.DEBT_TO_INCOME,
    Metric.ACTIVE_LOANS: ReasonCode.MANY_LOANS,
    Metric.OPEN_CREDIT_LINES: ReasonCode.MANY_LOANS,
    Metric.INQUIRIES_90D: ReasonCode.MANY_INQUIRIES,
    Metric.INSTITUTIONS_WITH_RECORDS: ReasonCode.THIN_FILE,
    Metric.INSTITUTIONS_WITH_ACTIVE_LOANS: ReasonCode.MANY_LENDERS,
    Metric.BLACKLIST_FLAGS: ReasonCode.FLAGGED,
    Metric.SCORE: ReasonCode.LOW_SCORE,
}


@dataclass(frozen=True)
class Reason:
    code: ReasonCode
    text: str


def adverse_slots(facts: JointFacts, min_logit: Decimal) -> tuple[ReasonSlot, ...]:
    """The reason groups that add at least ``min_logit`` to the joint log-odds of default,
    the heaviest first (ties in the groups' fixed order)."""
    heavy = [(value, i, slot) for i, slot in enumerate(ReasonSlot)
             if (value := facts.reason_slots.get(slot, 0.0)) >= float(min_logit)]
    return tuple(slot for _, _, slot in sorted(heavy, key=lambda t: (-t[0], t[1])))


def adverse_reasons(facts: JointFacts, admission: Admission, grade: Grade,
                    no_credit_room: bool = False, slot_min_logit: Decimal = Decimal("0.1")
                    ) -> tuple[Reason, ...]:
    """Up to four adverse reasons, most serious first: the rules that fired (declines before
    refers, in policy order), then what the limit and the exposures show, then the joint
    reason-code slots (what weighs most on the score), then the grade and the file."""
    codes: list[ReasonCode] = []
    for rule in sorted(admission.fired, key=lambda r: r.outcome is not Outcome.DECLINE):
        codes.append(_RULE_REASON[rule.metric])
    if no_credit_room:
        codes.append(ReasonCode.NO_CREDIT_ROOM)
    if admission.unevaluated or facts.annual_income is None or facts.annual_income <= 0:
        codes.append(ReasonCode.INCOME_UNKNOWN)
    if facts.blacklist_flags > 0:
        codes.append(ReasonCode.FLAGGED)
    if facts.accounts_90dpd > 0:
        codes.append(ReasonCode.DELINQUENCY_90)
    if facts.accounts_30dpd > 0:
        codes.append(ReasonCode.DELINQUENCY_30)
    codes.extend(SLOT_REASON[slot] for slot in adverse_slots(facts, slot_min_logit))
    if grade in (Grade.D, Grade.E):
        codes.append(ReasonCode.LOW_SCORE)
    if facts.inquiries_90d >= 3:
        codes.append(ReasonCode.MANY_INQUIRIES)
    if facts.institutions_with_records == 0:
        codes.append(ReasonCode.THIN_FILE)
    unique = list(dict.fromkeys(codes))[:MAX_REASONS]
    return tuple(Reason(code, REASON_TEXT[code]) for code in unique)


@dataclass(frozen=True)
class Decision:
    admission: Admission
    grade: Grade
    limit: Decimal | None
    reasons: tuple[Reason, ...]
    #: The joint reason-code slots the reasons were read from (log-odds per group).
    reason_groups: Mapping[ReasonSlot, float] = field(default_factory=dict)


def decide(facts: JointFacts, policy: LendingPolicy, product_cap: Decimal | None = None
           ) -> Decision:
    grade = grade_of(facts.score, policy)
    admission = admit(facts, policy)
    limit = credit_limit(grade, facts.annual_income, facts.outstanding_debt, policy,
                         product_cap)
    if admission.outcome is Outcome.DECLINE and limit is not None:
        limit = Decimal(0)
    no_room = admission.outcome is not Outcome.DECLINE and limit == 0
    if no_room and admission.outcome is Outcome.APPROVE:  # nothing to lend: a person decides
        admission = Admission(Outcome.REFER, admission.fired, admission.unevaluated)
    return Decision(admission, grade, limit,
                    adverse_reasons(facts, admission, grade, no_credit_room=no_room,
                                    slot_min_logit=policy.reason_min_logit),
                    facts.reason_slots)


@dataclass(frozen=True)
class LendingOutcome:
    """Everything the lender reads beyond the score: the decision, the products that fit and
    the installment plan (none of them for a decline)."""

    decision: Decision
    products: Matching | None
    principal: Decimal | None  # what the plan lends: the top product's offer, or the request
    #                            bounded by the limit when no product applies
    apr: Decimal | None
    plan: PlanChoice | None


def lend(facts: JointFacts, policy: LendingPolicy, requested_amount: Decimal, term_months: int,
         monthly_spending: Decimal | None, products: Iterable[Product] = ()) -> LendingOutcome:
    if requested_amount <= 0:
        raise ValueError("the requested amount must be positive")
    decision = decide(facts, policy)
    if decision.admission.outcome is Outcome.DECLINE:
        return LendingOutcome(decision, None, None, None, None)
    if term_months in TERMS_MONTHS:
        matching = match_products(products, requested_amount, decision.limit, decision.grade,
                                  term_months)
    else:
        matching = Matching((), NoMatch.TERM_UNSUPPORTED, requested_amount)
    top = matching.matches[0] if matching.matches else None
    if top is not None:
        principal, apr = top.offered_amount, top.product.apr
    else:
        principal = (requested_amount if decision.limit is None
                     else min(requested_amount, decision.limit))
        apr = policy.plan_apr
    if principal <= 0:
        return LendingOutcome(decision, matching, None, None, PlanChoice(
            PlanOutcome.NO_CREDIT, None, None, "the credit limit leaves nothing to lend"))
    income = facts.annual_income
    capacity = Capacity(
        monthly_income=income / 12 if income is not None and income > 0 else None,
        monthly_spending=monthly_spending,
        monthly_debt_service=cents(facts.outstanding_debt * policy.debt_service_rate),
    )
    plan = choose_plan(principal, apr, capacity, policy.max_installment_share,
                       requested_months=term_months)
    return LendingOutcome(decision, matching, principal, apr, plan)


def _money(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def lending_document(outcome: LendingOutcome, policy: LendingPolicy) -> dict[str, Any]:
    """The outcome as the evaluation report stores and returns it (JSON types)."""
    decision = outcome.decision
    doc: dict[str, Any] = {
        "policy_version": policy.version,
        "decision": decision.admission.outcome.value,
        "rules_fired": [r.rule_id for r in decision.admission.fired],
        "rules_unevaluated": [r.rule_id for r in decision.admission.unevaluated],
        "grade": decision.grade.value,
        "credit_limit": _money(decision.limit),
        "reasons": [{"code": r.code.value, "text": r.text} for r in decision.reasons],
        "reason_groups": {slot.name.lower(): round(decision.reason_groups.get(slot, 0.0), 4)
                          for slot in ReasonSlot},
        "products": [],
        "products_note": None,
        "plan": None,
    }
    if outcome.products is not None:
        doc["products"] = [{
            "rank": m.rank, "product_id": m.product.product_id,
            "member_id": m.product.member_id, "name": m.product.name,
            "offered_amount": float(m.offered_amount), "apr": float(m.product.apr),
            "disbursement_days": m.product.disbursement_days, "reason": m.reason,
        } for m in outcome.products.matches]
        if outcome.products.none_because is not None:
            doc["products_note"] = outcome.products.none_because.value
    if outcome.plan is not None:
        plan = outcome.plan
        doc["plan"] = {
            "outcome": plan.outcome.value,
            "explanation": plan.explanation,
            "principal": _money(outcome.principal),
            "apr": _money(outcome.apr),
            "period": plan.schedule.period.value if plan.schedule else None,
            "installments": [{
                "number": i.number, "due_month": i.due_month, "payment": float(i.payment),
                "principal": float(i.principal), "interest": float(i.interest),
                "balance": float(i.balance),
            } for i in (plan.schedule.installments if plan.schedule else ())],
            "total_interest": _money(plan.schedule.total_interest if plan.schedule else None),
        }
    return doc
