"""Lending decisions: schedules to the cent, plans within the surplus, the repayment simulation,
limits, grades, admission rules, reasons, and the policy file's refusals (with their line)."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.decision import (
    MAX_REASONS,
    ReasonCode,
    admit,
    adverse_reasons,
    credit_limit,
    decide,
)
from scoring.installments import (
    INSTALLMENT_COUNTS,
    Capacity,
    Period,
    PlanOutcome,
    cents,
    choose_plan,
    schedule,
    simulate,
)
from scoring.lending_policy import (
    DEFAULT_POLICY_YAML,
    Outcome,
    PolicyError,
    default_policy,
    grade_of,
    load_policy,
)
from scoring.products import NoMatch, Product, ProductError, match_products
from scoring.scorecard import Grade
from tests.support.lending import facts

pytestmark = pytest.mark.unit
POLICY = default_policy()
RULES_BLOCK = DEFAULT_POLICY_YAML[DEFAULT_POLICY_YAML.index("rules:"):
                                  DEFAULT_POLICY_YAML.index("grades:")]
money = st.decimals(min_value=Decimal("100"), max_value=Decimal("500000"), places=2)
aprs = st.decimals(min_value=Decimal("0"), max_value=Decimal("0.36"), places=4)


# -- schedules --------------------------------------------------------------------------------
@settings(max_examples=300)
@given(principal=money, apr=aprs, period=st.sampled_from(Period),
       count=st.sampled_from(INSTALLMENT_COUNTS))
def test_a_schedule_sums_to_principal_plus_interest_to_the_cent(
    principal: Decimal, apr: Decimal, period: Period, count: int
) -> None:
    plan = schedule(principal, apr, period, count)
    rows = plan.installments
    assert plan.count == count
    assert sum(r.principal for r in rows) == principal
    assert plan.total_paid == principal + plan.total_interest
    assert all(r.payment == r.principal + r.interest for r in rows)
    assert rows[-1].balance == 0 and all(r.balance >= 0 for r in rows)
    assert all(r.payment.as_tuple().exponent == -2 for r in rows)  # whole cents
    assert len({r.payment for r in rows[:-1]}) <= 1  # level payments; the last takes rounding
    # The last payment absorbs the level payment's rounding (<= half a cent) and each
    # interest rounding (<= half a cent), compounded over the plan: at most a cent per period,
    # grown at the period rate.
    rate = float(apr) * period.months / 12
    growth = count if rate == 0 else ((1 + rate) ** count - 1) / rate
    assert abs(rows[-1].payment - rows[0].payment) <= Decimal(str(0.01 * growth + 0.01))
    assert [r.due_month for r in rows] == [period.months * k for k in range(1, count + 1)]
    if apr == 0:
        assert plan.total_interest == 0


def test_a_known_annuity() -> None:
    plan = schedule(Decimal("1200"), Decimal("0.12"), Period.MONTHLY, 12)
    assert plan.installments[0].payment == Decimal("106.62")
    assert plan.installments[0].interest == Decimal("12.00")
    assert plan.total_interest == Decimal("79.42")


def test_bad_schedules_are_refused() -> None:
    for args in ((Decimal(0), Decimal("0.1"), 3), (Decimal(100), Decimal("-0.1"), 3),
                 (Decimal(100), Decimal("0.1"), 0)):
        with pytest.raises(ValueError):
            schedule(args[0], args[1], Period.MONTHLY, args[2])


# -- plans ------------------------------------------------------------------------------------
@settings(max_examples=200)
@given(principal=money, apr=aprs,
       income=st.decimals(min_value=Decimal("500"), max_value=Decimal("50000"), places=2),
       spending_share=st.decimals(min_value=Decimal("0"), max_value=Decimal("1.2"), places=2),
       share=st.decimals(min_value=Decimal("0.05"), max_value=Decimal("1"), places=2))
def test_the_plan_is_the_shortest_that_keeps_within_the_share_of_the_surplus(
    principal: Decimal, apr: Decimal, income: Decimal, spending_share: Decimal, share: Decimal
) -> None:
    capacity = Capacity(income, income * spending_share, Decimal("100"))
    choice = choose_plan(principal, apr, capacity, share)
    surplus = income - income * spending_share - 100
    options = sorted(((c * p.months, p.months, p, c) for p in Period for c in INSTALLMENT_COUNTS),
                     key=lambda o: o[:2])
    if surplus <= 0:
        assert choice.outcome is PlanOutcome.NO_SURPLUS and choice.schedule is None
        return
    assert choice.ceiling_per_month is not None
    affordable = [o for o in options
                  if schedule(principal, apr, o[2], o[3]).largest_payment
                  <= choice.ceiling_per_month * o[1]]
    if not affordable:
        assert choice.outcome is PlanOutcome.UNAFFORDABLE and choice.schedule is None
        return
    assert choice.outcome is PlanOutcome.PLANNED and choice.schedule is not None
    _, months, period, count = affordable[0]
    assert (choice.schedule.period, choice.schedule.count) == (period, count)
    assert choice.schedule.largest_payment <= choice.ceiling_per_month * months


@settings(max_examples=200)
@given(principal=money, apr=aprs,
       income=st.decimals(min_value=Decimal("500"), max_value=Decimal("50000"), places=2),
       requested=st.sampled_from([3, 6, 9, 12, 18, 24, 36]))
def test_the_requested_term_is_kept_when_affordable_and_a_departure_is_explained(
    principal: Decimal, apr: Decimal, income: Decimal, requested: int
) -> None:
    capacity = Capacity(income, income / 2, Decimal(0))
    share = Decimal("0.4")
    choice = choose_plan(principal, apr, capacity, share, requested_months=requested)
    ceiling = cents(income / 2 * share)
    fits = [(p, c) for p in Period for c in INSTALLMENT_COUNTS
            if p.months * c == requested
            and schedule(principal, apr, p, c).largest_payment <= ceiling * p.months]
    if fits:
        assert choice.schedule is not None
        assert (choice.schedule.period, choice.schedule.count) == min(
            fits, key=lambda f: f[0].months)
        assert "requested" not in choice.explanation
    elif choice.schedule is not None:
        length = choice.schedule.period.months * choice.schedule.count
        assert f"{length} months instead of the {requested} requested" in choice.explanation
    # Without a requested term: the shortest affordable, as before.
    plain = choose_plan(principal, apr, capacity, share)
    assert choice.outcome is plain.outcome


@pytest.mark.parametrize("income", [None, Decimal(0), Decimal(-5)])
def test_without_an_income_the_plan_says_so_and_divides_by_nothing(income: Decimal | None
                                                                   ) -> None:
    capacity = Capacity(income, Decimal(500), Decimal(0))
    choice = choose_plan(Decimal(1000), Decimal("0.1"), capacity, Decimal("0.4"))
    assert choice.outcome is PlanOutcome.INCOME_UNKNOWN and choice.schedule is None
    assert "cannot be computed" in choice.explanation
    with pytest.raises(ValueError, match="income"):
        simulate(schedule(Decimal(1000), Decimal("0.1"), Period.MONTHLY, 3), [], capacity)


# -- simulation -------------------------------------------------------------------------------
def test_the_simulation_carries_what_is_unpaid_into_the_next_period() -> None:
    plan = schedule(Decimal("1200"), Decimal("0"), Period.MONTHLY, 3)  # 400 a month
    capacity = Capacity(Decimal("5000"), Decimal("2000"), Decimal(0))  # spending 40 %
    periods = simulate(plan, [Decimal(400), Decimal(100), Decimal(1000)], capacity)
    first, second, third = periods
    assert (first.due, first.carried_out, first.progress) == (400, 0, 1.0)
    assert (second.carried_in, second.due, second.carried_out) == (0, 400, 300)
    assert second.progress == pytest.approx(500 / 800)
    assert (third.carried_in, third.due, third.carried_out) == (300, 700, 0)
    assert third.progress == pytest.approx(1500 / 1200)
    assert third.alpha == pytest.approx(math.log(700) * 0.4)


@given(count=st.sampled_from(INSTALLMENT_COUNTS), paid_share=st.floats(0, 1.5))
def test_carry_over_accounts_for_every_unpaid_cent(count: int, paid_share: float) -> None:
    plan = schedule(Decimal("2400"), Decimal("0.1"), Period.MONTHLY, count)
    payments = [(r.payment * Decimal(str(round(paid_share, 2)))).quantize(Decimal("0.01"))
                for r in plan.installments]
    periods = simulate(plan, payments, Capacity(Decimal(3000), Decimal(900), Decimal(0)))
    for p in periods:
        assert p.due == p.expected + p.carried_in and p.carried_out == max(p.due - p.paid, 0)
        assert p.alpha == pytest.approx(math.log(p.due) * 0.3)
    expected = sum(r.payment for r in plan.installments)
    if paid_share <= 1:
        assert periods[-1].carried_out == expected - sum(payments)


# -- limits, grades, admission, reasons --------------------------------------------------------
@given(score=st.integers(300, 900), income=st.decimals(0, 10**6, places=2) | st.none(),
       debt=st.decimals(0, 10**6, places=2), cap=st.decimals(0, 10**6, places=0) | st.none())
def test_a_limit_is_never_negative_whole_capped_and_better_for_a_better_grade(
    score: int, income: Decimal | None, debt: Decimal, cap: Decimal | None
) -> None:
    limits = [credit_limit(g, income, debt, POLICY, cap) for g in Grade]
    if income is None or income == 0:
        assert limits == [None] * len(limits)
        return
    for limit in limits:
        assert limit is not None and limit >= 0 and limit == limit.to_integral_value()
        assert cap is None or limit <= cap
    assert all(a >= b for a, b in itertools.pairwise(limits))  # type: ignore[operator]


@given(st.integers(300, 900), st.integers(300, 900))
def test_grades_are_monotone_in_the_score(a: int, b: int) -> None:
    order = list(Grade)
    low, high = sorted((a, b))
    assert order.index(grade_of(high, POLICY)) <= order.index(grade_of(low, POLICY))


def test_admission_rules() -> None:
    assert admit(facts(), POLICY).outcome is Outcome.APPROVE
    declined = admit(facts(accounts_90dpd=1, institutions_with_active_loans=3), POLICY)
    assert declined.outcome is Outcome.DECLINE
    assert [r.rule_id for r in declined.fired] == ["DPD90", "MULTI_LENDER"]
    # Many loans at one lender is not many lenders.
    assert admit(facts(active_loans=9, institutions_with_active_loans=1), POLICY).outcome is (
        Outcome.APPROVE)
    assert admit(facts(outstanding_debt=Decimal(40000)), POLICY).outcome is Outcome.REFER
    unknown = admit(facts(annual_income=None), POLICY)  # debt-to-income cannot be computed
    assert unknown.outcome is Outcome.REFER and unknown.unevaluated[0].rule_id == "DEBT_TO_INCOME"


def test_a_decline_shows_its_reasons_most_serious_first() -> None:
    decision = decide(facts(accounts_90dpd=2, accounts_30dpd=1, active_loans=6, score=480,
                            inquiries_90d=5, annual_income=None), POLICY)
    assert decision.admission.outcome is Outcome.DECLINE and decision.grade is Grade.E
    codes = [r.code for r in decision.reasons]
    assert len(codes) == MAX_REASONS == len(set(codes))
    assert codes[0] is ReasonCode.DELINQUENCY_90 and decision.limit is None
    assert all(r.text.endswith(".") for r in decision.reasons)
    approved = decide(facts(score=700), POLICY, product_cap=Decimal(20000))
    assert approved.reasons == () and approved.limit == Decimal(20000)
    assert decide(facts(accounts_90dpd=1), POLICY).limit == 0  # declined: no credit
    # Admitted, but the alliance debt leaves no room at this grade: referred, and said why.
    crowded = decide(facts(score=560, outstanding_debt=Decimal(25000)), POLICY)
    assert crowded.limit == 0 and crowded.admission.outcome is Outcome.REFER
    assert crowded.admission.fired == () and crowded.reasons[0].code is ReasonCode.NO_CREDIT_ROOM


def test_reasons_never_repeat_and_stop_at_four() -> None:
    admission = admit(facts(accounts_90dpd=1), POLICY)
    reasons = adverse_reasons(facts(accounts_90dpd=1), admission, Grade.E)
    assert [r.code for r in reasons] == [ReasonCode.DELINQUENCY_90, ReasonCode.LOW_SCORE]


# -- the policy file ----------------------------------------------------------------------------
def test_the_default_policy_loads() -> None:
    assert POLICY.version == 2 and POLICY.grade_floors[0] == (Grade.A, 620)
    assert POLICY.reason_min_logit == Decimal("0.1")
    assert POLICY.max_installment_share == Decimal("0.4")


@pytest.mark.parametrize(("change", "message"), [
    (("metric: blacklist_flags", "metric: loans"), "line 4: unknown metric 'loans'"),
    (("id: MULTI_LENDER", "id: DPD90"), "line 6: rule id 'DPD90' is used twice"),
    (("B: 580", "B: 640"), "line 10: the floor of B (640) must be below the grade above it"),
    (("B: 0.4", "B: 0.6"), "line 11: a worse grade cannot get a larger multiple"),
    (("max_installment_share: 0.4", "max_installment_share: 1.5"), "line 12: max_installment"),
    (('op: ">="', 'op: "=>"'), "line 3: op must be one of"),
    (("outcome: refer}", "outcome: approve}"), "line 5: a rule's outcome is refer or decline"),
    (("threshold: 0.5", "threshold: -1"), "line 8: debt_to_income cannot be negative"),
    (("version: 2", "version: 0"), "line 1: version is a positive integer"),
    (("max_installment_share: 0.4", "max_installment_share: 0.4\nreason_min_logit: 2"),
     "line 13: reason_min_logit is a fraction"),
    (("grades: {", "grades: {A: 700, "), "appears twice"),
    ((RULES_BLOCK, "rules: {}\n"), "line 2: rules must be a list"),
    (("E: 0.0}", "E: 0.0"), "not valid YAML"),
])
def test_a_bad_policy_is_refused_with_the_line_at_fault(change: tuple[str, str],
                                                        message: str) -> None:
    text = DEFAULT_POLICY_YAML.replace(*change, 1)
    assert text != DEFAULT_POLICY_YAML
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_policy(text, "bank-policy.yaml")


@pytest.mark.parametrize("text", ["", "- a list\n", "version: 1\n"])
def test_an_empty_or_incomplete_policy_is_refused(text: str) -> None:
    with pytest.raises(PolicyError, match=r"bank-policy\.yaml"):
        load_policy(text, "bank-policy.yaml")


# -- products ---------------------------------------------------------------------------------
def product(pid: str, **changes: object) -> Product:
    base: dict[str, object] = {
        "product_id": pid, "member_id": "bank", "name": pid, "min_amount": Decimal(1000),
        "max_amount": Decimal(50000), "terms_months": (6, 12, 24), "apr": Decimal("0.12"),
        "disbursement_days": 2, "eligible_grades": frozenset({Grade.A, Grade.B, Grade.C})}
    base.update(changes)
    return Product(**base)  # type: ignore[arg-type]


products = st.lists(st.builds(
    lambda i, lo, span, apr, days, member: product(
        f"p{i}", member_id=member, min_amount=Decimal(lo), max_amount=Decimal(lo + span),
        apr=Decimal(apr) / 1000, disbursement_days=days),
    st.integers(0, 10**6), st.integers(100, 20000), st.integers(0, 80000),
    st.integers(0, 400), st.integers(0, 10), st.sampled_from(["bank", "finco", "shop"])),
    max_size=12, unique_by=lambda p: p.product_id)


@settings(max_examples=200)
@given(catalog=products, requested=st.integers(1, 100000), limit=st.integers(0, 100000) |
       st.none(), seed=st.randoms())
def test_product_ranking_is_stable_bounded_and_ordered_by_fit_then_apr_then_speed(
    catalog: list[Product], requested: int, limit: int | None, seed: object
) -> None:
    amount = Decimal(requested)
    cap = None if limit is None else Decimal(limit)
    result = match_products(catalog, amount, cap, Grade.B, 12)
    shuffled = list(catalog)
    seed.shuffle(shuffled)  # type: ignore[attr-defined]
    assert match_products(shuffled, amount, cap, Grade.B, 12) == result  # order-independent
    keys = [(-m.offered_amount, m.product.apr, m.product.disbursement_days)
            for m in result.matches]
    assert keys == sorted(keys)
    assert [m.rank for m in result.matches] == list(range(1, len(result.matches) + 1))
    for m in result.matches:
        assert m.product.min_amount <= m.offered_amount <= min(
            amount, m.product.max_amount, cap if cap is not None else amount)
        assert "APR" in m.reason
    assert (result.none_because is None) == bool(result.matches)


def test_product_matching_edges() -> None:
    catalog = [product("fast", disbursement_days=0), product("cheap", apr=Decimal("0.08")),
               product("small", max_amount=Decimal(5000)),
               product("a-only", eligible_grades=frozenset({Grade.A}), apr=Decimal("0.01"))]
    ranked = match_products(catalog, Decimal(20000), Decimal(30000), Grade.B, 12)
    assert [m.product.product_id for m in ranked.matches] == ["cheap", "fast", "small"]
    assert ranked.matches[2].reason.startswith("25% of the request (bounded by the product")
    above = match_products(catalog, Decimal(10**6), None, Grade.B, 12)  # above every product
    assert above.matches and not above.covers_request
    assert match_products(catalog, Decimal(500), None, Grade.B, 12).none_because is \
        NoMatch.BELOW_EVERY_MINIMUM
    assert match_products(catalog, Decimal(5000), Decimal(0), Grade.B, 12).none_because is \
        NoMatch.NO_CREDIT
    assert match_products(catalog, Decimal(5000), None, Grade.E, 12).none_because is \
        NoMatch.NONE_FOR_GRADE_OR_TERM
    for amount in (Decimal(0), Decimal(-5)):
        with pytest.raises(ValueError, match="positive"):
            match_products(catalog, amount, None, Grade.B, 12)
    with pytest.raises(ValueError, match="unsupported term: 7 months"):
        match_products(catalog, Decimal(5000), None, Grade.B, 7)


@pytest.mark.parametrize(("changes", "message"), [
    ({"min_amount": Decimal(60000)}, "min_amount (60000) is above max_amount (50000)"),
    ({"min_amount": Decimal(0)}, "min_amount must be positive"),
    ({"terms_months": (5,)}, "terms_months must be among"),
    ({"apr": Decimal("1.5")}, "apr is a fraction"),
    ({"disbursement_days": -1}, "disbursement_days cannot be negative"),
    ({"eligible_grades": frozenset()}, "eligible_grades cannot be empty"),
])
def test_a_product_that_cannot_be_offered_is_refused(changes: dict[str, object],
                                                     message: str) -> None:
    with pytest.raises(ProductError) as caught:
        product("bad", **changes)
    assert message in str(caught.value)
