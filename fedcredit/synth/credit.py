"""Loans, credit lines and their repayment schedules at one member, as of the as-of date.

Installment loans (mortgage, auto, personal) follow an annuity schedule from their open date;
revolving lines (credit card, overdraft, BNPL) get a monthly statement with a minimum payment.
The schedule covers the history window plus, for an open installment loan, the next
installment (not yet due, so unpaid). Each installment is paid on time, late (more often and
later the riskier the person) or, from the person's distress onward, not at all; days past due,
balance and status follow from what is unpaid at the as-of date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from fedcredit.synth.dates import HistoryWindow, on_day_of_month
from fedcredit.synth.population import MEDIAN_INCOME, NEVER, People, sigmoid

PRODUCT_NAMES = ("mortgage", "auto", "personal", "credit_card", "overdraft", "bnpl")
STATUS_NAMES = ("active", "closed", "defaulted", "written_off")
ACTIVE, CLOSED, DEFAULTED, WRITTEN_OFF = range(4)
DEFAULTED_DPD = 90
WRITTEN_OFF_DPD = 180


@dataclass(frozen=True)
class InstallmentTerms:
    terms_months: tuple[int, ...]
    annual_rate: float
    risk_premium: float  # added to the rate at the riskiest end
    max_age_months: int  # oldest loan still in the book


INSTALLMENT_TERMS = {
    "mortgage": InstallmentTerms((240, 360), 0.042, 0.010, 120),
    "auto": InstallmentTerms((36, 48, 60), 0.065, 0.040, 72),
    "personal": InstallmentTerms((12, 24, 36), 0.110, 0.120, 60),
}
REVOLVING_MAX_AGE_MONTHS = {"credit_card": 120, "overdraft": 120, "bnpl": 48}


@dataclass(frozen=True)
class LoanBook:
    """One member's loans (first block) and repayment rows (second block), as arrays."""

    owner: np.ndarray  # position of the borrower in the chunk
    product: np.ndarray  # index into PRODUCT_NAMES
    principal: np.ndarray
    balance: np.ndarray
    credit_limit: np.ndarray  # NaN for installment loans
    open_date: np.ndarray
    close_date: np.ndarray  # NEVER while open
    status: np.ndarray  # index into STATUS_NAMES
    days_past_due: np.ndarray
    schedule_loan: np.ndarray  # loan position of each repayment row
    due_date: np.ndarray
    due_amount: np.ndarray
    paid_date: np.ndarray  # NEVER when unpaid
    paid_amount: np.ndarray  # NaN when unpaid

    @property
    def loans(self) -> int:
        return len(self.owner)

    @property
    def installments(self) -> int:
        return len(self.schedule_loan)


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row → group and row → position within its group, for ``counts[g]`` rows per group."""
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return group, np.arange(len(group)) - starts[group]


def _settle(rng: np.random.Generator, due: np.ndarray, amount: np.ndarray, risk: np.ndarray,
            distress_day: np.ndarray, as_of: int) -> tuple[np.ndarray, np.ndarray]:
    """When and how much was paid against each installment (NEVER/NaN: unpaid at as-of)."""
    rows = len(due)
    missed = (due >= distress_day) & (rng.random(rows) < 0.92)
    late = rng.random(rows) < sigmoid(-3.0 + 1.0 * risk)
    lateness = 1 + np.floor(rng.exponential(4.0 + 10.0 * sigmoid(risk))).astype(np.int64)
    paid_date = due + np.where(late, lateness, -rng.integers(0, 6, rows))
    partial = rng.random(rows) < 0.01 + 0.08 * sigmoid(2.0 * risk - 2.0)
    paid_amount = np.where(partial, np.round(amount * rng.uniform(0.3, 0.9, rows), 2), amount)
    unpaid = (due > as_of) | missed | (paid_date > as_of)
    return np.where(unpaid, NEVER, paid_date), np.where(unpaid, np.nan, paid_amount)


def _delinquency(loans: int, schedule_loan: np.ndarray, due: np.ndarray, due_amount: np.ndarray,
                 paid_date: np.ndarray, as_of: int) -> tuple[np.ndarray, np.ndarray]:
    """Days past due (from the oldest unpaid due installment) and arrears, per loan."""
    unpaid = (paid_date == NEVER) & (due <= as_of)
    oldest = np.full(loans, NEVER, dtype=np.int64)
    np.minimum.at(oldest, schedule_loan[unpaid], due[unpaid])
    arrears = np.bincount(schedule_loan, weights=np.where(unpaid, due_amount, 0.0),
                          minlength=loans)
    return np.where(oldest < NEVER, as_of - oldest, 0), arrears


def _status(days_past_due: np.ndarray, closed: np.ndarray) -> np.ndarray:
    return np.select([days_past_due >= WRITTEN_OFF_DPD, days_past_due >= DEFAULTED_DPD, closed],
                     [WRITTEN_OFF, DEFAULTED, CLOSED], ACTIVE)


def _installment_loans(rng: np.random.Generator, people: People, owner: np.ndarray,
                       product: str, window: HistoryWindow) -> LoanBook:
    terms = INSTALLMENT_TERMS[product]
    count, risk, income = len(owner), people.risk[owner], people.income[owner]
    term = rng.choice(np.array(terms.terms_months), count)
    if product == "mortgage":
        principal = np.round(income * 12 * rng.uniform(2.5, 6.0, count), -3)
    elif product == "auto":
        principal = np.round(rng.lognormal(np.log(90_000), 0.35, count)
                             * (income / MEDIAN_INCOME) ** 0.5, -2)
    else:
        principal = np.maximum(2000.0, np.round(
            income * rng.uniform(0.5, 4.0, count) * np.exp(0.15 * risk), -2))
    rate = (terms.annual_rate + terms.risk_premium * sigmoid(risk)) / 12
    growth = (1 + rate) ** term
    payment = np.round(principal * rate * growth / (growth - 1), 2)

    as_of_month, as_of_dom = window.as_of_month, window.as_of_day_of_month
    adult_months = np.floor((people.age[owner] - 18.0) * 12).astype(np.int64)
    age = rng.integers(0, np.minimum(np.minimum(term, terms.max_age_months) + window.months,
                                     adult_months + 1))
    open_month = as_of_month - age
    dom = rng.integers(1, 29, count)
    dom = np.where(age == 0, np.minimum(dom, as_of_dom), dom)
    open_date = on_day_of_month(open_month, dom)
    due_by_now = np.clip(as_of_month - open_month - (dom > as_of_dom), 0, term)
    first_in_window = np.maximum(1, window.month_indices[0] - open_month)
    matured = due_by_now == term
    rows = np.maximum(0, due_by_now - first_in_window + 1) + ~matured

    loan, position = _expand(rows)
    number = first_in_window[loan] + position
    due = on_day_of_month(open_month[loan] + number, dom[loan])
    due_amount = payment[loan]
    paid_date, paid_amount = _settle(rng, due, due_amount, risk[loan],
                                     people.distress_day[owner][loan], window.as_of)
    dpd, arrears = _delinquency(count, loan, due, due_amount, paid_date, window.as_of)

    grown = (1 + rate) ** due_by_now
    scheduled = np.maximum(principal * grown - payment * (grown - 1) / rate, 0.0)
    closed = matured & (arrears == 0)
    status = _status(dpd, closed)
    close_date = np.select(
        [status == CLOSED, status == WRITTEN_OFF],
        [on_day_of_month(open_month + term, dom), window.as_of - dpd + WRITTEN_OFF_DPD], NEVER)
    return LoanBook(
        owner=owner, product=np.full(count, PRODUCT_NAMES.index(product)), principal=principal,
        balance=np.where(closed, 0.0, np.round(scheduled + arrears, 2)),
        credit_limit=np.full(count, np.nan), open_date=open_date, close_date=close_date,
        status=status, days_past_due=dpd, schedule_loan=loan, due_date=due,
        due_amount=due_amount, paid_date=paid_date, paid_amount=paid_amount)


def _revolving_lines(rng: np.random.Generator, people: People, owner: np.ndarray,
                     product: str, window: HistoryWindow) -> LoanBook:
    count, risk, income = len(owner), people.risk[owner], people.income[owner]
    if product == "credit_card":
        limit = np.maximum(2000.0, np.round(
            income * rng.uniform(0.8, 3.0, count) * np.exp(-0.2 * risk), -3))
    elif product == "overdraft":
        limit = np.maximum(500.0, np.round(income * rng.uniform(0.3, 1.0, count), -2))
    else:
        limit = np.round(rng.uniform(1000, 8000, count) * np.exp(0.1 * risk), -2)
    principal = (np.round(limit * rng.uniform(0.05, 0.3, count), 2) if product == "bnpl"
                 else np.zeros(count))

    as_of_month, as_of_dom = window.as_of_month, window.as_of_day_of_month
    adult_months = np.floor((people.age[owner] - 18.0) * 12).astype(np.int64)
    oldest = np.maximum(np.minimum(REVOLVING_MAX_AGE_MONTHS[product], adult_months), 1)
    open_month = as_of_month - rng.integers(1, oldest + 1)
    dom = rng.integers(1, 29, count)
    open_date = on_day_of_month(open_month, dom)
    closed = rng.random(count) < 0.06
    close_date = rng.integers(np.maximum(open_date + 1, window.first_day), window.as_of + 1)
    mean = sigmoid(-1.0 + 1.1 * risk)
    utilization = rng.beta(4 * mean, 4 * (1 - mean))
    utilization = np.where(rng.random(count) < 0.3 * sigmoid(-risk), 0.0, utilization)
    utilization = np.where(people.distressed[owner], rng.uniform(0.85, 1.05, count),
                           utilization)
    utilization = np.where(closed, 0.0, utilization)
    balance = np.round(utilization * limit, 2)

    first_month = np.maximum(open_month + 1, window.month_indices[0])
    rows = np.where(balance > 0, as_of_month - first_month + 1 - (dom > as_of_dom), 0)
    loan, position = _expand(np.maximum(rows, 0))
    due = on_day_of_month(first_month[loan] + position, dom[loan])
    statement = np.minimum(balance[loan] * rng.lognormal(0.0, 0.25, len(loan)),
                           1.05 * limit[loan])
    minimum_due = np.round(np.maximum(np.minimum(100.0, statement), 0.1 * statement), 2)
    pays_in_full = (rng.random(count) < sigmoid(-0.3 - 1.3 * risk))[loan]
    paid_date, paid_amount = _settle(rng, due, minimum_due, risk[loan],
                                     people.distress_day[owner][loan], window.as_of)
    paid_amount = np.where(pays_in_full & (paid_amount == minimum_due),
                           np.round(statement, 2), paid_amount)
    dpd, _ = _delinquency(count, loan, due, minimum_due, paid_date, window.as_of)
    status = _status(dpd, closed)
    close_date = np.select([status == CLOSED, status == WRITTEN_OFF],
                           [close_date, window.as_of - dpd + WRITTEN_OFF_DPD], NEVER)
    return LoanBook(
        owner=owner, product=np.full(count, PRODUCT_NAMES.index(product)), principal=principal,
        balance=balance, credit_limit=limit, open_date=open_date, close_date=close_date,
        status=status, days_past_due=dpd, schedule_loan=loan, due_date=due,
        due_amount=minimum_due, paid_date=paid_date, paid_amount=paid_amount)


def _concatenate(books: list[LoanBook]) -> LoanBook:
    shift = np.cumsum([0] + [b.loans for b in books[:-1]])
    parts = {f.name: np.concatenate([getattr(b, f.name) for b in books]) for f in fields(LoanBook)}
    parts["schedule_loan"] = np.concatenate(
        [b.schedule_loan + s for b, s in zip(books, shift, strict=True)])
    return LoanBook(**parts)


_SCHEDULE_FIELDS = ("schedule_loan", "due_date", "due_amount", "paid_date", "paid_amount")


def draw_loans(rng: np.random.Generator, people: People, counts: Mapping[str, np.ndarray],
               window: HistoryWindow) -> LoanBook:
    """Every loan ``counts[product][person]`` asks for, grouped by borrower."""
    books = []
    for product, per_person in counts.items():
        owner = np.repeat(np.arange(people.size), per_person)
        draw = _installment_loans if product in INSTALLMENT_TERMS else _revolving_lines
        books.append(draw(rng, people, owner, product, window))
    book = _concatenate(books)
    order = np.argsort(book.owner, kind="stable")
    new_position = np.empty_like(order)
    new_position[order] = np.arange(len(order))
    schedule_loan = new_position[book.schedule_loan]
    rows = np.argsort(schedule_loan, kind="stable")
    loan_columns = {f.name: getattr(book, f.name)[order] for f in fields(LoanBook)
                    if f.name not in _SCHEDULE_FIELDS}
    schedule_columns = {name: getattr(book, name)[rows] for name in _SCHEDULE_FIELDS}
    schedule_columns["schedule_loan"] = schedule_loan[rows]
    return LoanBook(**loan_columns, **schedule_columns)

