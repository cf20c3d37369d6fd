"""A small institution's raw tables with one known bad row per reject reason.

``write_institution(dir)`` writes CSV files and an ingest.yaml in the bank's own column names
(``cust_no``, ``id_no``, ``dob``…) and returns what an ingest must report.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from mpc.pseudonym import cn_check_character

AS_OF = "2026-10-31"


def cn_id(seq: int, birth: str = "19850312") -> str:
    first = f"110105{birth}{seq % 1000:03d}"
    return first + cn_check_character(first)


GOOD_CUSTOMERS = [
    # cust_no, id_no, dob, income, since
    ("C1", cn_id(1), "1985-03-12", "9000", "2015-01-01"),
    ("C2", cn_id(2, "19900101"), "1990-01-01", "", "2020-06-15"),
    ("C3", cn_id(3, "19700707").lower().replace("x", "x"), "1970-07-07", "15000.50",
     "2010-02-01"),
    ("C4", cn_id(4, "19951111")[:6] + " " + cn_id(4, "19951111")[6:], "1995-11-11", "4000",
     ""),
]
BAD_CUSTOMERS = [
    ("C5", cn_id(5)[:-1] + ("0" if cn_id(5)[-1] != "0" else "1"), "1985-03-12", "1", ""),
    ("C6", cn_id(6), "2027-01-01", "1", ""),  # future birth date
    ("C7", cn_id(7), "1980-01-01", "-5", ""),  # negative income
    ("C8", cn_id(8), "not-a-date", "1", ""),  # unparseable date
    ("C9", cn_id(9), "1980-01-01", "1", ""),  # duplicate key (twice)
    ("C9", cn_id(10), "1980-01-01", "1", ""),
    ("C11", cn_id(11), "1985-03-12", "1", ""),  # one person, two records → both rejected
    ("C12", cn_id(11).replace("-", ""), "1985-03-12", "1", ""),
    ("C1", cn_id(1), "1985-13-01", "1", ""),  # a malformed twin of a good row: only it goes
]


@dataclass(frozen=True)
class Expected:
    customers_in: int
    customers_rejected: dict[str, int]
    loans_rejected: dict[str, int]
    repayments_rejected: dict[str, int]
    transactions_rejected: dict[str, int]
    inquiries_rejected: dict[str, int]
    subjects: int


def _write(path: Path, header: list[str], rows: Sequence[Sequence[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_institution(root: Path, *, member_id: str = "bank") -> Expected:
    raw = root / "raw"
    _write(raw / "customers.csv", ["cust_no", "id_no", "dob", "income", "since"],
           GOOD_CUSTOMERS + BAD_CUSTOMERS)
    loans = [
        # loan_no, cust_no, product, principal, balance, limit, opened, closed, status, dpd
        ("L1", "C1", "mortgage", "500000", "320000", "", "2018-05-01", "", "active", "0"),
        ("L2", "C1", "credit_card", "0", "2500", "10000", "2019-01-01", "", "active", "35"),
        ("L3", "C2", "personal", "20000", "15000", "", "2025-03-01", "", "defaulted", "120"),
        ("L4", "C3", "auto", "80000", "0", "", "2016-01-01", "2021-01-01", "closed", "0.0"),
        ("L5", "C9", "personal", "1000", "100", "", "2024-01-01", "", "active", "0"),
        ("L6", "C404", "personal", "1000", "100", "", "2024-01-01", "", "active", "0"),
        ("L7", "C1", "personal", "1000", "-1", "", "2024-01-01", "", "active", "0"),
        ("L8", "C1", "rocket", "1000", "1", "", "2024-01-01", "", "active", "0"),
        ("L9", "C2", "personal", "1000", "1", "", "2024-01-01", "2023-01-01", "closed", "0"),
        ("L10", "C3", "personal", "abc", "1", "", "2024-01-01", "", "active", "0"),
        ("L11", "C2", "personal", "1", "1", "", "2026-10", "", "active", "0"),  # partial date
    ]
    _write(raw / "loans.csv",
           ["loan_no", "cust_no", "product", "principal", "balance", "credit_limit",
            "opened", "closed", "status", "days_past_due"], loans)
    repayments = [
        ("P1", "L1", "2026-08-01", "3000", "2026-07-30", "3000"),
        ("P2", "L1", "2026-09-01", "3000", "2026-09-20", "3000"),
        ("P3", "L1", "2026-10-01", "3000", "", ""),
        ("P4", "L3", "2026-05-01", "1000", "", ""),
        ("P5", "L6", "2026-05-01", "1000", "", ""),  # parent orphan → parent_rejected
        ("P6", "L99", "2026-05-01", "1000", "", ""),  # orphan
        ("P7", "L1", "2026-10-15", "3000", "2026-11-05", "3000"),  # paid in the future
    ]
    _write(raw / "repayments.csv",
           ["installment_id", "loan_id", "due_date", "due_amount", "paid_date", "paid_amount"],
           repayments)
    transactions = [
        ("T1", "C1", "2026-09-25T09:00:00", "9000", "credit", "salary"),
        ("T2", "C1", "2026-10-25T09:00:00", "9000", "credit", "salary"),
        ("T3", "C1", "2026-10-02T12:00:00", "1200", "debit", "groceries"),
        ("T4", "C1", "2026-10-05T12:00:00", "3000", "debit", "loan_repayment"),
        ("T5", "C3", "2026-10-05T12:00:00", "300", "debit", "gambling"),
        ("T6", "C3", "2026-10-06T12:00:00", "300", "debit", "Groceries"),
        ("T7", "C1", "2026-12-01T00:00:00", "1", "debit", "groceries"),  # future
        ("T8", "C1", "2026-10-01T00:00:00", "1", "sideways", "groceries"),
        ("T8", "C1", "2026-10-01T00:00:00", "1", "debit", "groceries"),  # dup key (T8 twice)
    ]
    _write(raw / "transactions.csv",
           ["transaction_id", "customer_id", "ts", "amount", "direction", "category"],
           transactions)
    inquiries = [
        ("Q1", "C2", "2026-09-01", "new_loan"),
        ("Q2", "C2", "2026-03-01", " "),  # blank: a null, not an unparseable value
        ("Q3", "C5", "2026-03-01", ""),  # bad-identifier customer → parent_rejected
    ]
    _write(raw / "inquiries.csv", ["inquiry_id", "customer_id", "inquiry_date", "purpose"],
           inquiries)
    config = {
        "member_id": member_id,
        "as_of": AS_OF,
        "identifier_type": "cn_resident_id",
        "output_dir": "snapshots",
        "tables": {
            "customers": {"path": "raw/customers.csv", "columns": {
                "customer_id": "cust_no", "identifier": "id_no", "birth_date": "dob",
                "monthly_income": "income", "customer_since": "since"}},
            "loans": {"path": "raw/loans.csv", "columns": {
                "loan_id": "loan_no", "customer_id": "cust_no", "open_date": "opened",
                "close_date": "closed"}},
            "repayments": {"path": "raw/repayments.csv"},
            "transactions": {"path": "raw/transactions.csv"},
            "inquiries": {"path": "raw/inquiries.csv"},
        },
    }
    (root / "ingest.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return Expected(
        customers_in=13,
        customers_rejected={
            "bad_identifier": 1, "future:birth_date": 1, "negative:monthly_income": 1,
            "unparseable:birth_date": 2, "duplicate_key": 2, "duplicate_identifier": 2,
        },
        loans_rejected={
            "parent_rejected": 1, "orphan": 1, "negative:balance": 1,
            "not_allowed:product": 1, "close_before_open": 1, "unparseable:principal": 1,
            "unparseable:open_date": 1,
        },
        repayments_rejected={"parent_rejected": 1, "orphan": 1, "future:paid_date": 1},
        transactions_rejected={"future:ts": 1, "not_allowed:direction": 1},
        inquiries_rejected={"parent_rejected": 1},
        subjects=4,
    )
