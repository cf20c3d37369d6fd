"""The contribution vector and its integer encoding (encoding version 1).

Every member adds one :class:`ContributionVector` to a joint evaluation. All fields are
additive, so the sum over members is meaningful: the joint model logit (minus the intercept)
and the alliance-wide exposures.

Encoding v1, one Paillier plaintext per field, in :data:`FIELDS` order:

* ``model_partial`` — fixed point, ``round(x * 10**9)`` (:data:`FIXED_POINT_SCALE`), signed;
  resolution 1e-9 per member, so a sum over m members is exact to m·5e-10.
  Negative values are encoded as ``n - |v|``; decoding maps residues above n/2 back.
* exposures — exact non-negative integers (money in minor units, i.e. cents).

A member's share is bounded when it is encoded (:data:`MAX_ABS_PARTIAL`, :data:`MAX_EXPOSURE`)
so that sums over any alliance of up to :data:`MAX_MEMBERS` stay far below n/2 for n ≥ 2048
bits; decoded totals are checked against those sums' bounds. That headroom is what lets a
later encoding pack several fields into one plaintext without changing callers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

ENCODING_VERSION = 1
FIXED_POINT_SCALE = 10**9
MAX_ABS_PARTIAL = 1e6
MAX_EXPOSURE = 2**53
MAX_MEMBERS = 2**20


@dataclass(frozen=True)
class ContributionVector:
    """One member's additive share of a joint evaluation (or the decrypted total)."""

    model_partial: float = 0.0
    outstanding_debt_cents: int = 0
    active_loans: int = 0
    open_credit_lines: int = 0
    accounts_30dpd: int = 0
    accounts_90dpd: int = 0
    inquiries_90d: int = 0
    has_record: int = 0

    def __post_init__(self) -> None:
        if not math.isfinite(self.model_partial):
            raise ValueError("model_partial must be finite")
        for name in EXPOSURE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")

    def __add__(self, other: ContributionVector) -> ContributionVector:
        return ContributionVector(
            model_partial=self.model_partial + other.model_partial,
            **{n: getattr(self, n) + getattr(other, n) for n in EXPOSURE_FIELDS},
        )

    @classmethod
    def zero(cls) -> ContributionVector:
        """What a member without a record for the subject contributes."""
        return cls()


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ContributionVector))
EXPOSURE_FIELDS: tuple[str, ...] = FIELDS[1:]


def encode(vector: ContributionVector) -> tuple[int, ...]:
    """Signed integers, one per field: the plaintexts before reduction modulo n.

    Raises ValueError for a share outside the per-member bounds.
    """
    if abs(vector.model_partial) > MAX_ABS_PARTIAL:
        raise ValueError("model_partial out of range")
    for name in EXPOSURE_FIELDS:
        if getattr(vector, name) >= MAX_EXPOSURE:
            raise ValueError(f"{name} must be below 2**53")
    partial = round(vector.model_partial * FIXED_POINT_SCALE)
    return (partial, *(getattr(vector, name) for name in EXPOSURE_FIELDS))


def decode(values: tuple[int, ...]) -> ContributionVector:
    """Inverse of :func:`encode` on (sums of) signed integers. Raises ValueError if invalid."""
    if len(values) != len(FIELDS):
        raise ValueError("wrong number of fields")
    partial, *exposures = values
    if abs(partial) > MAX_ABS_PARTIAL * FIXED_POINT_SCALE * MAX_MEMBERS:
        raise ValueError("model_partial total out of range")
    if any(not 0 <= e < MAX_EXPOSURE * MAX_MEMBERS for e in exposures):
        raise ValueError("exposure total out of range")
    return ContributionVector(
        model_partial=partial / FIXED_POINT_SCALE,
        **dict(zip(EXPOSURE_FIELDS, exposures, strict=True)),
    )


def to_signed(residue: int, n: int) -> int:
    """Map a residue modulo n to the signed integer it encodes (|v| < n/2)."""
    return residue - n if residue > n // 2 else residue
