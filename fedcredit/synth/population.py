"""Latent people: one creditworthiness each, and everything about them it drives.

``risk`` is standard normal, higher meaning less creditworthy. It lowers income and raises its
volatility, raises the chance of financial distress (from which a person stops paying every
lender and may lose their salary), borrowing appetite, utilization and credit shopping, and the
default label. Nothing here knows about institutions; :mod:`fedcredit.synth.relationships`
decides who is a customer where.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from fedcredit.synth.dates import HistoryWindow
from fedcredit.synth.identifiers import IdentifierSpace

#: A distress or income-stop day that never comes.
NEVER = 1_000_000_000
MEDIAN_INCOME = 6500.0
_YEAR = 365.25


class IncomeSource(IntEnum):
    SALARY = 0
    PENSION = 1
    BUSINESS = 2
    BENEFITS = 3


#: Transaction category of each income source's credits (data model ``INCOME_CATEGORIES``).
INCOME_CATEGORY = ("salary", "pension", "business_income", "benefits")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class People:
    """A chunk of the population, one array element per person."""

    index: np.ndarray  # global person index (0..N-1)
    risk: np.ndarray
    birth_day: np.ndarray  # epoch day
    age: np.ndarray  # years at the as-of date
    identifier: np.ndarray  # uint8 [n, 18]: canonical CN resident id
    income: np.ndarray  # typical actual monthly income
    income_source: np.ndarray  # IncomeSource
    volatility: np.ndarray  # sd of log monthly income
    skip_rate: np.ndarray  # chance that a month's income does not arrive
    declared_income: np.ndarray  # what the person states on an application
    distress_day: np.ndarray  # from this day on every installment is missed; NEVER if not
    income_stop_day: np.ndarray  # salary stops (job loss in distress); NEVER if not
    spending: np.ndarray  # multiplier of spending activity (how many purchases), mean about 1
    consumption: np.ndarray  # share of income spent in a month; above 1 lives beyond means

    @property
    def size(self) -> int:
        return len(self.index)

    @property
    def distressed(self) -> np.ndarray:
        return self.distress_day < NEVER


def draw_people(rng: np.random.Generator, start: int, count: int, window: HistoryWindow,
                space: IdentifierSpace) -> People:
    index = np.arange(start, start + count, dtype=np.int64)
    age = 18.0 + 57.0 * rng.beta(1.6, 2.2, count)
    birth_day = window.as_of - np.floor(age * _YEAR).astype(np.int64) - rng.integers(0, 30, count)
    age = (window.as_of - birth_day) / _YEAR
    # The young are a little riskier; most of the risk is idiosyncratic.
    risk = 0.95 * rng.standard_normal(count) - 0.012 * (age - 42.0)

    source = np.full(count, IncomeSource.SALARY, dtype=np.int8)
    source[rng.random(count) < 0.15] = IncomeSource.BUSINESS
    source[(age >= 60.0) & (rng.random(count) < 0.8)] = IncomeSource.PENSION
    source[rng.random(count) < sigmoid(-3.4 + 0.9 * risk)] = IncomeSource.BENEFITS

    log_income = (np.log(MEDIAN_INCOME) + 0.45 * rng.standard_normal(count) - 0.30 * risk
                  - 0.0004 * (age - 45.0) ** 2)
    income = np.exp(log_income)
    income = np.where(source == IncomeSource.PENSION, 0.6 * income, income)
    income = np.where(source == IncomeSource.BUSINESS, 1.15 * income, income)
    income = np.where(source == IncomeSource.BENEFITS,
                      1800.0 * np.exp(0.1 * rng.standard_normal(count)), income)
    income = np.round(np.maximum(income, 900.0), 2)

    salary_volatility = 0.04 + 0.12 * sigmoid(1.5 * risk)
    volatility = np.select(
        [source == IncomeSource.BUSINESS, source == IncomeSource.PENSION,
         source == IncomeSource.BENEFITS],
        [0.35 + 0.25 * sigmoid(risk), np.full(count, 0.01), np.full(count, 0.03)],
        salary_volatility,
    )
    skip_rate = np.select(
        [source == IncomeSource.BUSINESS, source == IncomeSource.PENSION],
        [np.full(count, 0.15), np.zeros(count)],
        0.01 + 0.10 * sigmoid(2.0 * risk - 2.0),
    )
    # Risky applicants overstate their income a little more.
    overstatement = rng.normal(0.04 + 0.12 * sigmoid(risk), 0.10)
    declared = np.round(income * np.exp(overstatement), -2)

    distressed = rng.random(count) < sigmoid(-3.3 + 1.4 * risk)
    onset = rng.integers(window.first_day, window.as_of + 1, count)
    distress_day = np.where(distressed, onset, NEVER)
    job_loss = distressed & (source == IncomeSource.SALARY) & (rng.random(count) < 0.6)
    income_stop_day = np.where(job_loss, onset, NEVER)

    spending = (np.exp(0.45 * rng.standard_normal(count) - 0.101)
                * (income / MEDIAN_INCOME) ** 0.25 * np.exp(0.15 * risk - 0.011))
    consumption = np.clip(0.55 + 0.18 * risk + 0.12 * rng.standard_normal(count), 0.15, 1.6)
    identifier = space.cn_matrix(index, birth_day)
    return People(index=index, risk=risk, birth_day=birth_day, age=age, identifier=identifier,
                  income=income, income_source=source, volatility=volatility,
                  skip_rate=skip_rate, declared_income=declared, distress_day=distress_day,
                  income_stop_day=income_stop_day, spending=spending,
                  consumption=consumption)


def draw_defaults(rng: np.random.Generator, people: People, lenders: np.ndarray) -> np.ndarray:
    """Default within 12 months after the as-of date: 1 or 0.

    Logistic in the latent risk, with borrowing from several lenders and present distress on
    top; about a fifth of the population defaults.
    """
    logit = (-2.1 + 1.25 * people.risk + 0.45 * np.maximum(lenders - 1, 0)
             + 1.2 * people.distressed)
    return (rng.random(people.size) < sigmoid(logit)).astype(np.int64)
