"""The part of the training loop every feature-holding party runs (guest and hosts alike).

Per epoch: receive the arbiter's encrypted weight shares, compute the encrypted partial logits
``X·w`` of the training and validation rows (the party's own share is added inside the
ciphertext), later receive the encrypted residual and return masked gradient sums plus the
re-sharing delta to the arbiter. The party never holds its weights, gradients or residuals in
the clear; only at the end does the arbiter release its share of the best weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fedcredit.federation import Peer, pack, unpack
from mpc.vector_he import CipherVector, FeatureMatrix, MaskSource, VectorScheme
from mpc.vertical_lr import RESIDUAL_BOUND, Shares, StepRule, gd_step, reshare, reveal


def ints(values: Sequence[int]) -> list[str]:
    """Big integers travel as decimal strings in JSON headers."""
    return [str(int(v)) for v in values]


def parse_ints(values: Sequence[str], size: int | None = None) -> list[int]:
    out = [int(v) for v in values]
    if size is not None and len(out) != size:
        raise ValueError("share vector has the wrong length")
    return out


@dataclass
class Participant:
    peer: Peer
    scheme: VectorScheme
    arbiter: str
    x_train: FeatureMatrix
    x_valid: FeatureMatrix
    regularized: tuple[bool, ...]
    rule: StepRule
    masks: MaskSource
    shares: Shares = field(init=False)
    best: Shares = field(init=False)
    base_rule: StepRule = field(init=False)

    def __post_init__(self) -> None:
        self.shares = Shares.zeros(self.x_train.columns)
        self.best = self.shares
        self.base_rule = self.rule

    def forward(self, epoch: int) -> tuple[CipherVector, CipherVector]:
        meta, blobs = unpack(self.peer.recv(self.arbiter, f"w/{epoch}"))
        weights = self.scheme.load_weights(blobs[0])
        if weights.count != self.x_train.columns:
            raise ValueError("arbiter sent weights of the wrong size")
        return (
            self.scheme.linear(self.x_train, weights, self.shares.w),
            self.scheme.linear(self.x_valid, weights, self.shares.w),
        )

    def control(self, is_best: bool, back_off: bool, halvings: int) -> None:
        """Apply the guest's verdict: remember the best shares; on a back-off restart from
        them (momentum zeroed) with the learning rate halved ``halvings`` times."""
        if is_best:
            self.best = self.shares
        if back_off:
            self.shares = Shares(self.best.w, (0,) * self.best.size)
        self.rule = self.base_rule.halved(halvings)

    def backward(self, epoch: int, residual: CipherVector) -> None:
        """Masked gradient sums to the arbiter; step and re-share this party's shares."""
        sums, own = self.scheme.column_sums(
            self.x_train, residual, 4 * self.x_train.rows, RESIDUAL_BOUND, self.masks
        )
        stepped = gd_step(self.shares, own, self.rule, self.regularized)
        kept, delta = reshare(stepped, self.masks, self.scheme.mask_bits)
        self.shares = kept
        self.peer.send(
            self.arbiter,
            f"g/{epoch}",
            pack({"dw": ints(delta.w), "dv": ints(delta.v)}, [self.scheme.dump(sums)]),
        )

    def final_weights(self) -> tuple[float, ...]:
        meta, _ = unpack(self.peer.recv(self.arbiter, "final"))
        other = parse_ints(meta["w"], self.best.size)
        return reveal(self.best.w, other)
