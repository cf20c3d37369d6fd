"""One member's raw tables for one chunk of people, in the data model's column names and types.

Renaming to the member's own dialect and choosing the file format happen in the writer; the
deliberately bad rows are added by :mod:`fedcredit.synth.dirt`. Everything here is clean:
every reference resolves, every value is in range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedcredit.synth.credit import PRODUCT_NAMES, STATUS_NAMES, LoanBook, draw_loans
from fedcredit.synth.dates import SECONDS_PER_DAY, HistoryWindow, date_array, timestamp_array
from fedcredit.synth.identifiers import KeyFormat, styled
from fedcredit.synth.institutions import InstitutionKind, InstitutionProfile
from fedcredit.synth.ledger import CATEGORY_NAMES, DIRECTION_NAMES, Ledger, bank_ledger, shop_ledger
from fedcredit.synth.population import NEVER, People
from fedcredit.synth.relationships import Relationships
from node.ingest.datamodel import TABLES, TABLES_BY_NAME, ColumnType

ARROW_TYPES = {
    ColumnType.STRING: pa.string(),
    ColumnType.INTEGER: pa.int64(),
    ColumnType.AMOUNT: pa.float64(),
    ColumnType.DATE: pa.date32(),
    ColumnType.TIMESTAMP: pa.timestamp("s"),
}
_YEAR = 365
_INQUIRY_PURPOSES = ("new_loan", "credit_card", "limit_increase", "other")
_DECLINED_PURPOSE_SHARES = (0.70, 0.15, 0.10, 0.05)
_BRANCHES = pa.array([f"BR{n:03d}" for n in range(1, 41)])


@dataclass(frozen=True)
class MemberKeys:
    """A member's key format per table (each member's differ, even for the same kind)."""

    formats: Mapping[str, KeyFormat]

    @classmethod
    def from_rng(cls, profile: InstitutionProfile, rng: np.random.Generator) -> MemberKeys:
        return cls({t.name: KeyFormat.from_rng(profile.key_prefix(t.name), rng) for t in TABLES})

    def keys(self, table: str, counters: np.ndarray) -> pa.StringArray:
        return self.formats[table].keys(counters)


def canonical_schema(profile: InstitutionProfile, table: str) -> pa.Schema:
    model = TABLES_BY_NAME[table]
    fields = [pa.field(c, ARROW_TYPES[model.column(c).type]) for c in profile.columns(table)]
    if table == "customers" and profile.branch_column is not None:
        fields.append(pa.field(profile.branch_column, pa.string()))
    return pa.schema(fields)


def _names(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    return pa.array(names).take(pa.array(codes.astype(np.int64)))


def _amounts(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(np.float64), mask=np.isnan(values))


def _optional_dates(days: np.ndarray) -> pa.Array:
    return date_array(days, valid=days != NEVER)


def _loans(book: LoanBook, loan_ids: pa.Array, customer_ids: pa.Array) -> dict[str, pa.Array]:
    return {
        "loan_id": loan_ids,
        "customer_id": customer_ids.take(pa.array(book.owner)),
        "product": _names(book.product, PRODUCT_NAMES),
        "principal": _amounts(book.principal),
        "balance": _amounts(book.balance),
        "credit_limit": _amounts(book.credit_limit),
        "open_date": date_array(book.open_date),
        "close_date": _optional_dates(book.close_date),
        "status": _names(book.status, STATUS_NAMES),
        "days_past_due": pa.array(book.days_past_due.astype(np.int64)),
    }


def _repayments(book: LoanBook, installment_ids: pa.Array,
                loan_ids: pa.Array) -> dict[str, pa.Array]:
    return {
        "installment_id": installment_ids,
        "loan_id": loan_ids.take(pa.array(book.schedule_loan)),
        "due_date": date_array(book.due_date),
        "due_amount": _amounts(book.due_amount),
        "paid_date": _optional_dates(book.paid_date),
        "paid_amount": _amounts(book.paid_amount),
    }


def _transactions(ledger: Ledger, transaction_ids: pa.Array,
                  customer_ids: pa.Array) -> dict[str, pa.Array]:
    return {
        "transaction_id": transaction_ids,
        "customer_id": customer_ids.take(pa.array(ledger.owner)),
        "ts": timestamp_array(ledger.ts),
        "amount": _amounts(ledger.amount),
        "direction": _names(ledger.direction, DIRECTION_NAMES),
        "category": _names(ledger.category, CATEGORY_NAMES),
    }


@dataclass(frozen=True)
class _Inquiries:
    owner: np.ndarray
    day: np.ndarray
    purpose: np.ndarray  # index into _INQUIRY_PURPOSES, -1 for null


def _draw_inquiries(rng: np.random.Generator, book: LoanBook, declined: np.ndarray,
                    window: HistoryWindow) -> _Inquiries:
    """One inquiry per loan opened in the window, plus every declined application."""
    opened = book.open_date >= window.first_day
    owner = np.concatenate([book.owner[opened], np.repeat(np.arange(len(declined)), declined)])
    rows_declined = int(declined.sum())
    day = np.concatenate([
        book.open_date[opened] - rng.integers(0, 11, int(opened.sum())),
        rng.integers(window.first_day, window.as_of + 1, rows_declined),
    ])
    card = book.product[opened] == PRODUCT_NAMES.index("credit_card")
    purpose = np.concatenate([
        np.where(card, 1, 0),
        rng.choice(len(_INQUIRY_PURPOSES), rows_declined, p=_DECLINED_PURPOSE_SHARES),
    ])
    purpose = np.where(rng.random(len(purpose)) < 0.05, -1, purpose)
    order = np.lexsort((day, owner))
    return _Inquiries(owner[order], day[order], purpose[order])


def _customers(rng: np.random.Generator, people: People, profile: InstitutionProfile,
               positions: np.ndarray, customer_ids: pa.Array, first_contact: np.ndarray,
               holds_account: np.ndarray, window: HistoryWindow) -> dict[str, pa.Array]:
    count = len(positions)
    ids = styled(people.identifier[positions], rng, lower_x=profile.identifier_style.lower_x,
                 separated=profile.identifier_style.separated)
    tenure_years = 15 if profile.kind is not InstitutionKind.CONSUMER_FINANCE else 6
    since = window.as_of - rng.integers(30, tenure_years * _YEAR, count)
    # A current account predates the history window it shows transactions for.
    since = np.where(holds_account, window.first_day - rng.integers(1, 10 * _YEAR, count), since)
    adult = people.birth_day[positions] + 18 * _YEAR + 5
    since = np.minimum(np.maximum(since, adult), np.minimum(first_contact[positions],
                                                           window.as_of))
    birth = people.birth_day[positions]
    birth_known = rng.random(count) >= profile.null_share("birth_date")
    income = people.declared_income[positions]
    income_known = rng.random(count) >= profile.null_share("monthly_income")
    columns = {
        "customer_id": customer_ids.take(pa.array(positions)),
        "identifier": ids,
        "identifier_type": pa.array(["cn_resident_id"] * count),
        "birth_date": date_array(birth, valid=birth_known),
        "monthly_income": _amounts(np.where(income_known, income, np.nan)),
        "customer_since": date_array(since),
    }
    if profile.branch_column is not None:
        columns[profile.branch_column] = _BRANCHES.take(
            pa.array(rng.integers(0, len(_BRANCHES), count)))
    return columns


def member_tables(rng: np.random.Generator, people: People, relationships: Relationships,
                  position: int, profile: InstitutionProfile, keys: MemberKeys,
                  counters: Mapping[str, int], window: HistoryWindow,
                  spending_per_month: float) -> dict[str, pa.Table]:
    """The member's clean tables for this chunk; ``counters`` are clean rows written so far."""
    columns: dict[str, dict[str, pa.Array]] = {}
    customer_ids = keys.keys("customers", people.index)
    first_contact = np.full(people.size, NEVER, dtype=np.int64)

    book = draw_loans(rng, people, relationships.loans[position], window)
    np.minimum.at(first_contact, book.owner, book.open_date)
    loan_ids = keys.keys("loans", counters["loans"] + np.arange(book.loans))
    columns["loans"] = _loans(book, loan_ids, customer_ids)
    columns["repayments"] = _repayments(
        book, keys.keys("repayments", counters["repayments"] + np.arange(book.installments)),
        loan_ids)

    holds_account = relationships.home_bank == position
    if "transactions" in profile.tables:
        if profile.kind is InstitutionKind.ECOMMERCE:
            ledger = shop_ledger(rng, people, np.flatnonzero(relationships.shopper[position]),
                                 window)
        else:
            ledger = bank_ledger(rng, people, np.flatnonzero(holds_account), window,
                                 spending_per_month)
        # Rows are by holder and time: a holder's first row is their first transaction.
        first = np.flatnonzero(np.diff(ledger.owner, prepend=-1) != 0)
        np.minimum.at(first_contact, ledger.owner[first], ledger.ts[first] // SECONDS_PER_DAY)
        ids = keys.keys("transactions", counters["transactions"] + np.arange(ledger.rows))
        columns["transactions"] = _transactions(ledger, ids, customer_ids)

    if "inquiries" in profile.tables:
        asked = _draw_inquiries(rng, book, relationships.declined[position], window)
        np.minimum.at(first_contact, asked.owner, asked.day)
        purpose = pc.if_else(pa.array(asked.purpose < 0), pa.scalar(None, pa.string()),
                             _names(np.maximum(asked.purpose, 0), _INQUIRY_PURPOSES))
        columns["inquiries"] = {
            "inquiry_id": keys.keys("inquiries",
                                    counters["inquiries"] + np.arange(len(asked.owner))),
            "customer_id": customer_ids.take(pa.array(asked.owner)),
            "inquiry_date": date_array(asked.day),
            "purpose": purpose,
        }

    positions = np.flatnonzero(relationships.customer[position])
    columns["customers"] = _customers(rng, people, profile, positions, customer_ids,
                                      first_contact, holds_account[positions], window)
    return {
        name: pa.table({c: columns[name][c] for c in canonical_schema(profile, name).names},
                       schema=canonical_schema(profile, name))
        for name in profile.tables
    }
