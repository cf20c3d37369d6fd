"""Several signed integers in one Paillier plaintext: fixed-width slots, balanced digits.

A :class:`SlotLayout` of widths ``w_0, w_1, …`` packs values ``v_i`` as the integer
``P = Σ v_i · 2^(o_i)`` with ``o_i = w_0 + … + w_(i-1)``. Packing is linear, so the sum of
packed vectors is the packing of the summed vectors — what a homomorphic sum needs — and a
negative value simply borrows from the slot above. Unpacking reads the slots from the bottom as
*balanced* digits (each in ``[-2^(w-1), 2^(w-1))``), which recovers every ``v_i`` exactly as long
as each one stays in that range. That is the whole overflow argument: callers bound each
member's value and the number of members so that every slot's *total* stays inside its digit
range (:meth:`SlotLayout.check_capacity`), and the packed total stays below ``n/2`` in absolute
value so that the signed residue modulo the Paillier ``n`` is the integer itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SlotLayout:
    widths: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.widths or any(w < 2 for w in self.widths):
            raise ValueError("every slot needs at least 2 bits")

    @property
    def bits(self) -> int:
        return sum(self.widths)

    def bound(self, slot: int) -> int:
        """Values of this slot (after any sum) must have an absolute value below this."""
        return 1 << (self.widths[slot] - 1)

    def pack(self, values: Sequence[int]) -> int:
        """``Σ v_i · 2^(o_i)``; ValueError if a value does not fit its slot."""
        if len(values) != len(self.widths):
            raise ValueError(f"expected {len(self.widths)} values, got {len(values)}")
        packed, offset = 0, 0
        for slot, (value, width) in enumerate(zip(values, self.widths, strict=True)):
            if not -self.bound(slot) <= value < self.bound(slot):
                raise ValueError(f"slot {slot} holds values in [-2^{width - 1}, 2^{width - 1})")
            packed += value << offset
            offset += width
        return packed

    def unpack(self, packed: int) -> tuple[int, ...]:
        """The balanced digits of ``packed``; ValueError if the top slot overflowed (then no
        layout of these widths could have produced it)."""
        values = []
        rest = packed
        for width in self.widths:
            half = 1 << (width - 1)
            digit = ((rest + half) & ((1 << width) - 1)) - half
            values.append(digit)
            rest = (rest - digit) >> width
        if rest != 0:
            raise ValueError("the packed value overflows its top slot")
        return tuple(values)

    def check_capacity(self, per_member: Sequence[int], members: int, modulus_bits: int
                       ) -> None:
        """Raise ValueError unless ``members`` values of at most ``per_member[i]`` in absolute
        value always sum inside slot i, and the whole packing stays below ``n/2``."""
        if len(per_member) != len(self.widths):
            raise ValueError("one bound per slot")
        for slot, limit in enumerate(per_member):
            if limit * members >= self.bound(slot):
                raise ValueError(f"slot {slot}: {members} members of up to {limit} overflow it")
        if self.bits >= modulus_bits - 1:
            raise ValueError(f"{self.bits} bits of slots do not fit below n/2 of a "
                             f"{modulus_bits}-bit modulus")
