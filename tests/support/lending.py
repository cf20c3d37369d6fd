"""Joint facts for the lending tests: an ordinary applicant, changed where a test says."""

from __future__ import annotations

from decimal import Decimal

from scoring.decision import JointFacts


def facts(**changes: object) -> JointFacts:
    base: dict[str, object] = {
        "score": 600, "outstanding_debt": Decimal("1000"), "active_loans": 1,
        "open_credit_lines": 1, "accounts_30dpd": 0, "accounts_90dpd": 0, "inquiries_90d": 0,
        "institutions_with_records": 2, "annual_income": Decimal("60000")}
    base.update(changes)
    return JointFacts(**base)  # type: ignore[arg-type]
