"""The member institutions: what kind each is, which tables it holds, how it names them.

Kinds cycle bank, consumer finance, e-commerce, bank, ... so every alliance of two or more has
a bank (current accounts: salary and spending) and a lender that sees no transactions; alone,
the one member is a universal bank holding every table. Each member names columns in its own
dialect and some write CSV, which its ingest config (``ingest.yaml``) maps back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from fedcredit.synth.spec import MAX_INSTITUTIONS
from node.ingest.datamodel import TABLES, TABLES_BY_NAME


class InstitutionKind(StrEnum):
    UNIVERSAL_BANK = "universal_bank"
    BANK = "bank"
    CONSUMER_FINANCE = "consumer_finance"
    ECOMMERCE = "ecommerce"


class FileFormat(StrEnum):
    PARQUET = "parquet"
    CSV = "csv"


class Dialect(StrEnum):
    """How a member's source system names columns."""

    CANONICAL = "canonical"  # the data model's own names
    CORE_BANKING = "core_banking"  # terse abbreviations: cust_no, dob, txn_amt
    CAMEL = "camel"  # customerId, idNumber
    UPPER = "upper"  # CUSTOMER_NO, ID_NUMBER


_CORE_BANKING = {
    "customer_id": "cust_no", "identifier": "id_no", "birth_date": "dob",
    "monthly_income": "declared_income", "customer_since": "open_dt", "loan_id": "acct_no",
    "product": "product_cd", "principal": "orig_amt", "balance": "cur_bal",
    "credit_limit": "limit_amt", "open_date": "open_dt", "close_date": "close_dt",
    "status": "acct_status", "days_past_due": "dpd", "installment_id": "instl_id",
    "due_date": "due_dt", "due_amount": "due_amt", "paid_date": "pay_dt", "paid_amount": "pay_amt",
    "transaction_id": "txn_id", "ts": "txn_ts", "amount": "txn_amt", "direction": "dr_cr",
    "category": "txn_cat", "inquiry_id": "enq_id", "inquiry_date": "enq_dt",
    "purpose": "enq_purpose",
}
_CAMEL_OVERRIDES = {"identifier": "idNumber", "ts": "createdAt", "customer_since": "memberSince"}
_UPPER_OVERRIDES = {"identifier": "ID_NUMBER", "ts": "TXN_TIMESTAMP",
                    "customer_id": "CUSTOMER_NO"}

#: Extra source columns the data model does not know: an ingest ignores unmapped columns.
BRANCH_COLUMN = {Dialect.CORE_BANKING: "branch_cd", Dialect.UPPER: "BRANCH_CODE"}


def local_name(dialect: Dialect, canonical: str) -> str:
    if dialect is Dialect.CORE_BANKING:
        return _CORE_BANKING.get(canonical, canonical)
    if dialect is Dialect.CAMEL:
        head, *rest = canonical.split("_")
        return _CAMEL_OVERRIDES.get(canonical, head + "".join(w.title() for w in rest))
    if dialect is Dialect.UPPER:
        return _UPPER_OVERRIDES.get(canonical, canonical.upper())
    return canonical


_TABLES_OF = {
    InstitutionKind.UNIVERSAL_BANK: tuple(t.name for t in TABLES),
    InstitutionKind.BANK: ("customers", "loans", "repayments", "transactions"),
    InstitutionKind.CONSUMER_FINANCE: ("customers", "loans", "repayments", "inquiries"),
    InstitutionKind.ECOMMERCE: ("customers", "loans", "repayments", "transactions"),
}
#: Optional data-model columns a kind's extract leaves out.
_ABSENT = {
    InstitutionKind.UNIVERSAL_BANK: {"customers": {"identifier_type"}},
    InstitutionKind.BANK: {"customers": {"identifier_type"}},
    InstitutionKind.CONSUMER_FINANCE: {"loans": {"credit_limit"}},
    InstitutionKind.ECOMMERCE: {"customers": {"identifier_type", "monthly_income"}},
}
PRODUCTS_OF = {
    InstitutionKind.UNIVERSAL_BANK: ("mortgage", "credit_card", "overdraft", "personal", "auto"),
    InstitutionKind.BANK: ("mortgage", "credit_card", "overdraft"),
    InstitutionKind.CONSUMER_FINANCE: ("personal", "auto"),
    InstitutionKind.ECOMMERCE: ("bnpl",),
}
_KEY_PREFIXES = {
    InstitutionKind.UNIVERSAL_BANK: ("C", "A", "I", "T", "Q"),
    InstitutionKind.BANK: ("C", "A", "I", "T", "Q"),
    InstitutionKind.CONSUMER_FINANCE: ("CF", "LN", "RP", "TX", "IQ"),
    InstitutionKind.ECOMMERCE: ("U", "BP", "BI", "OD", "IQ"),
}
#: Share of nulls in nullable optional customer columns, by kind.
_NULL_SHARES = {
    InstitutionKind.UNIVERSAL_BANK: {"birth_date": 0.005, "monthly_income": 0.10},
    InstitutionKind.BANK: {"birth_date": 0.005, "monthly_income": 0.12},
    InstitutionKind.CONSUMER_FINANCE: {"birth_date": 0.02, "monthly_income": 0.03},
    InstitutionKind.ECOMMERCE: {"birth_date": 0.45},
}


@dataclass(frozen=True)
class IdentifierStyle:
    """How often an institution writes ids with a lower-case x, or spaces/dashes."""

    lower_x: float = 0.0
    separated: float = 0.0


@dataclass(frozen=True)
class InstitutionProfile:
    member_id: str
    display_name: str
    kind: InstitutionKind
    file_format: FileFormat
    dialect: Dialect
    identifier_style: IdentifierStyle = field(default_factory=IdentifierStyle)

    @property
    def tables(self) -> tuple[str, ...]:
        """The data-model tables this member holds, in dependency order."""
        return _TABLES_OF[self.kind]

    @property
    def products(self) -> tuple[str, ...]:
        return PRODUCTS_OF[self.kind]

    @property
    def lends(self) -> bool:
        return bool(self.products)

    def columns(self, table: str) -> tuple[str, ...]:
        """The data-model columns this member's extract of ``table`` has."""
        absent = _ABSENT[self.kind].get(table, set())
        return tuple(c for c in TABLES_BY_NAME[table].column_names if c not in absent)

    def local_names(self, table: str) -> Mapping[str, str]:
        """Canonical → this member's column name, only where they differ."""
        names = {c: local_name(self.dialect, c) for c in self.columns(table)}
        return {c: n for c, n in names.items() if n != c}

    @property
    def branch_column(self) -> str | None:
        """An extra, unmapped customers column some banks export."""
        if self.kind in (InstitutionKind.BANK, InstitutionKind.UNIVERSAL_BANK):
            return BRANCH_COLUMN.get(self.dialect)
        return None

    def key_prefix(self, table: str) -> str:
        return _KEY_PREFIXES[self.kind][[t.name for t in TABLES].index(table)]

    def null_share(self, column: str) -> float:
        return _NULL_SHARES[self.kind].get(column, 0.0)

    @property
    def receives_income(self) -> bool:
        """Salary and other income arrive at accounts this kind of institution holds."""
        return self.kind is not InstitutionKind.ECOMMERCE

    def file_name(self, table: str) -> str:
        return f"{table}.{self.file_format.value}"


_CYCLE = (InstitutionKind.BANK, InstitutionKind.CONSUMER_FINANCE, InstitutionKind.ECOMMERCE)
_BASE_IDS = {InstitutionKind.BANK: "bank", InstitutionKind.CONSUMER_FINANCE: "finco",
             InstitutionKind.ECOMMERCE: "shop"}
_DISPLAY_NAMES = ("Harbor Bank", "Quickline Consumer Finance", "Bazaar Pay",
                  "Jade River Bank", "Pinecrest Credit", "Lantern Market",
                  "Summit Commercial Bank", "Bright Lane Finance")
_DIALECTS = (Dialect.CORE_BANKING, Dialect.CANONICAL, Dialect.CAMEL, Dialect.UPPER,
             Dialect.CAMEL, Dialect.CANONICAL, Dialect.CORE_BANKING, Dialect.UPPER)
_FORMATS = (FileFormat.PARQUET, FileFormat.PARQUET, FileFormat.CSV, FileFormat.PARQUET,
            FileFormat.CSV, FileFormat.CSV, FileFormat.PARQUET, FileFormat.PARQUET)
_STYLES = (IdentifierStyle(), IdentifierStyle(lower_x=0.3), IdentifierStyle(0.2, 0.06),
           IdentifierStyle(lower_x=0.5), IdentifierStyle(), IdentifierStyle(separated=0.1),
           IdentifierStyle(), IdentifierStyle(lower_x=0.1))
#: Every member id any alliance can have (``--force`` clears exactly these folders' outputs).
ALL_MEMBER_IDS = ("bank", "finco", "shop", "bank2", "finco2", "shop2", "bank3", "finco3")


def alliance_members(count: int) -> tuple[InstitutionProfile, ...]:
    if not 1 <= count <= MAX_INSTITUTIONS:
        raise ValueError(f"an alliance has 1 to {MAX_INSTITUTIONS} institutions")
    if count == 1:
        return (InstitutionProfile("bank", "Harbor Universal Bank",
                                   InstitutionKind.UNIVERSAL_BANK, FileFormat.PARQUET,
                                   Dialect.CORE_BANKING),)
    members = []
    for position in range(count):
        kind = _CYCLE[position % len(_CYCLE)]
        ordinal = position // len(_CYCLE) + 1
        member_id = _BASE_IDS[kind] + ("" if ordinal == 1 else str(ordinal))
        members.append(InstitutionProfile(member_id, _DISPLAY_NAMES[position], kind,
                                          _FORMATS[position], _DIALECTS[position],
                                          _STYLES[position]))
    return tuple(members)
