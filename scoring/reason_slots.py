"""Adverse-reason groups: which features speak to which reason a lender can give.

Each member splits its partial logit over four groups (the contribution vector's reason slots,
``mpc.contribution.REASON_SLOT_FIELDS``) so that the requester learns, after decryption, how
much of the joint log-odds of default each group adds — never per feature, never per member.
Because a standardized feature contributes ``w · (x - mean) / scale`` and a binned one
``w · WOE(bin)`` (WOE 0 = the population's odds), a positive slot total means the group pushes
this applicant's odds of default above the average applicant's: an adverse reason.

Groups follow the usual credit-bureau reasons. Features of no group — age, sex, marital status,
income and spending levels — never become a reason: a lender must not cite them, and capacity
is judged separately (debt-to-income, the installment plan).
"""

from __future__ import annotations

import re
from enum import StrEnum


class ReasonSlot(StrEnum):
    """Values are the contribution vector's field names."""

    PAYMENT_HISTORY = "reason_payment_history"
    AMOUNTS_OWED = "reason_amounts_owed"
    CREDIT_HISTORY = "reason_credit_history"
    NEW_CREDIT = "reason_new_credit"


#: The feature pipeline's catalog (node/ingest/features.py) by group.
_CATALOG: dict[str, ReasonSlot] = {
    **dict.fromkeys((
        "max_days_past_due", "worst_status", "defaulted_accounts", "repayment_ratio",
        "on_time_rate", "late_installments_window",
    ), ReasonSlot.PAYMENT_HISTORY),
    **dict.fromkeys((
        "total_balance", "revolving_utilization", "debt_service_monthly",
        "loan_payments_monthly", "spending_to_income", "surplus_monthly",
    ), ReasonSlot.AMOUNTS_OWED),
    **dict.fromkeys((
        "loans_total", "oldest_account_months", "customer_tenure_months",
        "account_history_months",
    ), ReasonSlot.CREDIT_HISTORY),
    **dict.fromkeys((
        "loans_opened_window", "inquiries_window", "installments_window",
    ), ReasonSlot.NEW_CREDIT),
}
#: The UCI default-of-credit-card layout (training benchmarks, FATE's split): repayment status
#: and amounts paid, bill amounts and the granted limit.
_PATTERNS: tuple[tuple[re.Pattern[str], ReasonSlot], ...] = (
    (re.compile(r"(?i)^pay_(\d+|amt\d+)$"), ReasonSlot.PAYMENT_HISTORY),
    (re.compile(r"(?i)^(bill_amt\d+|limit_bal)$"), ReasonSlot.AMOUNTS_OWED),
)


def default_slot(feature: str) -> ReasonSlot | None:
    """The group a feature belongs to by its name; ``None``: it is never a reason."""
    if feature in _CATALOG:
        return _CATALOG[feature]
    for pattern, slot in _PATTERNS:
        if pattern.match(feature):
            return slot
    return None


def parse_slot(value: str, feature: str) -> ReasonSlot:
    """A model file's explicit ``reason`` for a feature (``payment_history``, …). Raises
    ValueError naming the feature for an unknown group."""
    for slot in ReasonSlot:
        if value in (slot.value, slot.name.lower()):
            return slot
    names = ", ".join(s.name.lower() for s in ReasonSlot)
    raise ValueError(f"feature {feature}: reason must be one of {names}, not {value!r}")
