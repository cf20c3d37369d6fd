"""Vertical logistic regression on additive shares — the arithmetic every role runs.

Each party's weights (and momentum) exist only as two integer shares: one at the party, one at
the key holder (arbiter); neither share alone says anything (it is masked, 2^-mask_bits close to
uniform). A gradient arrives split the same way (the party's mask, the arbiter's masked
decryption), both sides apply the same linear update to their own shares, and the party then
re-randomizes: it keeps a fresh mask and hands the arbiter the difference, so shares stay as
small as one mask (which CKKS needs) and the arbiter's view stays masked. The protocol flow and
its security argument: docs/training.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from mpc.vector_he import SHARE_ONE, MaskSource

#: Weights are assumed below this in magnitude when masks are sized (WOE logistic weights are
#: O(1); a larger weight is still correct, only its mask is relatively smaller).
WEIGHT_BOUND = 16
#: Bound on |4·(0.5 + z/4 - y)| = |z + 2 - 4y| used to size the gradient masks.
RESIDUAL_BOUND = 64.0
#: Bound on a validation residual |z + 2 - 4y| (|z| up to 8: P(default) 0.03% or 99.97%) used
#: to size the masks of the validation loss's Σr². CKKS decodes to doubles, so a looser bound
#: costs precision; a value beyond it is hidden by a relatively smaller mask (docs/training.md).
VALIDATION_BOUND = 10.0


@dataclass(frozen=True)
class StepRule:
    """Optimizer constants as exact fractions (shares are integers; no float rounding drift)."""

    learning_rate: Fraction
    momentum: Fraction
    l2: Fraction

    @classmethod
    def of(cls, learning_rate: float, momentum: float, l2: float) -> StepRule:
        def frac(x: float) -> Fraction:
            return Fraction(x).limit_denominator(1 << 24)

        return cls(frac(learning_rate), frac(momentum), frac(l2))

    def halved(self, times: int) -> StepRule:
        return StepRule(self.learning_rate / (1 << times), self.momentum, self.l2)


def _times(value: int, factor: Fraction) -> int:
    """round(value · factor) for integers, exactly."""
    num = value * factor.numerator
    q, r = divmod(num, factor.denominator)
    return q + (1 if 2 * r >= factor.denominator else 0)


@dataclass(frozen=True)
class Shares:
    """One side's shares of a party's weights ``w`` and momentum ``v`` (share units)."""

    w: tuple[int, ...]
    v: tuple[int, ...]

    @classmethod
    def zeros(cls, size: int) -> Shares:
        return cls((0,) * size, (0,) * size)

    @property
    def size(self) -> int:
        return len(self.w)


def gd_step(
    shares: Shares, gradient: Sequence[int], rule: StepRule, regularized: Sequence[bool]
) -> Shares:
    """Heavy-ball step on one side's shares: ``v ← μv - η(g + λw)``, ``w ← w + v``.

    Linear, so the two sides' results add up to the step on the true weights (to one share
    unit of rounding per side).
    """
    if len(gradient) != shares.size or len(regularized) != shares.size:
        raise ValueError("gradient does not match the weights")
    v_new = []
    w_new = []
    for w, v, g, reg in zip(shares.w, shares.v, gradient, regularized, strict=True):
        total = g + (_times(w, rule.l2) if reg else 0)
        nv = _times(v, rule.momentum) - _times(total, rule.learning_rate)
        v_new.append(nv)
        w_new.append(w + nv)
    return Shares(tuple(w_new), tuple(v_new))


def reshare(shares: Shares, masks: MaskSource, mask_bits: int) -> tuple[Shares, Shares]:
    """The party keeps fresh masks; returns (kept, delta for the arbiter to add)."""
    bound = WEIGHT_BOUND * SHARE_ONE << mask_bits
    kept_w = tuple(masks.uniform(bound) for _ in shares.w)
    kept_v = tuple(masks.uniform(bound) for _ in shares.v)
    delta = Shares(
        tuple(a - b for a, b in zip(shares.w, kept_w, strict=True)),
        tuple(a - b for a, b in zip(shares.v, kept_v, strict=True)),
    )
    return Shares(kept_w, kept_v), delta


def add_shares(a: Shares, b: Shares) -> Shares:
    return Shares(
        tuple(x + y for x, y in zip(a.w, b.w, strict=True)),
        tuple(x + y for x, y in zip(a.v, b.v, strict=True)),
    )


def reveal(own: Sequence[int], other: Sequence[int]) -> tuple[float, ...]:
    """Weights from both shares (only at the end, at the weights' owner)."""
    return tuple((a + b) / SHARE_ONE for a, b in zip(own, other, strict=True))


def validation_loss(square_sum: float, rows: int) -> float:
    """Taylor loss from one released aggregate: with ``r = z + 2 - 4y``,
    ``ln2 - (y-½)z + z²/8 = ln2 - ½ + r²/8`` (as (y-½)² = ¼), so the mean loss is
    ``ln2 - ½ + Σr² / (8·rows)`` — a single masked sum of squares, no per-row value released.
    """
    return math.log(2.0) - 0.5 + square_sum / (8.0 * rows)
