"""Loan products the members publish, and which of them fit an applicant.

A product is eligible when the applicant's grade is among its grades, the requested term is one
of its terms, and the amount it can offer — the request, bounded by the credit limit and the
product's maximum — reaches its minimum. Eligible products are ranked by fit (the share of the
request they cover), then APR, then disbursement speed, then id, so the order never depends on
the catalog's order. Each match carries the reason for its rank.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from scoring.scorecard import Grade

TERMS_MONTHS = (3, 6, 12, 24)


class ProductError(ValueError):
    """A product definition that cannot be offered (names the field at fault)."""


@dataclass(frozen=True)
class Product:
    product_id: str
    member_id: str
    name: str
    min_amount: Decimal
    max_amount: Decimal
    terms_months: tuple[int, ...]
    apr: Decimal
    disbursement_days: int
    eligible_grades: frozenset[Grade]

    def __post_init__(self) -> None:
        if not self.product_id or not self.member_id or not self.name:
            raise ProductError("a product needs an id, its member and a name")
        if self.min_amount <= 0:
            raise ProductError(f"{self.product_id}: min_amount must be positive")
        if self.min_amount > self.max_amount:
            raise ProductError(f"{self.product_id}: min_amount ({self.min_amount}) is above "
                               f"max_amount ({self.max_amount})")
        if not self.terms_months or set(self.terms_months) - set(TERMS_MONTHS):
            raise ProductError(f"{self.product_id}: terms_months must be among "
                               f"{', '.join(map(str, TERMS_MONTHS))}")
        if not Decimal(0) <= self.apr <= Decimal(1):
            raise ProductError(f"{self.product_id}: apr is a fraction between 0 and 1")
        if self.disbursement_days < 0:
            raise ProductError(f"{self.product_id}: disbursement_days cannot be negative")
        if not self.eligible_grades:
            raise ProductError(f"{self.product_id}: eligible_grades cannot be empty")


class NoMatch(StrEnum):
    NONE_FOR_GRADE_OR_TERM = "no product is open to this grade and term"
    BELOW_EVERY_MINIMUM = "the amount the applicant can borrow is below every product's minimum"
    NO_CREDIT = "the credit limit is zero"
    TERM_UNSUPPORTED = "products are offered for 3, 6, 12 or 24 months only"


@dataclass(frozen=True)
class Match:
    rank: int
    product: Product
    offered_amount: Decimal
    reason: str


@dataclass(frozen=True)
class Matching:
    matches: tuple[Match, ...]
    none_because: NoMatch | None  # set when there is no match
    requested_amount: Decimal

    @property
    def covers_request(self) -> bool:
        """False when the request is above every product's maximum (or the credit limit):
        the matches then lend part of it, best coverage first."""
        return any(m.offered_amount == self.requested_amount for m in self.matches)


def match_products(products: Iterable[Product], requested_amount: Decimal,
                   credit_limit: Decimal | None, grade: Grade, term_months: int) -> Matching:
    if requested_amount <= 0:
        raise ValueError("the requested amount must be positive")
    if term_months not in TERMS_MONTHS:
        raise ValueError(f"unsupported term: {term_months} months (one of "
                         f"{', '.join(map(str, TERMS_MONTHS))})")
    ceiling = requested_amount if credit_limit is None else min(requested_amount, credit_limit)
    if ceiling <= 0:
        return Matching((), NoMatch.NO_CREDIT, requested_amount)
    open_to = [p for p in products
               if grade in p.eligible_grades and term_months in p.terms_months]
    if not open_to:
        return Matching((), NoMatch.NONE_FOR_GRADE_OR_TERM, requested_amount)
    candidates = []
    for product in open_to:
        offered = min(ceiling, product.max_amount)
        if offered >= product.min_amount:
            candidates.append((offered, product))
    if not candidates:
        return Matching((), NoMatch.BELOW_EVERY_MINIMUM, requested_amount)
    candidates.sort(key=lambda c: (-c[0], c[1].apr, c[1].disbursement_days,
                                   c[1].member_id, c[1].product_id))
    matches = []
    for rank, (offered, product) in enumerate(candidates, start=1):
        share = offered / requested_amount
        bound = "credit limit" if offered == ceiling else "product maximum"
        cover = ("the full amount" if share == 1 else
                 f"{share:.0%} of the request (bounded by the {bound})")
        matches.append(Match(rank, product, offered,
                             f"{cover} at {product.apr:.2%} APR, disbursed "
                             f"{_speed(product.disbursement_days)}"))
    return Matching(tuple(matches), None, requested_amount)


def _speed(days: int) -> str:
    return "the same day" if days == 0 else "in 1 day" if days == 1 else f"in {days} days"
