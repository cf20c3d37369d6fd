"""What to generate: the alliance specification, validated when it is made."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

DEFAULT_AS_OF = date(2026, 10, 31)
MAX_INSTITUTIONS = 8
#: Bounded by the synthetic identifier space (see :mod:`fedcredit.synth.identifiers`).
MAX_SUBJECTS = 5_000_000
MAX_MONTHS = 60
MAX_DIRTY_RATE = 0.2
#: Income arrives monthly (about 11 credits per subject a year); with one spending debit per
#: subject-month and the odd transfer that makes about 25 transactions per subject at M=1.
DEFAULT_SPENDING_PER_MONTH = 1.0


class InvalidSpecError(ValueError):
    """A specification field is out of range; ``field`` names it (the CLI names the option)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class AllianceSpec:
    subjects: int
    institutions: int = 3
    seed: int = 7
    as_of: date = DEFAULT_AS_OF
    #: Months of history before ``as_of`` (transactions, repayments, inquiries).
    months: int = 12
    #: Mean spending debits per subject-month at the bank holding the current account.
    spending_per_month: float = DEFAULT_SPENDING_PER_MONTH
    #: Share of deliberately bad rows added to every table (0: exactly clean data).
    dirty_rate: float = 0.002

    def __post_init__(self) -> None:
        if not 1 <= self.subjects <= MAX_SUBJECTS:
            raise InvalidSpecError("subjects", f"must be between 1 and {MAX_SUBJECTS:,}")
        if not 1 <= self.institutions <= MAX_INSTITUTIONS:
            raise InvalidSpecError("institutions", f"must be between 1 and {MAX_INSTITUTIONS}")
        if self.seed < 0:
            raise InvalidSpecError("seed", "must be a non-negative integer")
        if not 1 <= self.months <= MAX_MONTHS:
            raise InvalidSpecError("months", f"must be between 1 and {MAX_MONTHS}")
        if not date(2000, 1, 1) <= self.as_of <= date(2100, 12, 31):
            raise InvalidSpecError("as_of", "must be a date between 2000-01-01 and 2100-12-31")
        if not 0.0 <= self.spending_per_month <= 100.0:
            raise InvalidSpecError("spending_per_month", "must be between 0 and 100")
        if not 0.0 <= self.dirty_rate <= MAX_DIRTY_RATE:
            raise InvalidSpecError("dirty_rate", f"must be between 0 and {MAX_DIRTY_RATE}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "subjects": self.subjects,
            "institutions": self.institutions,
            "seed": self.seed,
            "as_of": self.as_of.isoformat(),
            "months": self.months,
            "spending_per_month": self.spending_per_month,
            "dirty_rate": self.dirty_rate,
        }
