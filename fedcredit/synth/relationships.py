"""Who is whose customer: current accounts, credit relationships, shopping, applications.

A person keeps a current account (where salary arrives) at one member bank or none; holds
mortgages, cards and overdrafts mostly at that bank and sometimes a card at another; borrows
from zero or more consumer-finance members, more of them the riskier they are; shops at some
e-commerce members and may take a BNPL line there. Customer bases overlap and no member sees a
person's whole picture. Alone, a universal bank is everyone's bank and only lender.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedcredit.synth.institutions import InstitutionKind, InstitutionProfile
from fedcredit.synth.population import MEDIAN_INCOME, IncomeSource, People, sigmoid

NO_BANK = -1
#: Share of people whose current account is at a member bank (when there is more than one
#: member; a universal bank alone holds everyone's).
IN_ALLIANCE_BANKING = 0.85
_BANK_WEIGHTS = (1.0, 0.7, 0.5)
SHOPPER_SHARE = 0.5


@dataclass(frozen=True)
class Relationships:
    home_bank: np.ndarray  # member position of the current account, or NO_BANK
    customer: np.ndarray  # bool [members, people]
    shopper: np.ndarray  # bool [members, people]
    loans: tuple[Mapping[str, np.ndarray], ...]  # per member: product -> loans per person
    declined: np.ndarray  # int [members, people]: applications that made no loan

    @property
    def lenders(self) -> np.ndarray:
        """Members at which each person has at least one loan or credit line."""
        borrows = [sum(counts.values(), np.zeros(self.customer.shape[1], dtype=np.int64)) > 0
                   for counts in self.loans]
        return np.sum(borrows, axis=0).astype(np.int64)


def _distinct_choice(rng: np.random.Generator, wanted: np.ndarray, options: int) -> np.ndarray:
    """bool [people, options]: ``min(wanted, options)`` distinct options per person."""
    ranks = np.argsort(np.argsort(rng.random((len(wanted), options)), axis=1), axis=1)
    return ranks < wanted[:, None]


def draw_relationships(rng: np.random.Generator, people: People,
                       members: tuple[InstitutionProfile, ...]) -> Relationships:
    n, count = people.size, len(members)
    risk = people.risk
    kinds = [m.kind for m in members]
    banks = [j for j, k in enumerate(kinds)
             if k in (InstitutionKind.BANK, InstitutionKind.UNIVERSAL_BANK)]
    fincos = [j for j, k in enumerate(kinds) if k is InstitutionKind.CONSUMER_FINANCE]
    shops = [j for j, k in enumerate(kinds) if k is InstitutionKind.ECOMMERCE]
    consumer_lenders = fincos or banks[:1]  # a universal bank makes consumer loans itself
    loans = [{p: np.zeros(n, dtype=np.int64) for p in m.products} for m in members]

    if count == 1:
        home = np.zeros(n, dtype=np.int64)
    else:
        weights = np.array(_BANK_WEIGHTS[: len(banks)]) / sum(_BANK_WEIGHTS[: len(banks)])
        home = np.asarray(banks)[rng.choice(len(banks), n, p=weights)]
        home = np.where(rng.random(n) < IN_ALLIANCE_BANKING, home, NO_BANK)

    log_income = np.log(people.income / MEDIAN_INCOME)
    p_mortgage = sigmoid(-1.4 - 0.5 * risk + 1.2 * log_income - 0.003 * (people.age - 42) ** 2)
    p_mortgage *= people.income_source != IncomeSource.BENEFITS
    for j in banks:
        at_home = home == j
        loans[j]["mortgage"] += at_home & (rng.random(n) < p_mortgage)
        loans[j]["credit_card"] += at_home & (rng.random(n) < sigmoid(0.2 - 0.3 * risk))
        loans[j]["overdraft"] += at_home & (rng.random(n) < sigmoid(-1.8 + 0.8 * risk))
        # A card at a bank that is not one's own: credit-hungry people collect them.
        loans[j]["credit_card"] += ~at_home & (rng.random(n) < sigmoid(-3.0 + 0.7 * risk))

    relationships = rng.poisson(0.35 * np.exp(0.8 * risk))
    chosen = _distinct_choice(rng, relationships, len(consumer_lenders))
    for column, j in enumerate(consumer_lenders):
        taken = chosen[:, column] * (1 + rng.poisson(0.25 * np.exp(0.4 * risk)))
        auto = rng.binomial(taken, 0.25)
        loans[j]["auto"] += auto
        loans[j]["personal"] += taken - auto

    shopper = np.zeros((count, n), dtype=bool)
    for j in shops:
        shopper[j] = rng.random(n) < SHOPPER_SHARE
        loans[j]["bnpl"] += shopper[j] & (rng.random(n) < sigmoid(-1.4 + 0.9 * risk))

    declined = np.zeros((count, n), dtype=np.int64)
    for j in consumer_lenders:
        declined[j] = rng.poisson(0.12 * np.exp(0.9 * risk))

    customer = np.zeros((count, n), dtype=bool)
    for j, member in enumerate(members):
        borrows = sum(loans[j].values(), np.zeros(n, dtype=np.int64)) > 0
        customer[j] = borrows | (home == j) | shopper[j] | (declined[j] > 0)
        if member.kind is InstitutionKind.UNIVERSAL_BANK:
            customer[j] = True
    # Everyone in the population is somebody's customer: the rest bank at the first bank.
    nowhere = ~customer.any(axis=0)
    home = np.where(nowhere, banks[0], home)
    customer[banks[0]] |= nowhere
    return Relationships(home_bank=home, customer=customer, shopper=shopper,
                         loans=tuple(loans), declined=declined)
