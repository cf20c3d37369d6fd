"""A whole training session in one process (threads): the protocol against its plaintext
replica, three parties, and every way a session can stop early."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from fedcredit.errors import (
    OverlapTooSmallError,
    TrainingAbortedError,
    TrainingDataError,
)
from fedcredit.federation import LocalTransport, Peer
from fedcredit.train_local import plan_parties
from fedcredit.training_spec import BinningSpec
from mpc.vector_he import EngineName
from node.training.guest import GuestResult
from node.training.host import HostResult
from node.training.party_data import PartyTable
from scoring.binning import woe_encode
from scoring.logistic import GdSettings, evaluate, fit_taylor_gd
from tests.support.training import make_spec, run_in_process, table, uci_frames

pytestmark = pytest.mark.integration


def _encode(tab: PartyTable, rows: np.ndarray, result: GuestResult | HostResult) -> np.ndarray:
    cols = [tab.feature_names.index(f) for f in result.features]
    return np.column_stack([
        woe_encode(b.assign(tab.values[rows, c]), t)
        for b, t, c in zip(result.binnings, result.woe, cols, strict=True)
    ])


def _replica(guest_tab: PartyTable, host_tabs: dict[str, PartyTable], guest: GuestResult,
             hosts: dict[str, HostResult], gd: GdSettings):
    """The plaintext optimizer on the same bins, WOE and split, all features pooled."""
    x, y = {}, {}
    for split, rows in guest.split_rows.items():
        ids = [guest_tab.ids[r] for r in rows]
        blocks = [_encode(guest_tab, np.asarray(rows), guest)]
        for name, tab in host_tabs.items():
            index = {i: k for k, i in enumerate(tab.ids)}
            blocks.append(_encode(tab, np.asarray([index[i] for i in ids]), hosts[name]))
        x[split] = np.hstack(blocks)
        assert guest_tab.labels is not None
        y[split] = guest_tab.labels[np.asarray(rows)]
    model, epoch = fit_taylor_gd(x["train"], y["train"], x["valid"], y["valid"], gd)
    return model, epoch, x, y


@pytest.mark.parametrize(("engine", "rows", "tolerance"), [
    (EngineName.PAILLIER, 500, 1e-6),
    (EngineName.CKKS, 1500, 2e-3),
])
def test_federated_training_reproduces_the_plaintext_optimizer(
    engine: EngineName, rows: int, tolerance: float
) -> None:
    g, h = uci_frames(rows)
    gd = GdSettings(max_epochs=4 if engine is EngineName.PAILLIER else 8)
    spec = make_spec(engine, ["host"], gd=gd, paillier_bits=2048)
    guest_tab, host_tab = table(g, "guest", "y"), table(h, "host")
    outcome = run_in_process(spec, guest_tab, {"host": host_tab})
    assert outcome.errors == {}
    guest, host = outcome.results["guest"], outcome.results["host"]
    model, epoch, x, y = _replica(guest_tab, {"host": host_tab}, guest, {"host": host}, gd)
    federated = np.array([guest.intercept, *guest.weights, *host.weights])
    plaintext = np.array([model.intercept, *model.weights])
    assert guest.best_epoch == epoch
    assert federated == pytest.approx(plaintext, abs=tolerance)
    # the test-set scores the guest decrypted are the joint model's, and it beats guest-only
    assert guest.metrics.auc == pytest.approx(evaluate(model.logits(x["test"]), y["test"]).auc,
                                              abs=1e-3)
    assert guest.guest_only is not None and guest.metrics.auc > guest.guest_only.auc
    # the arbiter ran the same number of steps and never held a result
    assert outcome.results["arbiter"].best_epoch == guest.best_epoch


def test_too_small_an_overlap_stops_every_party() -> None:
    g, h = uci_frames(400)
    h = h.assign(id=[f"other-{i}" if k >= 60 else i for k, i in enumerate(h["id"])])
    spec = make_spec(EngineName.CKKS, ["host"], min_overlap=100)
    outcome = run_in_process(spec, table(g, "guest", "y"), {"host": table(h, "host")})
    assert outcome.results == {}
    assert isinstance(outcome.errors["guest"], OverlapTooSmallError)
    assert "share 60 subjects; at least 100" in str(outcome.errors["guest"])
    for other in ("arbiter", "host"):
        assert isinstance(outcome.errors[other], TrainingAbortedError)
        assert "guest stopped the session" in str(outcome.errors[other])


def test_no_feature_left_after_iv_selection_is_a_data_error() -> None:
    g, h = uci_frames(600)
    spec = make_spec(EngineName.CKKS, ["host"],
                     binning=BinningSpec(engine="exact", min_bin_size=30, min_iv=50.0))
    outcome = run_in_process(spec, table(g, "guest", "y"), {"host": table(h, "host")})
    assert isinstance(outcome.errors["guest"], TrainingDataError)
    assert outcome.results == {}


def test_a_host_dropping_out_mid_training_stops_everyone_without_a_model() -> None:
    g, h = uci_frames(1500)
    transport = LocalTransport()

    def crash_at_epoch_two(name: str, peer: Peer) -> None:
        recv = peer.recv

        def recv_then_die(sender: str, tag: str) -> bytes:
            if tag == "w/2":
                transport.down.add(name)  # the process is gone: no abort message, no answers
                raise SystemExit
            return recv(sender, tag)

        peer.recv = recv_then_die  # type: ignore[method-assign]
        peer.abort_all = lambda error: None  # type: ignore[method-assign]

    spec = make_spec(EngineName.CKKS, ["host"], timeout_s=120.0)
    started = time.monotonic()
    outcome = run_in_process(spec, table(g, "guest", "y"), {"host": table(h, "host")},
                             transport, before_host=crash_at_epoch_two)
    assert time.monotonic() - started < 60  # liveness probes, not the 120 s timeout
    assert outcome.results == {}
    assert isinstance(outcome.errors["guest"], TrainingAbortedError)
    assert isinstance(outcome.errors["arbiter"], TrainingAbortedError)
    # whoever noticed first (a failed delivery, or failed liveness probes) names the host
    for party in ("guest", "arbiter"):
        detail = str(outcome.errors[party])
        assert "host is down" in detail or "cannot reach host" in detail, detail


def test_the_guest_is_the_one_file_with_the_label_column(tmp_path: Path) -> None:
    g, h = uci_frames(20)
    lender, bank = tmp_path / "Lender File.csv", tmp_path / "bank.csv"
    g.to_csv(lender, index=False)
    h.to_csv(bank, index=False)
    parties = plan_parties([bank, lender], "id", "y")
    assert [(p.name, p.role) for p in parties] == [("bank", "host"), ("lender-file", "guest")]
    for files in ([bank, bank], [lender, lender], [bank]):
        with pytest.raises(TrainingDataError):
            plan_parties(files, "id", "y")
    with pytest.raises(TrainingDataError, match="id column 'key' not found"):
        plan_parties([bank, lender], "key", "y")
    with pytest.raises(TrainingDataError, match="no such file"):
        plan_parties([bank, tmp_path / "missing.csv"], "id", "y")
