"""The host role: a feature holder without labels.

It answers the guest's PSI request, learns which of its subjects are in the training, validation
and test sets (positions only — identifiers never travel), bins its own columns, sums the
guest's *encrypted* labels per bin (masked; bins below the minimum size merged first), receives
its bins' WOE, trains its slice of the model on shares, and adds its encrypted test-set partial
logits into the chain that ends at the guest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedcredit.errors import InvalidRequestError
from fedcredit.federation import Peer, pack, unpack
from fedcredit.training_spec import SessionSpec
from mpc.psi import PsiKey, sender_double, sender_set, split_points
from mpc.vector_he import FeatureMatrix, MaskSource, SystemMasks
from mpc.vector_keys import load_scheme
from node.training.binning import BinningEngine, fit_binnings
from node.training.participant import host_training, ints
from node.training.party_data import PartyTable
from scoring.binning import Binning, WoeTable, woe_encode


@dataclass(frozen=True)
class HostResult:
    features: tuple[str, ...]
    binnings: tuple[Binning, ...]
    woe: tuple[WoeTable, ...]
    weights: tuple[float, ...]
    seconds: float
    bytes_sent: int


def onehot(bins: list[np.ndarray], sizes: list[int]) -> FeatureMatrix:
    columns = []
    for b, k in zip(bins, sizes, strict=True):
        block = np.zeros((len(b), k))
        block[np.arange(len(b)), b] = 1.0
        columns.append(block)
    return FeatureMatrix.quantize(np.hstack(columns))


def alignment_positions(meta: Mapping[str, object], size: int) -> dict[str, np.ndarray]:
    """The guest's split as positions in this host's list: in range, each used once."""
    try:
        out = {k: np.asarray(meta[k], dtype=np.int64).reshape(-1)
               for k in ("train", "valid", "test")}
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequestError("malformed alignment message") from exc
    every = np.concatenate(list(out.values()))
    if every.size and (every.min() < 0 or every.max() >= size):
        raise InvalidRequestError("alignment positions out of range")
    if len(np.unique(every)) != len(every):
        raise InvalidRequestError("an alignment position is used twice")
    return out


def run_host(peer: Peer, spec: SessionSpec, table: PartyTable, masks: MaskSource | None = None
             ) -> HostResult | None:
    started = time.monotonic()
    masks = masks or SystemMasks()
    guest = spec.guest

    # -- alignment ----------------------------------------------------------------------------
    # The host's own set first: it needs nothing from the guest, so it is masked while the guest
    # masks its request, and the guest masks it while the host masks the request again.
    psi_key = PsiKey.generate()
    psi_own = sender_set(psi_key, table.ids)
    peer.send(guest, "psi/own", pack({}, [b"".join(psi_own.masked)]))
    meta, blobs = unpack(peer.recv(spec.arbiter, "key"))
    scheme = load_scheme(spec.engine, blobs[0])
    meta, blobs = unpack(peer.recv(guest, "psi/req"))
    double = sender_double(psi_key, split_points(blobs[0]),
                           cardinality_only=bool(meta.get("cardinality_only")))
    peer.send(guest, "psi/resp", pack({}, [b"".join(double)]))
    meta, _ = unpack(peer.recv(guest, "align"))
    if meta.get("overlap_only"):
        return None
    order = np.asarray(psi_own.order)
    rows = {k: order[v] for k, v in alignment_positions(meta, len(order)).items()}

    # -- binning, WOE -------------------------------------------------------------------------
    train_values = table.values[rows["train"]]
    binnings = fit_binnings(
        train_values, table.feature_names, max_bins=spec.binning.max_bins,
        min_bin_size=spec.binning.min_bin_size, engine=BinningEngine(spec.binning.engine),
        spark_master=spec.binning.spark_master,
    )
    bins = [b.assign(train_values[:, j]) for j, b in enumerate(binnings)]
    sizes = [b.n_bins for b in binnings]
    meta, blobs = unpack(peer.recv(guest, "binreq"))
    guest_scheme = load_scheme(spec.engine, blobs[0])
    labels = guest_scheme.load_vector(blobs[1])
    sums, own = guest_scheme.column_sums(onehot(bins, sizes), labels, 1, 1.0, masks)
    totals = [np.bincount(b, minlength=k).tolist() for b, k in zip(bins, sizes, strict=True)]
    peer.send(
        guest,
        "binsums",
        pack(
            {"features": list(table.feature_names), "totals": totals, "shares": ints(own)},
            [guest_scheme.dump(sums)],
        ),
    )
    meta, _ = unpack(peer.recv(guest, "woe"))
    keep = [bool(k) for k in meta["keep"]]
    tables = [
        WoeTable(table.feature_names[j], tuple(float(w) for w in meta["woe"][j]),
                 float(meta["iv"][j]), tuple(totals[j]))
        for j in range(len(binnings))
    ]
    kept = [j for j in range(len(binnings)) if keep[j]]

    def encode(split: str) -> FeatureMatrix:
        values = table.values[rows[split]]
        cols = [woe_encode(binnings[j].assign(values[:, j]), tables[j]) for j in kept]
        return FeatureMatrix.quantize(np.column_stack(cols))

    # -- training -----------------------------------------------------------------------------
    weights = host_training(peer, spec, scheme, encode("train"), encode("valid"), masks)

    # -- test-set scores: a chain of encrypted partial logits ending at the guest --------------
    x_test = encode("test").floats
    mine = guest_scheme.encrypt(x_test @ np.asarray(weights))
    hosts = list(spec.hosts)
    position = hosts.index(peer.name)
    if position > 0:
        _, blobs = unpack(peer.recv(hosts[position - 1], "test/acc"))
        mine = guest_scheme.add(guest_scheme.load_vector(blobs[0]), mine)
    target = hosts[position + 1] if position + 1 < len(hosts) else guest
    peer.send(target, "test/acc", pack({}, [guest_scheme.dump(mine)]))
    unpack(peer.recv(guest, "done"))
    return HostResult(
        features=tuple(table.feature_names[j] for j in kept),
        binnings=tuple(binnings[j] for j in kept),
        woe=tuple(tables[j] for j in kept),
        weights=weights,
        seconds=time.monotonic() - started,
        bytes_sent=peer.bytes_sent,
    )
