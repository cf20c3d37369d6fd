"""The institution data model: the canonical tables an ingest understands.

An institution maps its own table and column names onto these with its ingest config (see
``docs/data-model.md``). ``customers`` is required; every other table is optional, and the
features that need a table an institution does not have are absent (never zero).

Amounts are in the institution's currency, major units (e.g. 1234.56), never negative: the
direction of money is a column of its own. Dates are calendar dates; ``transactions.ts`` is a
timestamp. Enumerations are lower-case; anything else is a reject, not a silent "other".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ColumnType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    AMOUNT = "amount"  # double, major currency units
    DATE = "date"
    TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class ForeignKey:
    table: str
    column: str


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    #: Must be present in the source (mapped or under its canonical name).
    required: bool = True
    #: May hold nulls (a blank cell is a null).
    nullable: bool = False
    non_negative: bool = False
    #: Dates/timestamps after the ingest's as-of date are rejected.
    not_in_future: bool = False
    allowed: frozenset[str] | None = None
    references: ForeignKey | None = None
    #: Holds a raw identifier: never written anywhere but the institution's own reject report,
    #: and masked there.
    identifying: bool = False
    description: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    primary_key: str
    columns: tuple[Column, ...]
    required: bool = False
    description: str = ""

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


IDENTIFIER_TYPES = frozenset({"cn_resident_id", "us_ssn", "opaque"})
LOAN_PRODUCTS = frozenset(
    {"mortgage", "auto", "personal", "credit_card", "bnpl", "overdraft", "business", "other"}
)
#: Products whose limit is drawn and repaid repeatedly; utilization = balance / limit.
REVOLVING_PRODUCTS = frozenset({"credit_card", "overdraft", "bnpl"})
LOAN_STATUSES = frozenset({"active", "closed", "defaulted", "written_off"})
OPEN_LOAN_STATUSES = frozenset({"active", "defaulted"})
DIRECTIONS = frozenset({"credit", "debit"})
INCOME_CATEGORIES = frozenset({"salary", "pension", "benefits", "business_income", "other_income"})
#: Money moving between the customer's own accounts or repaying debt: neither income nor
#: consumption. Debt service is measured from the repayment schedule instead.
NEUTRAL_CATEGORIES = frozenset({"transfer", "loan_repayment"})
SPENDING_CATEGORIES = frozenset(
    {"groceries", "housing", "utilities", "transport", "dining", "shopping", "travel",
     "entertainment", "health", "education", "cash_withdrawal", "gambling", "other_spending"}
)
TRANSACTION_CATEGORIES = INCOME_CATEGORIES | NEUTRAL_CATEGORIES | SPENDING_CATEGORIES
INQUIRY_PURPOSES = frozenset({"new_loan", "credit_card", "limit_increase", "account_review",
                              "other"})

CUSTOMERS = Table(
    "customers",
    primary_key="customer_id",
    required=True,
    description="One row per customer of the institution.",
    columns=(
        Column("customer_id", ColumnType.STRING,
               description="The institution's own customer key (joins the other tables)."),
        Column("identifier", ColumnType.STRING, identifying=True,
               description="National identifier; pseudonymized with the alliance subject key."),
        Column("identifier_type", ColumnType.STRING, required=False, nullable=True,
               allowed=IDENTIFIER_TYPES,
               description="cn_resident_id, us_ssn or opaque; default from the config."),
        Column("birth_date", ColumnType.DATE, required=False, nullable=True,
               not_in_future=True),
        Column("monthly_income", ColumnType.AMOUNT, required=False, nullable=True,
               non_negative=True, description="Declared monthly income."),
        Column("customer_since", ColumnType.DATE, required=False, nullable=True,
               not_in_future=True),
    ),
)

LOANS = Table(
    "loans",
    primary_key="loan_id",
    description="Loans and credit lines, one row each, as of the as-of date.",
    columns=(
        Column("loan_id", ColumnType.STRING),
        Column("customer_id", ColumnType.STRING,
               references=ForeignKey("customers", "customer_id")),
        Column("product", ColumnType.STRING, allowed=LOAN_PRODUCTS),
        Column("principal", ColumnType.AMOUNT, non_negative=True,
               description="Amount lent (for a credit line: 0 or the first draw)."),
        Column("balance", ColumnType.AMOUNT, non_negative=True,
               description="Outstanding balance."),
        Column("credit_limit", ColumnType.AMOUNT, required=False, nullable=True,
               non_negative=True, description="Limit of a revolving line."),
        Column("open_date", ColumnType.DATE, not_in_future=True),
        Column("close_date", ColumnType.DATE, required=False, nullable=True,
               not_in_future=True),
        Column("status", ColumnType.STRING, allowed=LOAN_STATUSES),
        Column("days_past_due", ColumnType.INTEGER, non_negative=True),
    ),
)

REPAYMENTS = Table(
    "repayments",
    primary_key="installment_id",
    description="Repayment schedule and what was paid against it, one row per installment.",
    columns=(
        Column("installment_id", ColumnType.STRING),
        Column("loan_id", ColumnType.STRING, references=ForeignKey("loans", "loan_id")),
        Column("due_date", ColumnType.DATE),
        Column("due_amount", ColumnType.AMOUNT, non_negative=True),
        Column("paid_date", ColumnType.DATE, required=False, nullable=True, not_in_future=True),
        Column("paid_amount", ColumnType.AMOUNT, required=False, nullable=True,
               non_negative=True),
    ),
)

TRANSACTIONS = Table(
    "transactions",
    primary_key="transaction_id",
    description="Account transactions: the consumption data (income and spending).",
    columns=(
        Column("transaction_id", ColumnType.STRING),
        Column("customer_id", ColumnType.STRING,
               references=ForeignKey("customers", "customer_id")),
        Column("ts", ColumnType.TIMESTAMP, not_in_future=True),
        Column("amount", ColumnType.AMOUNT, non_negative=True),
        Column("direction", ColumnType.STRING, allowed=DIRECTIONS),
        Column("category", ColumnType.STRING, allowed=TRANSACTION_CATEGORIES),
    ),
)

INQUIRIES = Table(
    "inquiries",
    primary_key="inquiry_id",
    description="Credit inquiries (applications that pulled the customer's credit).",
    columns=(
        Column("inquiry_id", ColumnType.STRING),
        Column("customer_id", ColumnType.STRING,
               references=ForeignKey("customers", "customer_id")),
        Column("inquiry_date", ColumnType.DATE, not_in_future=True),
        Column("purpose", ColumnType.STRING, required=False, nullable=True,
               allowed=INQUIRY_PURPOSES),
    ),
)

#: In dependency order: a table's references come before it.
TABLES: tuple[Table, ...] = (CUSTOMERS, LOANS, REPAYMENTS, TRANSACTIONS, INQUIRIES)
TABLES_BY_NAME = {t.name: t for t in TABLES}
