"""The guest role: the lender holding the labels (repayment outcomes).

It drives the session: PSI with every host (it learns the shared subjects), the random
train/validation/test split (hosts learn positions only), WOE of its own features in the clear
and of the hosts' bins from encrypted label sums (it decrypts per-bin totals only), the training
loop (it combines encrypted partial logits into the encrypted residual, asks the arbiter for the
masked validation loss, and decides when to stop), and finally the test-set metrics from the
joint scores. It never sees a host's feature, a partial logit of a training row, a residual or
a gradient in the clear.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fedcredit.errors import InvalidRequestError, OverlapTooSmallError, TrainingDataError
from fedcredit.federation import Peer, pack, unpack
from fedcredit.training_spec import SessionSpec
from mpc.psi import (
    PsiKey,
    receiver_index,
    receiver_match,
    receiver_request,
    split_points,
)
from mpc.vector_he import (
    SHARE_ONE,
    FeatureMatrix,
    MaskSource,
    SystemMasks,
)
from mpc.vector_keys import generate_key_holder, load_scheme
from node.training.binning import BinningEngine, fit_binnings
from node.training.participant import guest_training, parse_ints
from node.training.party_data import PartyTable
from scoring.binning import Binning, WoeTable, bin_counts, woe_encode, woe_table
from scoring.logistic import Metrics, evaluate, fit_pooled

INTERCEPT = "(intercept)"


@dataclass(frozen=True)
class FeatureReport:
    party: str
    feature: str
    iv: float
    bins: int
    kept: bool


@dataclass(frozen=True)
class GuestResult:
    overlap: dict[str, int]
    rows: dict[str, int]
    split_rows: dict[str, tuple[int, ...]]  # the guest's own table rows of each split
    features: tuple[str, ...]
    binnings: tuple[Binning, ...]
    woe: tuple[WoeTable, ...]
    intercept: float
    weights: tuple[float, ...]
    feature_report: tuple[FeatureReport, ...]
    history: tuple[float, ...]
    best_epoch: int
    metrics: Metrics | None
    guest_only: Metrics | None
    test_scores: tuple[float, ...]
    test_labels: tuple[int, ...]
    seconds: float
    seconds_training: float
    bytes_sent: int
    stages: dict[str, float]


Progress = Callable[[str], None]


def _split(n: int, spec: SessionSpec) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(spec.split_seed)
    perm = rng.permutation(n)
    n_test = round(n * spec.test_fraction)
    rest = perm[n_test:]
    n_valid = round(len(rest) * spec.valid_fraction)
    return {"test": perm[:n_test], "valid": rest[:n_valid], "train": rest[n_valid:]}


def _psi(peer: Peer, spec: SessionSpec, table: PartyTable, cardinality_only: bool
         ) -> tuple[dict[str, int], dict[str, dict[int, int]]]:
    """PSI with every host: overlap counts, and per host guest row → host list position."""
    counts: dict[str, int] = {}
    maps: dict[str, dict[int, int]] = {}
    keys = {}
    requests = {}
    for host in spec.hosts:
        keys[host] = PsiKey.generate()
        requests[host] = receiver_request(keys[host], table.ids)
        peer.send(host, "psi/req", pack({"cardinality_only": cardinality_only},
                                        [b"".join(requests[host].masked)]))
    for host in spec.hosts:
        # The host's own set arrives first and is masked while the host masks our request.
        _, blobs = unpack(peer.recv(host, "psi/own"))
        theirs = receiver_index(keys[host], split_points(blobs[0]))
        _, blobs = unpack(peer.recv(host, "psi/resp"))
        double = split_points(blobs[0])
        if cardinality_only:
            counts[host] = sum(1 for d in double if d in theirs)
            continue
        found = receiver_match(requests[host], double, theirs)
        counts[host] = len(found.receiver_rows)
        maps[host] = dict(zip(found.receiver_rows, found.sender_positions, strict=True))
    return counts, maps


def _own_woe(binnings: Sequence[Binning], values: np.ndarray, labels: np.ndarray
             ) -> list[WoeTable]:
    out = []
    for j, b in enumerate(binnings):
        bad, total = bin_counts(b.assign(values[:, j]), b.n_bins, labels)
        out.append(woe_table(b.feature, bad, total))
    return out


def run_guest(peer: Peer, spec: SessionSpec, table: PartyTable, *, overlap_only: bool = False,
              masks: MaskSource | None = None, progress: Progress | None = None) -> GuestResult:
    started = time.monotonic()
    masks = masks or SystemMasks()
    stages: dict[str, float] = {}
    mark = [started]

    def stage(name: str, message: str) -> None:
        now = time.monotonic()
        stages[name] = round(now - mark[0], 3)
        mark[0] = now
        if progress is not None:
            progress(message)

    if table.labels is None:
        raise TrainingDataError("the guest's table has no label column")
    meta, blobs = unpack(peer.recv(spec.arbiter, "key"))
    scheme = load_scheme(spec.engine, blobs[0])

    # -- alignment ----------------------------------------------------------------------------
    stage("key", "aligning subjects (PSI)…")
    counts, maps = _psi(peer, spec, table, overlap_only)
    stage("psi", "binning…")
    if overlap_only:
        for host in spec.hosts:
            peer.send(host, "align", pack({"overlap_only": True}))
        peer.send(spec.arbiter, "plan", pack({"overlap_only": True}))
        return _overlap_result(counts, table, started, peer, stages)
    common = sorted(set.intersection(*(set(m) for m in maps.values())))
    if len(common) < spec.min_overlap:
        raise OverlapTooSmallError(
            f"the parties share {len(common)} subjects; at least {spec.min_overlap} are required "
            f"(per host: {', '.join(f'{h} {c}' for h, c in counts.items())})"
        )
    common_rows = np.asarray(common, dtype=np.int64)
    split = _split(len(common_rows), spec)
    rows = {k: common_rows[v] for k, v in split.items()}
    for host in spec.hosts:
        peer.send(host, "align", pack({k: [maps[host][int(r)] for r in rows[k]] for k in rows}))
    y = {k: table.labels[rows[k]] for k in rows}
    for k in ("train", "valid", "test"):
        if len(np.unique(y[k])) < 2:
            raise TrainingDataError(f"the {k} split holds one class only; more data is needed")

    # -- binning, WOE, IV ---------------------------------------------------------------------
    train_values = table.values[rows["train"]]
    binnings = fit_binnings(
        train_values, table.feature_names, max_bins=spec.binning.max_bins,
        min_bin_size=spec.binning.min_bin_size, engine=BinningEngine(spec.binning.engine),
        spark_master=spec.binning.spark_master,
    )
    tables = _own_woe(binnings, train_values, y["train"])
    label_key = generate_key_holder(spec.engine, paillier_bits=spec.paillier_bits)
    label_scheme = label_key.scheme
    encrypted_labels = label_scheme.dump(label_scheme.encrypt(y["train"].astype(float)))
    for host in spec.hosts:
        peer.send(host, "binreq", pack({}, [label_scheme.public_bytes(), encrypted_labels]))
    report: list[FeatureReport] = []
    keep_own = [t.iv >= spec.binning.min_iv for t in tables]
    report += [FeatureReport(peer.name, t.feature, t.iv, len(t.woe), k)
               for t, k in zip(tables, keep_own, strict=True)]
    for host in spec.hosts:
        meta, blobs = unpack(peer.recv(host, "binsums"))
        decrypted = label_key.decrypt_sums(label_scheme.load_sums(blobs[0]))
        if len(meta["features"]) != len(meta["totals"]) or sum(
            len(t) for t in meta["totals"]
        ) != len(decrypted):
            raise InvalidRequestError(f"{host}'s bin sums do not match its bin counts")
        shares = parse_ints(meta["shares"], len(decrypted))
        bad_all = [round((a + b) / SHARE_ONE) for a, b in zip(decrypted, shares, strict=True)]
        host_tables, pos = [], 0
        for name, totals in zip(meta["features"], meta["totals"], strict=True):
            if any(t < spec.binning.min_bin_size for t in totals if t > 0):
                raise TrainingDataError(f"{host} sent a bin below the minimum size")
            host_tables.append(woe_table(name, bad_all[pos : pos + len(totals)], totals))
            pos += len(totals)
        keep = [t.iv >= spec.binning.min_iv for t in host_tables]
        if not any(keep):
            raise TrainingDataError(f"no feature of {host} reaches IV {spec.binning.min_iv}")
        report += [FeatureReport(host, t.feature, t.iv, len(t.woe), k)
                   for t, k in zip(host_tables, keep, strict=True)]
        peer.send(host, "woe", pack({
            "woe": [list(t.woe) for t in host_tables],
            "iv": [t.iv for t in host_tables],
            "keep": keep,
        }))
    kept = [j for j, k in enumerate(keep_own) if k]

    def encode(split_name: str) -> np.ndarray:
        values = table.values[rows[split_name]]
        cols = [woe_encode(binnings[j].assign(values[:, j]), tables[j]) for j in kept]
        return np.column_stack(cols) if cols else np.zeros((len(values), 0))

    x = {k: encode(k) for k in rows}
    stage("binning", "training: epoch 0…")

    # -- training -----------------------------------------------------------------------------
    training_started = time.monotonic()
    trained = guest_training(
        peer, spec, scheme, _with_intercept(x["train"]), _with_intercept(x["valid"]),
        y["train"], y["valid"], masks, progress,
    )
    weights, history, best_epoch = trained.weights, trained.history, trained.best_epoch
    training_seconds = time.monotonic() - training_started
    stage("training", "scoring the test set…")

    # -- joint test scores (the chain of hosts ends here) and metrics --------------------------
    _, blobs = unpack(peer.recv(spec.hosts[-1], "test/acc"))
    hosts_part = label_key.decrypt_vector(label_scheme.load_vector(blobs[0]))
    scores = weights[0] + x["test"] @ np.asarray(weights[1:]) + hosts_part
    metrics = evaluate(scores, y["test"])
    guest_only = None
    if kept:
        fitted = fit_pooled(
            np.vstack([x["train"], x["valid"]]), np.concatenate([y["train"], y["valid"]]),
            spec.gd.l2,
        )
        guest_only = evaluate(fitted.logits(x["test"]), y["test"])
    for host in spec.hosts:
        peer.send(host, "done", pack({"auc": metrics.auc}))
    stage("scoring", "done")
    return GuestResult(
        overlap=counts,
        rows={k: len(v) for k, v in rows.items()},
        split_rows={k: tuple(int(r) for r in v) for k, v in rows.items()},
        features=tuple(table.feature_names[j] for j in kept),
        binnings=tuple(binnings[j] for j in kept),
        woe=tuple(tables[j] for j in kept),
        intercept=weights[0],
        weights=weights[1:],
        feature_report=tuple(report),
        history=tuple(history),
        best_epoch=best_epoch,
        metrics=metrics,
        guest_only=guest_only,
        test_scores=tuple(float(s) for s in scores),
        test_labels=tuple(int(v) for v in y["test"]),
        seconds=time.monotonic() - started,
        seconds_training=training_seconds,
        bytes_sent=peer.bytes_sent,
        stages=stages,
    )


def _with_intercept(m: np.ndarray) -> FeatureMatrix:
    return FeatureMatrix.quantize(np.hstack([np.ones((len(m), 1)), m]))


def _overlap_result(counts: dict[str, int], table: PartyTable, started: float, peer: Peer,
                    stages: dict[str, float]) -> GuestResult:
    return GuestResult(
        overlap=counts, rows={"guest": table.rows}, split_rows={}, features=(), binnings=(), woe=(),
        intercept=0.0, weights=(), feature_report=(), history=(), best_epoch=0, metrics=None,
        guest_only=None, test_scores=(), test_labels=(), seconds=time.monotonic() - started,
        seconds_training=0.0, bytes_sent=peer.bytes_sent, stages=stages,
    )
