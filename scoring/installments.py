"""Repayment capacity, installment plans, schedules to the cent, and the repayment simulation.

Money is :class:`~decimal.Decimal` in currency units, rounded half-up to the cent. A schedule is
an annuity at the product's APR (nominal, compounded per period); the last installment takes
the rounding, so principal parts sum to the principal and payments to principal plus interest,
exactly. Pure functions over frozen dataclasses; nothing here divides by a zero income — a
missing or zero income is an explicit "cannot be computed" outcome.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

CENT = Decimal("0.01")
INSTALLMENT_COUNTS = (3, 6, 12, 24)


class Period(StrEnum):
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"

    @property
    def months(self) -> int:
        return 1 if self is Period.MONTHLY else 3


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Installment:
    number: int  # 1-based
    due_month: int  # months after disbursement
    payment: Decimal
    principal: Decimal
    interest: Decimal
    balance: Decimal  # left after this payment


@dataclass(frozen=True)
class Schedule:
    principal: Decimal
    apr: Decimal  # e.g. Decimal("0.12") for 12 % a year
    period: Period
    installments: tuple[Installment, ...]

    @property
    def count(self) -> int:
        return len(self.installments)

    @property
    def total_interest(self) -> Decimal:
        return sum((i.interest for i in self.installments), Decimal(0))

    @property
    def total_paid(self) -> Decimal:
        return sum((i.payment for i in self.installments), Decimal(0))

    @property
    def largest_payment(self) -> Decimal:
        return max(i.payment for i in self.installments)


def schedule(principal: Decimal, apr: Decimal, period: Period, count: int) -> Schedule:
    """An annuity: equal payments (the last one absorbs the rounding)."""
    principal = cents(principal)
    if principal <= 0:
        raise ValueError("the principal must be positive")
    if apr < 0:
        raise ValueError("the APR cannot be negative")
    if count < 1:
        raise ValueError("at least one installment")
    rate = apr * period.months / 12
    if rate == 0:
        level = cents(principal / count)
    else:
        level = cents(principal * rate / (1 - (1 + rate) ** -count))
    balance = principal
    rows = []
    for number in range(1, count + 1):
        interest = cents(balance * rate)
        if number == count:
            part = balance
        else:
            part = min(balance, max(level - interest, Decimal(0)))
        balance -= part
        rows.append(Installment(number, number * period.months, part + interest, part,
                                interest, balance))
    return Schedule(principal, apr, period, tuple(rows))


@dataclass(frozen=True)
class Capacity:
    """What the applicant can carry each month: income - spending - existing debt service
    (the lender's own data plus alliance exposures). ``None``: unknown."""

    monthly_income: Decimal | None
    monthly_spending: Decimal | None
    monthly_debt_service: Decimal

    @property
    def income_known(self) -> bool:
        return self.monthly_income is not None and self.monthly_income > 0

    @property
    def surplus(self) -> Decimal | None:
        if not self.income_known or self.monthly_spending is None:
            return None
        assert self.monthly_income is not None
        return self.monthly_income - self.monthly_spending - self.monthly_debt_service

    @property
    def spending_ratio(self) -> Decimal | None:
        if not self.income_known or self.monthly_spending is None:
            return None
        assert self.monthly_income is not None
        return self.monthly_spending / self.monthly_income


class PlanOutcome(StrEnum):
    PLANNED = "planned"
    INCOME_UNKNOWN = "income_unknown"  # missing or zero: a plan cannot be computed
    SPENDING_UNKNOWN = "spending_unknown"  # the surplus needs the applicant's spending
    NO_SURPLUS = "no_surplus"  # spending and debt service take the whole income
    UNAFFORDABLE = "unaffordable"  # even the longest plan's installment exceeds the share
    NO_CREDIT = "no_credit"  # the credit limit leaves nothing to lend


@dataclass(frozen=True)
class PlanChoice:
    outcome: PlanOutcome
    schedule: Schedule | None
    ceiling_per_month: Decimal | None  # the share of the surplus an installment may take
    explanation: str


def choose_plan(
    principal: Decimal, apr: Decimal, capacity: Capacity, max_share: Decimal,
    periods: Sequence[Period] = (Period.MONTHLY, Period.QUARTERLY),
    counts: Sequence[int] = INSTALLMENT_COUNTS,
    requested_months: int | None = None,
) -> PlanChoice:
    """A plan whose every installment stays within ``max_share`` of the surplus of the months
    it covers: the requested term when it is affordable (monthly before quarterly), else the
    shortest affordable plan (least interest; monthly before quarterly at equal length), whose
    explanation then says how it departs from the request."""
    if not 0 < max_share <= 1:
        raise ValueError("the share of the surplus must be in (0, 1]")
    surplus = capacity.surplus
    if not capacity.income_known:
        return PlanChoice(PlanOutcome.INCOME_UNKNOWN, None, None,
                          "income is missing or zero: repayment capacity cannot be computed")
    if surplus is None:
        return PlanChoice(PlanOutcome.SPENDING_UNKNOWN, None, None,
                          "monthly spending is unknown: repayment capacity cannot be computed")
    if surplus <= 0:
        return PlanChoice(PlanOutcome.NO_SURPLUS, None, Decimal(0),
                          "spending and existing debt service take the whole income")
    ceiling = cents(surplus * max_share)
    options = sorted(((count * period.months, period.months, period, count)
                      for period in periods for count in counts),
                     key=lambda o: (o[0] != requested_months, *o[:2]))
    for length, months, period, count in options:
        plan = schedule(principal, apr, period, count)
        if plan.largest_payment <= ceiling * months:
            note = ""
            if requested_months is not None and length != requested_months:
                note = (f"; {length} months instead of the {requested_months} requested"
                        + (", whose installments would exceed that share"
                           if length > requested_months else ": no plan has that length"))
            return PlanChoice(PlanOutcome.PLANNED, plan, ceiling,
                              f"{count} {period.value} installments of at most "
                              f"{plan.largest_payment} keep within {max_share:.0%} of the "
                              f"monthly surplus ({cents(surplus)}){note}")
    return PlanChoice(PlanOutcome.UNAFFORDABLE, None, ceiling,
                      f"even the longest plan's installment exceeds {max_share:.0%} of the "
                      f"monthly surplus ({cents(surplus)})")


@dataclass(frozen=True)
class PeriodOutcome:
    number: int
    expected: Decimal  # X: this period's scheduled repayment
    carried_in: Decimal  # U: unpaid from the previous period
    due: Decimal  # X + U
    paid: Decimal
    carried_out: Decimal  # unpaid, added to the next period
    alpha: float  # ln(X + U) · spending ÷ income
    progress: float  # repaid share ÷ scheduled share, cumulative


def simulate(plan: Schedule, payments: Sequence[Decimal], capacity: Capacity
             ) -> tuple[PeriodOutcome, ...]:
    """Apply the payments actually made, period by period, with carry-over: what is unpaid is
    due in the next period. Per period, the correction indicator
    alpha = ln(X + U) * (spending / income) and the progress ratio (share repaid so far /
    share scheduled so far) that the next installment's adjustment uses."""
    ratio = capacity.spending_ratio
    if ratio is None:
        raise ValueError("income (or spending) is unknown: the correction indicator needs "
                         "spending / income")
    if len(payments) > plan.count:
        raise ValueError("more payments than installments")
    if any(p < 0 for p in payments):
        raise ValueError("a payment cannot be negative")
    carry = Decimal(0)
    scheduled = repaid = Decimal(0)
    out = []
    for row, paid in zip(plan.installments, payments, strict=False):
        expected = row.payment
        due = expected + carry
        paid = cents(paid)
        carried_out = max(due - paid, Decimal(0))
        scheduled += expected
        repaid += paid
        out.append(PeriodOutcome(
            number=row.number, expected=expected, carried_in=carry, due=due, paid=paid,
            carried_out=carried_out, alpha=math.log(due) * float(ratio),
            progress=float(repaid / scheduled),
        ))
        carry = carried_out
    return tuple(out)
