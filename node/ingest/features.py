"""Per-subject features from an institution's validated tables, as of one date.

A feature that needs a table the institution does not have is absent from the snapshot. Where
the table is there, counts are real zeros (the institution knows its customer has no loans),
while ratios and means with nothing to divide stay absent (null), never a made-up zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from node.ingest.datamodel import (
    INCOME_CATEGORIES,
    OPEN_LOAN_STATUSES,
    REVOLVING_PRODUCTS,
    SPENDING_CATEGORIES,
)
from node.ingest.snapshot import EXPOSURE_COLUMNS
from node.ingest.validation import PSEUDONYM


@dataclass(frozen=True)
class FeatureDef:
    name: str
    table: str  # the table it needs
    description: str
    #: Optional columns it needs, as ``table.column``: without them the feature is absent.
    needs: tuple[str, ...] = ()
    #: Meaningful only where transactions carry income (``transactions_carry_income``).
    income: bool = False


_PAID = ("repayments.paid_date", "repayments.paid_amount")

FEATURES: tuple[FeatureDef, ...] = (
    FeatureDef("age_years", "customers", "Whole years since birth_date.",
               ("customers.birth_date",)),
    FeatureDef("customer_tenure_months", "customers", "Months since customer_since.",
               ("customers.customer_since",)),
    FeatureDef("declared_income_monthly", "customers", "Declared monthly income.",
               ("customers.monthly_income",)),
    FeatureDef("loans_total", "loans", "Loans and credit lines ever held here."),
    FeatureDef("total_balance", "loans", "Outstanding balance of open loans."),
    FeatureDef("revolving_utilization", "loans",
               "Balance / limit over open revolving lines with a limit.", ("loans.credit_limit",)),
    FeatureDef("max_days_past_due", "loans", "Days past due, worst open loan."),
    FeatureDef("worst_status", "loans",
               "Worst delinquency bucket: 0 current, 1 1-29 dpd, 2 30-59, 3 60-89, 4 90+ or "
               "defaulted, 5 written off."),
    FeatureDef("defaulted_accounts", "loans", "Loans defaulted or written off."),
    FeatureDef("oldest_account_months", "loans", "Months since the oldest loan opened."),
    FeatureDef("loans_opened_window", "loans", "Loans opened in the window."),
    FeatureDef("installments_window", "repayments", "Installments due in the window."),
    FeatureDef("repayment_ratio", "repayments",
               "Paid (up to the amount due) / due, installments due in the window.", _PAID),
    FeatureDef("on_time_rate", "repayments",
               "Share of installments in the window paid in full by their due date.", _PAID),
    FeatureDef("late_installments_window", "repayments",
               "Installments paid more than 30 days late, or unpaid 30 days after due.", _PAID),
    FeatureDef("debt_service_monthly", "repayments", "Amount due per month over the window."),
    FeatureDef("income_monthly", "transactions", "Income credits per month (zero months count).",
               income=True),
    FeatureDef("income_cv", "transactions", "Volatility of monthly income: std / mean.",
               income=True),
    FeatureDef("spending_monthly", "transactions", "Consumption debits per month."),
    FeatureDef("spending_cv", "transactions", "Volatility of monthly spending: std / mean."),
    FeatureDef("loan_payments_monthly", "transactions",
               "Debits categorized loan_repayment per month (to any lender)."),
    FeatureDef("surplus_monthly", "transactions",
               "income_monthly - spending_monthly - loan_payments_monthly.", income=True),
    FeatureDef("spending_to_income", "transactions", "spending_monthly / income_monthly.",
               income=True),
    FeatureDef("gambling_share", "transactions", "Share of spending on gambling."),
    FeatureDef("account_history_months", "transactions",
               "Months of transaction history within the window."),
    FeatureDef("inquiries_window", "inquiries", "Credit inquiries in the window."),
)


def _sum_if(condition: SparkColumn, value: SparkColumn | None = None) -> SparkColumn:
    return F.sum(F.when(condition, value if value is not None else F.lit(1)).otherwise(0))


def _ratio(numerator: SparkColumn, denominator: SparkColumn) -> SparkColumn:
    return F.when(denominator > 0, numerator / denominator)


def _months_between(later: SparkColumn, earlier: SparkColumn) -> SparkColumn:
    return F.floor(F.months_between(later, earlier))


def loan_aggregates(loans: DataFrame, as_of: date, window_months: int) -> DataFrame:
    is_open = F.col("status").isin(*sorted(OPEN_LOAN_STATUSES))
    revolving = F.col("product").isin(*sorted(REVOLVING_PRODUCTS))
    dpd = F.col("days_past_due")
    bucket = (
        F.when(F.col("status") == "written_off", 5)
        .when(~is_open, 0)
        .when((F.col("status") == "defaulted") | (dpd >= 90), 4)
        .when(dpd >= 60, 3).when(dpd >= 30, 2).when(dpd >= 1, 1).otherwise(0)
    )
    as_of_lit = F.lit(as_of)
    with_limit = is_open & revolving & (F.col("credit_limit") > 0)
    return loans.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("loans_total"),
        _sum_if(is_open & ~revolving).alias("active_loans"),
        _sum_if(is_open & revolving).alias("open_credit_lines"),
        _sum_if(is_open, F.round(F.col("balance") * 100).cast("bigint")).alias(
            "outstanding_debt_cents"),
        _sum_if(is_open & (dpd >= 30)).alias("accounts_30dpd"),
        _sum_if(is_open & ((dpd >= 90) | (F.col("status") == "defaulted"))).alias(
            "accounts_90dpd"),
        _sum_if(is_open, F.col("balance")).alias("total_balance"),
        _ratio(_sum_if(with_limit, F.col("balance")),
               _sum_if(with_limit, F.col("credit_limit"))).alias("revolving_utilization"),
        F.coalesce(F.max(F.when(is_open, dpd)), F.lit(0)).alias("max_days_past_due"),
        F.max(bucket).alias("worst_status"),
        _sum_if(F.col("status").isin("defaulted", "written_off")).alias("defaulted_accounts"),
        _months_between(as_of_lit, F.min("open_date")).alias("oldest_account_months"),
        _sum_if(F.col("open_date") > F.add_months(as_of_lit, -window_months)).alias(
            "loans_opened_window"),
    )


def repayment_aggregates(repayments: DataFrame, loans: DataFrame, as_of: date,
                         window_months: int) -> DataFrame:
    as_of_lit = F.lit(as_of)
    due = F.col("due_amount")
    paid_by_as_of = F.col("paid_date").isNotNull() & (F.col("paid_date") <= as_of_lit)
    paid_amount = F.coalesce(F.col("paid_amount"), F.lit(0.0))
    in_window = (F.col("due_date") > F.add_months(as_of_lit, -window_months)) & (
        F.col("due_date") <= as_of_lit
    )
    on_time = paid_by_as_of & (F.col("paid_date") <= F.col("due_date")) & (
        paid_amount >= due * 0.99
    )
    late = (
        (~paid_by_as_of & (F.date_add(F.col("due_date"), 30) < as_of_lit))
        | (paid_by_as_of & (F.datediff(F.col("paid_date"), F.col("due_date")) > 30))
    )
    owners = loans.select("loan_id", "customer_id")
    return (
        repayments.filter(in_window)
        .join(owners, on="loan_id", how="inner")
        .groupBy("customer_id")
        .agg(
            F.count(F.lit(1)).alias("installments_window"),
            _ratio(F.sum(F.when(paid_by_as_of, F.least(paid_amount, due)).otherwise(0.0)),
                   F.sum(due)).alias("repayment_ratio"),
            F.avg(on_time.cast("double")).alias("on_time_rate"),
            _sum_if(late).alias("late_installments_window"),
            (F.sum(due) / window_months).alias("debt_service_monthly"),
        )
    )


def transaction_aggregates(transactions: DataFrame, as_of: date, window_months: int
                           ) -> DataFrame:
    as_of_lit = F.lit(as_of)
    start = F.add_months(as_of_lit, -window_months)
    credit = F.col("direction") == "credit"
    debit = F.col("direction") == "debit"
    category = F.col("category")
    monthly = (
        transactions.filter((F.to_date("ts") > start) & (F.to_date("ts") <= as_of_lit))
        .withColumn("month", F.trunc(F.col("ts"), "month"))
        .groupBy("customer_id", "month")
        .agg(
            _sum_if(credit & category.isin(*sorted(INCOME_CATEGORIES)), F.col("amount")).alias(
                "income"),
            _sum_if(debit & category.isin(*sorted(SPENDING_CATEGORIES)), F.col("amount")).alias(
                "spending"),
            _sum_if(debit & (category == "loan_repayment"), F.col("amount")).alias("loanpay"),
            _sum_if(debit & (category == "gambling"), F.col("amount")).alias("gambling"),
        )
    )
    # Months from the first one with activity to the as-of month: a month without a salary
    # is a zero, which is exactly what volatility should see.
    # Capped at the window: with a mid-month as-of date the window touches one more month.
    months = F.least(_months_between(F.trunc(as_of_lit, "month"), F.min("month")) + 1,
                     F.lit(window_months))
    per_customer = monthly.groupBy("customer_id").agg(
        months.cast("double").alias("n"),
        F.sum("income").alias("income_sum"),
        F.sum(F.col("income") ** 2).alias("income_sq"),
        F.sum("spending").alias("spending_sum"),
        F.sum(F.col("spending") ** 2).alias("spending_sq"),
        F.sum("loanpay").alias("loanpay_sum"),
        F.sum("gambling").alias("gambling_sum"),
    )

    def cv(total: str, squares: str) -> SparkColumn:
        mean = F.col(total) / F.col("n")
        variance = F.greatest(F.col(squares) / F.col("n") - mean * mean, F.lit(0.0))
        return _ratio(F.sqrt(variance), mean)

    income = F.col("income_sum") / F.col("n")
    spending = F.col("spending_sum") / F.col("n")
    loanpay = F.col("loanpay_sum") / F.col("n")
    return per_customer.select(
        "customer_id",
        income.alias("income_monthly"),
        cv("income_sum", "income_sq").alias("income_cv"),
        spending.alias("spending_monthly"),
        cv("spending_sum", "spending_sq").alias("spending_cv"),
        loanpay.alias("loan_payments_monthly"),
        (income - spending - loanpay).alias("surplus_monthly"),
        _ratio(spending, income).alias("spending_to_income"),
        _ratio(F.col("gambling_sum"), F.col("spending_sum")).alias("gambling_share"),
        F.col("n").alias("account_history_months"),
    )


def inquiry_aggregates(inquiries: DataFrame, as_of: date, window_months: int) -> DataFrame:
    as_of_lit = F.lit(as_of)
    return inquiries.groupBy("customer_id").agg(
        _sum_if(F.col("inquiry_date") > F.add_months(as_of_lit, -window_months)).alias(
            "inquiries_window"),
        _sum_if(F.col("inquiry_date") > F.lit(as_of - timedelta(days=90))).alias(
            "inquiries_90d"),
    )


#: Counts that are a true zero when the table is there but holds nothing for the customer.
_ZERO_WHEN_NONE = frozenset({
    "loans_total", "defaulted_accounts", "loans_opened_window", "total_balance",
    "max_days_past_due", "worst_status", "installments_window", "late_installments_window",
    "debt_service_monthly", "inquiries_window",
})


def feature_names(present: Mapping[str, frozenset[str]], with_income: bool = True
                  ) -> tuple[str, ...]:
    """The features a snapshot has, given each present table's columns, in catalog order."""
    def has(needed: str) -> bool:
        table, column = needed.split(".")
        return column in present.get(table, frozenset())

    return tuple(
        f.name for f in FEATURES
        if f.table in present and all(has(n) for n in f.needs) and (with_income or not f.income)
    )


def subject_features(
    accepted: Mapping[str, DataFrame],
    present: Mapping[str, frozenset[str]],
    as_of: date,
    window_months: int,
    with_income: bool = True,
) -> tuple[DataFrame, tuple[str, ...]]:
    """One row per accepted customer: pseudonym, exposures (bigint), features (double)."""
    as_of_lit = F.lit(as_of)
    customers = accepted["customers"].select(
        "customer_id",
        PSEUDONYM,
        F.floor(F.months_between(as_of_lit, F.col("birth_date")) / 12).alias("age_years"),
        _months_between(as_of_lit, F.col("customer_since")).alias("customer_tenure_months"),
        F.col("monthly_income").alias("declared_income_monthly"),
    )
    parts: list[DataFrame] = []
    if "loans" in accepted:
        parts.append(loan_aggregates(accepted["loans"], as_of, window_months))
        if "repayments" in accepted:
            parts.append(repayment_aggregates(accepted["repayments"], accepted["loans"], as_of,
                                              window_months))
    if "transactions" in accepted:
        parts.append(transaction_aggregates(accepted["transactions"], as_of, window_months))
    if "inquiries" in accepted:
        parts.append(inquiry_aggregates(accepted["inquiries"], as_of, window_months))
    joined = customers
    for part in parts:
        joined = joined.join(part, on="customer_id", how="left")
    names = feature_names(present, with_income)
    columns = set(joined.columns)
    exposures = [
        (F.coalesce(F.col(c), F.lit(0)) if c in columns else F.lit(0)).cast("bigint").alias(c)
        for c in EXPOSURE_COLUMNS
    ]
    features = [
        (F.coalesce(F.col(n), F.lit(0)) if n in _ZERO_WHEN_NONE else F.col(n))
        .cast("double").alias(n)
        for n in names
    ]
    return joined.select(F.col(PSEUDONYM), *exposures, *features), names
