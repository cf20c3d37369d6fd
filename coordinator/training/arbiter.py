"""The arbiter: holds the training key, and only ever decrypts masked aggregates.

It generates the engine's key pair, sends every party its encrypted share of that party's
weights each epoch, answers the guest's masked validation-loss request, turns each party's
masked gradient sums into its own share, applies the same update as the party, and at the end
releases its share of the best weights to their owner (noise-flooded with CKKS). It never sees
an identifier, a feature, a label, a partial logit or a gradient: every value it decrypts
carries a mask it does not know. In the alliance the coordinator plays this role.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fedcredit.errors import InvalidRequestError
from fedcredit.federation import Peer, pack, unpack
from fedcredit.training_spec import SessionSpec
from mpc.vector_he import VectorKeyHolder
from mpc.vector_keys import generate_key_holder
from mpc.vertical_lr import Shares, StepRule, add_shares, gd_step
from node.training.participant import ints, parse_ints


@dataclass(frozen=True)
class ArbiterResult:
    epochs: int
    best_epoch: int
    seconds: float
    bytes_sent: int


def run_arbiter(peer: Peer, spec: SessionSpec, holder: VectorKeyHolder | None = None,
                progress: Callable[[str], None] | None = None) -> ArbiterResult:
    started = time.monotonic()
    holder = holder or generate_key_holder(spec.engine, paillier_bits=spec.paillier_bits)
    scheme = holder.scheme
    for name in (spec.guest, *spec.hosts):
        peer.send(name, "key", pack({"engine": spec.engine.value}, [scheme.public_bytes()]))
    meta, _ = unpack(peer.recv(spec.guest, "plan"))
    if meta.get("overlap_only"):
        return ArbiterResult(0, 0, time.monotonic() - started, peer.bytes_sent)
    sizes, regularized = _plan(meta, spec)
    rule = StepRule.of(spec.gd.learning_rate, spec.gd.momentum, spec.gd.l2)
    shares = {name: Shares.zeros(size) for name, size in sizes.items()}
    best = dict(shares)
    best_epoch = 0
    epoch = 0
    while True:
        for name, s in shares.items():
            peer.send(name, f"w/{epoch}", pack({}, [scheme.dump(holder.encrypt_weights(s.w))]))
        meta, blobs = unpack(peer.recv(spec.guest, f"val/{epoch}"))
        square = holder.square_sum_answer(scheme.load_square_request(blobs[0]))
        peer.send(spec.guest, f"valans/{epoch}", pack({"square": str(square)}))
        control, _ = unpack(peer.recv(spec.guest, f"ctl/{epoch}"))
        if progress is not None:
            progress(f"training: epoch {epoch + 1}")
        if control["best"]:
            best = dict(shares)
            best_epoch = epoch
        if control["stop"]:
            break
        step_rule = rule.halved(int(control["halvings"]))
        if control["back_off"]:
            shares = {n: Shares(b.w, (0,) * b.size) for n, b in best.items()}
            epoch += 1
            continue
        for name in list(shares):
            meta, blobs = unpack(peer.recv(name, f"g/{epoch}"))
            mine = holder.decrypt_sums(scheme.load_sums(blobs[0]))
            stepped = gd_step(shares[name], mine, step_rule, regularized[name])
            delta = Shares(
                tuple(parse_ints(meta["dw"], sizes[name])),
                tuple(parse_ints(meta["dv"], sizes[name])),
            )
            shares[name] = add_shares(stepped, delta)
        epoch += 1
    for name, s in best.items():
        peer.send(name, "final", pack({"w": ints(holder.release(s.w))}))
    return ArbiterResult(epoch, best_epoch, time.monotonic() - started, peer.bytes_sent)


def _plan(meta: dict[str, Any], spec: SessionSpec) -> tuple[dict[str, int], dict[str, list[bool]]]:
    """The guest's plan: a weight count and regularization flags for every feature party."""
    try:
        sizes = {str(k): int(v) for k, v in meta["sizes"].items()}
        regularized = {str(k): [bool(b) for b in v] for k, v in meta["regularized"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidRequestError("malformed training plan") from exc
    parties = {spec.guest, *spec.hosts}
    if set(sizes) != parties or set(regularized) != parties or any(
        n < 1 or len(regularized[p]) != n for p, n in sizes.items()
    ):
        raise InvalidRequestError("the training plan does not match the session's parties")
    return sizes, regularized
