"""The part of the training loop every feature-holding party runs (guest and hosts alike).

Per epoch: receive the arbiter's encrypted weight shares, compute the encrypted partial logits
``X·w`` of the training and validation rows (the party's own share is added inside the
ciphertext), later receive the encrypted residual and return masked gradient sums plus the
re-sharing delta to the arbiter. The party never holds its weights, gradients or residuals in
the clear; only at the end does the arbiter release its share of the best weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fedcredit.errors import InvalidRequestError
from fedcredit.federation import Peer, pack, unpack
from fedcredit.training_spec import SessionSpec
from mpc.vector_he import CipherVector, FeatureMatrix, MaskSource, VectorScheme
from mpc.vertical_lr import (
    RESIDUAL_BOUND,
    VALIDATION_BOUND,
    Shares,
    StepRule,
    gd_step,
    reshare,
    reveal,
    validation_loss,
)
from scoring.logistic import early_stopping


def ints(values: Sequence[int]) -> list[str]:
    """Big integers travel as decimal strings in JSON headers."""
    return [str(int(v)) for v in values]


def parse_ints(values: Sequence[str], size: int | None = None) -> list[int]:
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError("malformed integers in a training message") from exc
    if size is not None and len(out) != size:
        raise InvalidRequestError("a share vector has the wrong length")
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
        _, blobs = unpack(self.peer.recv(self.arbiter, f"w/{epoch}"))
        weights = self.scheme.load_weights(blobs[0])
        if weights.count != self.x_train.columns:
            raise InvalidRequestError("the arbiter sent weights of the wrong size")
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


def _rule(spec: SessionSpec) -> StepRule:
    return StepRule.of(spec.gd.learning_rate, spec.gd.momentum, spec.gd.l2)


def host_training(peer: Peer, spec: SessionSpec, scheme: VectorScheme, x_train: FeatureMatrix,
                  x_valid: FeatureMatrix, masks: MaskSource) -> tuple[float, ...]:
    """A host's training loop: partial logits out, the guest's verdicts and residuals in."""
    peer.send(spec.guest, "size", pack({"features": x_train.columns}))
    participant = Participant(
        peer=peer, scheme=scheme, arbiter=spec.arbiter, x_train=x_train, x_valid=x_valid,
        regularized=(True,) * x_train.columns, rule=_rule(spec), masks=masks,
    )
    epoch = 0
    while True:
        u_train, u_valid = participant.forward(epoch)
        peer.send(spec.guest, f"u/{epoch}",
                  pack({}, [scheme.dump(u_train), scheme.dump(u_valid)]))
        control, _ = unpack(peer.recv(spec.guest, f"ctl/{epoch}"))
        participant.control(bool(control["best"]), bool(control["back_off"]),
                            int(control["halvings"]))
        if control["stop"]:
            break
        if not control["back_off"]:
            _, blobs = unpack(peer.recv(spec.guest, f"d/{epoch}"))
            participant.backward(epoch, scheme.load_vector(blobs[0]))
        epoch += 1
    return participant.final_weights()


@dataclass(frozen=True)
class GuestTraining:
    weights: tuple[float, ...]  # intercept first
    history: tuple[float, ...]
    best_epoch: int


def guest_training(
    peer: Peer, spec: SessionSpec, scheme: VectorScheme, x_train: FeatureMatrix,
    x_valid: FeatureMatrix, y_train: npt.NDArray[np.int64], y_valid: npt.NDArray[np.int64],
    masks: MaskSource, progress: Callable[[str], None] | None = None,
) -> GuestTraining:
    """The guest's loop (its matrices carry the intercept column first): combine the encrypted
    partial logits, get the masked validation loss, decide, broadcast, send the residual."""
    sizes = {peer.name: x_train.columns}
    regularized = {peer.name: [False] + [True] * (x_train.columns - 1)}
    meta_sizes = _host_sizes(peer, spec)
    peer.send(spec.arbiter, "plan", pack({
        "sizes": {**sizes, **meta_sizes},
        "regularized": {**regularized, **{h: [True] * n for h, n in meta_sizes.items()}},
    }))
    participant = Participant(
        peer=peer, scheme=scheme, arbiter=spec.arbiter, x_train=x_train, x_valid=x_valid,
        regularized=tuple(regularized[peer.name]), rule=_rule(spec), masks=masks,
    )
    residual_plain = 2.0 - 4.0 * y_train.astype(float)
    valid_plain = 2.0 - 4.0 * y_valid.astype(float)
    history: list[float] = []
    best_loss, best_epoch, stale, epoch, halvings = math.inf, 0, 0, 0, 0
    while True:
        z_train, z_valid = participant.forward(epoch)
        for host in spec.hosts:
            _, blobs = unpack(peer.recv(host, f"u/{epoch}"))
            z_train = scheme.add(z_train, scheme.load_vector(blobs[0]))
            z_valid = scheme.add(z_valid, scheme.load_vector(blobs[1]))
        loss = _validation_loss(peer, spec, scheme, z_valid, valid_plain, masks, epoch)
        history.append(loss)
        if progress is not None:
            progress(f"training: epoch {epoch}, validation loss {loss:.5f}")
        decision = early_stopping(loss, best_loss, stale, spec.gd)
        stale = decision.stale
        if decision.best:
            best_loss, best_epoch = loss, epoch
        stop = decision.stop or epoch >= spec.gd.max_epochs
        back_off = decision.back_off and not stop
        halvings += int(back_off)
        participant.control(decision.best, back_off, halvings)
        control = pack({"best": decision.best, "stop": stop, "back_off": back_off,
                        "halvings": halvings})
        for other in (spec.arbiter, *spec.hosts):
            peer.send(other, f"ctl/{epoch}", control)
        if stop:
            break
        if not back_off:  # after a back-off the next epoch restarts from the best weights
            residual = scheme.dump(scheme.add_plain(z_train, residual_plain))
            for host in spec.hosts:
                peer.send(host, f"d/{epoch}", pack({}, [residual]))
            participant.backward(epoch, scheme.load_vector(residual))
        epoch += 1
    return GuestTraining(participant.final_weights(), tuple(history), best_epoch)


def _host_sizes(peer: Peer, spec: SessionSpec) -> dict[str, int]:
    """How many features each host trains with (each host announced it to the guest)."""
    out = {}
    for host in spec.hosts:
        meta, _ = unpack(peer.recv(host, "size"))
        out[host] = int(meta["features"])
    return out


def _validation_loss(
    peer: Peer, spec: SessionSpec, s: VectorScheme, z_valid: CipherVector,
    residual_plain: npt.NDArray[np.float64], masks: MaskSource, epoch: int,
) -> float:
    """Taylor loss of the current weights on the validation rows; the arbiter sees masks only."""
    residual = s.add_plain(z_valid, residual_plain)
    request, state = s.square_sum_request(residual, VALIDATION_BOUND, masks)
    peer.send(spec.arbiter, f"val/{epoch}", pack({}, [s.dump(request)]))
    meta, _ = unpack(peer.recv(spec.arbiter, f"valans/{epoch}"))
    return validation_loss(s.square_sum_finish(state, int(meta["square"])), len(residual_plain))
