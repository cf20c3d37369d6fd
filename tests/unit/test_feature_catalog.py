"""Which features a snapshot has: tables, optional columns and income are what decide."""

from __future__ import annotations

import pytest

from node.ingest.datamodel import TABLES
from node.ingest.features import FEATURES, feature_names

pytestmark = pytest.mark.unit

EVERYTHING = {t.name: frozenset(t.column_names) for t in TABLES}
INCOME = {"income_monthly", "income_cv", "surplus_monthly", "spending_to_income"}


def test_every_table_and_column_gives_the_whole_catalog() -> None:
    assert feature_names(EVERYTHING) == tuple(f.name for f in FEATURES)


def test_a_merchant_without_income_has_spending_but_no_income_features() -> None:
    names = set(feature_names(EVERYTHING, with_income=False))
    assert not names & INCOME
    assert {"spending_monthly", "spending_cv", "gambling_share"} <= names


def test_missing_tables_and_optional_columns_remove_exactly_their_features() -> None:
    present = {"customers": frozenset({"customer_id", "identifier", "birth_date"}),
               "loans": EVERYTHING["loans"] - {"credit_limit"}}
    names = feature_names(present)
    assert names == ("age_years", "loans_total", "total_balance", "max_days_past_due",
                     "worst_status", "defaulted_accounts", "oldest_account_months",
                     "loans_opened_window")
