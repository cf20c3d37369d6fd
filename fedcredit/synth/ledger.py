"""Account transactions: income and spending at a bank, checkouts at an e-commerce member.

At the bank holding a person's current account, income arrives monthly (salary, pension or
benefits; business income a few times a month, irregularly), its volatility and the chance of
a missing month rising with risk, and salary stopping for good when a person in distress loses
their job. Spending debits (count and categories risk-dependent: riskier people withdraw cash
and gamble more) and occasional transfers fill the month. At an e-commerce member, checkouts
are debits in shopping-like categories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedcredit.synth.dates import SECONDS_PER_DAY, HistoryWindow, month_start
from fedcredit.synth.population import INCOME_CATEGORY, MEDIAN_INCOME, IncomeSource, People

SPENDING = ("groceries", "housing", "utilities", "transport", "dining", "shopping", "travel",
            "entertainment", "health", "education", "cash_withdrawal", "gambling",
            "other_spending")
CATEGORY_NAMES = (*INCOME_CATEGORY, "transfer", *SPENDING)
DIRECTION_NAMES = ("credit", "debit")
CREDIT, DEBIT = 0, 1
_FIRST_SPENDING = CATEGORY_NAMES.index(SPENDING[0])
_TRANSFER = CATEGORY_NAMES.index("transfer")
#: Category preference of a low-risk person, and how it tilts per unit of risk.
_BANK_LOGITS = np.array([1.6, 0.6, 0.8, 0.9, 1.2, 1.1, 0.0, 0.5, 0.2, 0.0, 0.4, -3.0, 0.3])
_BANK_TILT = np.array([0.0, -0.2, -0.1, 0.0, 0.2, 0.15, -0.3, 0.2, -0.1, -0.3, 0.5, 1.0, 0.1])
_SHOP_LOGITS = np.array([1.0, -9, -9, -9, -0.5, 2.4, -0.6, 0.0, -0.5, -0.7, -9, -9, -0.8])
_SHOP_TILT = np.array([-0.1, 0, 0, 0, 0.1, 0.1, -0.2, 0.2, 0.0, -0.2, 0, 0, 0.1])
#: Relative ticket size per spending category (rent is big, a bus fare small).
_TICKET = np.array([120, 2500, 300, 80, 150, 400, 1800, 200, 350, 1500, 800, 500, 200], float)
#: Checkout basket at median income.
_BASKET = 180.0
_RISK_BANDS = np.linspace(-2.0, 2.0, 9)
SHOP_ORDERS_PER_MONTH = 0.7
TRANSFER_SHARE = 0.12


@dataclass(frozen=True)
class Ledger:
    owner: np.ndarray  # position of the account holder in the chunk
    ts: np.ndarray  # epoch seconds
    amount: np.ndarray
    direction: np.ndarray  # index into DIRECTION_NAMES
    category: np.ndarray  # index into CATEGORY_NAMES

    @property
    def rows(self) -> int:
        return len(self.owner)


def _month_grid(window: HistoryWindow, people: np.ndarray) -> tuple[np.ndarray, ...]:
    """Person-month cells: (person, first day of the month, days in the month)."""
    months = window.month_indices
    starts = month_start(months)
    lengths = month_start(months + 1) - starts
    person = np.repeat(people, len(months))
    return person, np.tile(starts, len(people)), np.tile(lengths, len(people))


def _categories(rng: np.random.Generator, risk: np.ndarray, logits: np.ndarray,
                tilt: np.ndarray) -> np.ndarray:
    """A spending category per row, from the preference of the row's risk band."""
    step = _RISK_BANDS[1] - _RISK_BANDS[0]
    band = np.clip(np.rint((risk - _RISK_BANDS[0]) / step), 0, len(_RISK_BANDS) - 1)
    out = np.empty(len(risk), dtype=np.int64)
    for b, center in enumerate(_RISK_BANDS):
        rows = np.flatnonzero(band == b)
        weights = np.exp(logits + tilt * center)
        out[rows] = rng.choice(len(SPENDING), len(rows), p=weights / weights.sum())
    return out + _FIRST_SPENDING


def _purchases(rng: np.random.Generator, people: People, person: np.ndarray, start: np.ndarray,
               length: np.ndarray, rate: np.ndarray, logits: np.ndarray, tilt: np.ndarray
               ) -> tuple[Ledger, np.ndarray, np.ndarray]:
    """Debits at ``rate`` per person-month (amounts to fill in), their ticket weights and
    person-month cells."""
    counts = rng.poisson(rate)
    cell = np.repeat(np.arange(len(person)), counts)
    owner = person[cell]
    rows = len(owner)
    day = np.repeat(start, counts) + np.floor(rng.random(rows) * np.repeat(length, counts))
    ts = day.astype(np.int64) * SECONDS_PER_DAY + rng.integers(6 * 3600, SECONDS_PER_DAY, rows)
    category = _categories(rng, people.risk[owner], logits, tilt)
    weight = _TICKET[category - _FIRST_SPENDING]
    return Ledger(owner, ts, np.zeros(rows), np.full(rows, DEBIT), category), weight, cell


def _spending(rng: np.random.Generator, people: People, person: np.ndarray, start: np.ndarray,
              length: np.ndarray, rate: np.ndarray) -> Ledger:
    """Current-account spending: a person spends ``consumption`` of income in a month,
    split over however many purchases they make (bigger tickets when fewer)."""
    ledger, weight, cell = _purchases(rng, people, person, start, length, rate, _BANK_LOGITS,
                                      _BANK_TILT)
    owner = ledger.owner
    probabilities = np.exp(_BANK_LOGITS)
    mean_weight = float(_TICKET @ probabilities / probabilities.sum())
    per_purchase = (people.consumption[owner] * people.income[owner]
                    / np.maximum(rate[cell], 0.05))
    amount = per_purchase * weight / mean_weight * rng.lognormal(-0.245, 0.7, len(owner))
    return Ledger(owner, ledger.ts, np.round(np.maximum(amount, 1.0), 2), ledger.direction,
                  ledger.category)


def _checkouts(rng: np.random.Generator, people: People, person: np.ndarray,
               start: np.ndarray, length: np.ndarray, rate: np.ndarray) -> Ledger:
    ledger, weight, _ = _purchases(rng, people, person, start, length, rate, _SHOP_LOGITS,
                                   _SHOP_TILT)
    owner = ledger.owner
    scale = (people.income[owner] / MEDIAN_INCOME) ** 0.4 * (weight / _TICKET[5]) ** 0.5
    amount = _BASKET * scale * rng.lognormal(-0.405, 0.9, len(owner))
    return Ledger(owner, ledger.ts, np.round(np.maximum(amount, 1.0), 2), ledger.direction,
                  ledger.category)


def _income(rng: np.random.Generator, people: People, person: np.ndarray, start: np.ndarray,
            length: np.ndarray) -> Ledger:
    source = people.income_source[person]
    business = source == IncomeSource.BUSINESS
    counts = np.where(business, rng.poisson(1.3, len(person)), 1)
    counts = np.where(rng.random(len(person)) < people.skip_rate[person], 0, counts)
    payday = rng.integers(1, 29, people.size)[person]
    counts = np.where(start + payday - 1 >= people.income_stop_day[person], 0, counts)
    owner = np.repeat(person, counts)
    rows = len(owner)
    offset = np.where(business[np.repeat(np.arange(len(person)), counts)],
                      np.floor(rng.random(rows) * np.repeat(length, counts)),
                      np.repeat(payday - 1, counts) + rng.integers(0, 3, rows))
    day = np.repeat(start, counts) + offset.astype(np.int64)
    ts = day * SECONDS_PER_DAY + rng.integers(8 * 3600, 12 * 3600, rows)
    sigma = people.volatility[owner]
    per_credit = np.where(people.income_source[owner] == IncomeSource.BUSINESS, 1.3, 1.0)
    amount = people.income[owner] / per_credit * np.exp(
        sigma * rng.standard_normal(rows) - sigma**2 / 2)
    category = people.income_source[owner].astype(np.int64)  # INCOME_CATEGORY order
    return Ledger(owner, ts, np.round(amount, 2), np.full(rows, CREDIT), category)


def _transfers(rng: np.random.Generator, people: People, person: np.ndarray,
               start: np.ndarray, length: np.ndarray) -> Ledger:
    chosen = rng.random(len(person)) < TRANSFER_SHARE
    owner, start, length = person[chosen], start[chosen], length[chosen]
    rows = len(owner)
    # Low-risk people move savings out; risky ones receive help from family.
    direction = np.where(rng.random(rows) < 1 / (1 + np.exp(1.0 - people.risk[owner])),
                         CREDIT, DEBIT)
    day = start + np.floor(rng.random(rows) * length).astype(np.int64)
    ts = day * SECONDS_PER_DAY + rng.integers(7 * 3600, 23 * 3600, rows)
    amount = np.round(people.income[owner] * rng.uniform(0.05, 0.4, rows), 2)
    return Ledger(owner, ts, amount, direction, np.full(rows, _TRANSFER))


def _combine(parts: list[Ledger], window: HistoryWindow) -> Ledger:
    """All rows before the as-of date, ordered by account holder and time."""
    owner = np.concatenate([p.owner for p in parts])
    ts = np.concatenate([p.ts for p in parts])
    keep = np.flatnonzero(ts < window.as_of_second)
    since_start = ts[keep] - window.first_day * SECONDS_PER_DAY  # < 2**33 for 60 months
    order = keep[np.argsort(owner[keep] << 33 | since_start)]
    return Ledger(owner[order], ts[order],
                  np.concatenate([p.amount for p in parts])[order],
                  np.concatenate([p.direction for p in parts])[order],
                  np.concatenate([p.category for p in parts])[order])


def bank_ledger(rng: np.random.Generator, people: People, holders: np.ndarray,
                window: HistoryWindow, spending_per_month: float) -> Ledger:
    """Current-account transactions of ``holders`` (chunk positions), by holder and time."""
    person, start, length = _month_grid(window, holders)
    rate = spending_per_month * people.spending[person]
    return _combine([
        _income(rng, people, person, start, length),
        _spending(rng, people, person, start, length, rate),
        _transfers(rng, people, person, start, length),
    ], window)


def shop_ledger(rng: np.random.Generator, people: People, shoppers: np.ndarray,
                window: HistoryWindow) -> Ledger:
    """Checkouts of ``shoppers`` (chunk positions) at an e-commerce member."""
    person, start, length = _month_grid(window, shoppers)
    rate = SHOP_ORDERS_PER_MONTH * np.sqrt(people.spending[person])
    return _combine([_checkouts(rng, people, person, start, length, rate)], window)
