"""The contribution vector and its integer encoding (encoding version 4).

Every member adds one :class:`ContributionVector` to a joint evaluation. All fields are
additive, so the sum over members is meaningful: the joint model logit (minus the intercept),
its split over the adverse-reason slots, and the alliance-wide exposures and counts.

Each field becomes a signed integer (:func:`encode`):

* fixed-point fields (:data:`FIXED_FIELDS`: ``model_partial`` and the reason slots) —
  ``round(x * 10**9)`` (:data:`FIXED_POINT_SCALE`), signed; resolution 1e-9 per member, so a
  sum over m members is exact to m·5e-10.
* integer fields (:data:`EXPOSURE_FIELDS`) — exact non-negative integers (money in minor
  units, i.e. cents; counts; 0/1 flags whose sum counts members).

Encoding v4 packs all of them into **one** Paillier plaintext (:data:`PACKING`, see
:mod:`mpc.packing`): 68-bit slots for the fixed-point fields, 71-bit slots for the integers,
979 bits in all. That is below half of the larger prime of any modulus of 2048 bits or more,
so the requester decrypts with one CRT half (:data:`mpc.paillier.SMALL_PLAINTEXT_BITS`): half
the work of a full decryption. A member's share is bounded when
it is encoded (:data:`MAX_ABS_PARTIAL`, :data:`MAX_EXPOSURE`), so the total of up to
:data:`MAX_MEMBERS` members stays inside every slot: an overflow is impossible by construction
(checked when this module loads, and property-tested at the bounds). Decoded totals are checked
against those bounds again.

A reason slot holds the part of the member's partial logit that comes from the features of
one adverse-reason group (payment history, amounts owed, credit history, new credit); the
features of no group (age, income, …) count in ``model_partial`` only. ``flagged`` is 1 when the
member holds an unexpired blacklist flag on the subject, ``with_active_loans`` 1 when the
subject has an active loan there: their totals count members, never name them.
Versions 1 and 2 (one ciphertext per field) and 3 (the same packing for up to 2^20 members,
1,035 bits, which needed a full decryption) are refused: every member of an alliance runs one
encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from mpc.packing import SlotLayout
from mpc.paillier import SMALL_PLAINTEXT_BITS

ENCODING_VERSION = 4
FIXED_POINT_SCALE = 10**9
MAX_ABS_PARTIAL = 1e6
MAX_EXPOSURE = 2**53
#: Members one evaluation's sum may have, requester included (an alliance of more members
#: would need wider slots: a new encoding version).
MAX_MEMBERS = 2**16
#: The adverse-reason slots, in encoding order (scoring.reason_slots names their groups).
REASON_SLOT_FIELDS: tuple[str, ...] = (
    "reason_payment_history",
    "reason_amounts_owed",
    "reason_credit_history",
    "reason_new_credit",
)


@dataclass(frozen=True)
class ContributionVector:
    """One member's additive share of a joint evaluation (or the decrypted total)."""

    model_partial: float = 0.0
    reason_payment_history: float = 0.0
    reason_amounts_owed: float = 0.0
    reason_credit_history: float = 0.0
    reason_new_credit: float = 0.0
    outstanding_debt_cents: int = 0
    active_loans: int = 0
    open_credit_lines: int = 0
    accounts_30dpd: int = 0
    accounts_90dpd: int = 0
    inquiries_90d: int = 0
    has_record: int = 0
    flagged: int = 0
    with_active_loans: int = 0

    def __post_init__(self) -> None:
        for name in FIXED_FIELDS:
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        for name in EXPOSURE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")

    def __add__(self, other: ContributionVector) -> ContributionVector:
        return ContributionVector(**{n: getattr(self, n) + getattr(other, n) for n in FIELDS})

    @classmethod
    def zero(cls) -> ContributionVector:
        """What a member without a record for the subject contributes."""
        return cls()


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ContributionVector))
FIXED_FIELDS: tuple[str, ...] = ("model_partial", *REASON_SLOT_FIELDS)
EXPOSURE_FIELDS: tuple[str, ...] = FIELDS[len(FIXED_FIELDS):]
assert FIELDS[: len(FIXED_FIELDS)] == FIXED_FIELDS
#: Slot widths in FIELDS order: a fixed-point total is below 10^15 · 2^16 < 2^66, an integer
#: total below 2^53 · 2^16 = 2^69; one bit more for the sign, one more of margin.
FIXED_SLOT_BITS = 68
EXPOSURE_SLOT_BITS = 71
PACKING = SlotLayout((FIXED_SLOT_BITS,) * len(FIXED_FIELDS)
                     + (EXPOSURE_SLOT_BITS,) * len(EXPOSURE_FIELDS))
#: The smallest Paillier modulus the packing fits (keys are never shorter: see paillier.py).
MIN_MODULUS_BITS = 2048
#: The largest encoded fixed-point share of one member.
MAX_FIXED_SHARE = int(MAX_ABS_PARTIAL) * FIXED_POINT_SCALE
PACKING.check_capacity([MAX_FIXED_SHARE] * len(FIXED_FIELDS)
                       + [MAX_EXPOSURE - 1] * len(EXPOSURE_FIELDS), MAX_MEMBERS, MIN_MODULUS_BITS)
# The packed total is below 2^(bits - 1) in absolute value: half a decryption recovers it.
assert PACKING.bits - 1 <= SMALL_PLAINTEXT_BITS, "the packing outgrew half a decryption"


def encode(vector: ContributionVector) -> tuple[int, ...]:
    """Signed integers, one per field: the plaintexts before reduction modulo n.

    Raises ValueError for a share outside the per-member bounds.
    """
    for name in FIXED_FIELDS:
        if abs(getattr(vector, name)) > MAX_ABS_PARTIAL:
            raise ValueError(f"{name} out of range")
    for name in EXPOSURE_FIELDS:
        if getattr(vector, name) >= MAX_EXPOSURE:
            raise ValueError(f"{name} must be below 2**53")
    return (*(round(getattr(vector, name) * FIXED_POINT_SCALE) for name in FIXED_FIELDS),
            *(getattr(vector, name) for name in EXPOSURE_FIELDS))


def decode(values: tuple[int, ...]) -> ContributionVector:
    """Inverse of :func:`encode` on (sums of) signed integers. Raises ValueError if invalid."""
    if len(values) != len(FIELDS):
        raise ValueError("wrong number of fields")
    fixed, exposures = values[: len(FIXED_FIELDS)], values[len(FIXED_FIELDS):]
    if any(abs(v) > MAX_FIXED_SHARE * MAX_MEMBERS for v in fixed):
        raise ValueError("fixed-point total out of range")
    if any(not 0 <= e < MAX_EXPOSURE * MAX_MEMBERS for e in exposures):
        raise ValueError("exposure total out of range")
    parts: dict[str, Any] = {
        name: v / FIXED_POINT_SCALE for name, v in zip(FIXED_FIELDS, fixed, strict=True)}
    parts.update(zip(EXPOSURE_FIELDS, exposures, strict=True))
    return ContributionVector(**parts)


def clamp_share(x: float) -> float:
    """A fixed-point share brought within ±MAX_ABS_PARTIAL (what a member encodes)."""
    return max(-MAX_ABS_PARTIAL, min(MAX_ABS_PARTIAL, x))


def pack(vector: ContributionVector) -> int:
    """The one plaintext (before reduction modulo n) that carries every field."""
    return PACKING.pack(encode(vector))


def unpack(total: int) -> ContributionVector:
    """Inverse of :func:`pack` on (sums of) packed vectors. Raises ValueError if invalid."""
    return decode(PACKING.unpack(total))
