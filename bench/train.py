"""Federated training speed and losslessness, against the pooled model, in one run.

    python bench/train.py --json train.json                 # everything (~20 min)
    python bench/train.py --skip-paillier --skip-fate       # the fast engine only (~1 min)

1. **default_credit** (UCI Taiwan, FATE's vertical split: guest 13 features + label, host 10),
   with ``fedcredit train local`` machinery — every party a separate process over mutual TLS:
   the fast engine (CKKS) end to end, with exact and with Spark quantile binning; the reference
   engine (Paillier, 2048-bit) end to end. For each: federated AUC on the held-out 30 %, the
   pooled plaintext model on the same bins/split/L2 (the baseline, same run), guest-only AUC,
   seconds end to end and per epoch.
2. **FATE's published shape** (guest 100k x 30 with label, host 100k x 300; FATE reports
   2 min 16 s per epoch on 16 cores): synthetic WOE-like features, CKKS, the training loop only
   (alignment and binning excluded and said so), arbiter + guest + host as threads in one
   process on this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import load_average, machine_info

from coordinator.training.arbiter import run_arbiter
from fedcredit.federation import LocalTransport, Mailbox, Peer, unpack
from fedcredit.train_local import LocalTrainingOptions, run_session
from fedcredit.train_report import pooled_reference, summarize
from fedcredit.training_spec import BinningSpec, PartySpec, SessionSpec
from mpc.vector_he import EngineName, FeatureMatrix, SystemMasks
from mpc.vector_keys import load_scheme
from node.training.participant import guest_training, host_training
from scoring.logistic import GdSettings

UCI = Path(__file__).resolve().parents[1] / "data" / "uci"
KEYS = ("auc_federated", "auc_pooled", "auc_guest_only", "seconds", "seconds_per_epoch")


def default_credit(engine: EngineName, binning: str, work: Path) -> dict[str, Any]:
    options = LocalTrainingOptions(
        parties=(UCI / "default_credit_hetero_guest.csv", UCI / "default_credit_hetero_host.csv"),
        id_column="id", label_column="y", out_dir=work / f"{engine.value}-{binning}",
        engine=engine, binning=BinningSpec(engine=binning), split_seed=1, timeout_s=1800.0,
    )
    run = run_session(options)
    reference, _ = pooled_reference(run, options)
    summary = summarize(run, reference)
    summary["binning"] = binning
    return summary


def fate_shape(rows: int, guest_features: int, host_features: int, epochs: int
               ) -> dict[str, Any]:
    """The training loop alone on FATE's benchmark shape (synthetic WOE-like columns)."""
    rng = np.random.default_rng(7)
    n_valid = rows // 5

    def woe_like(cols: int) -> np.ndarray:
        levels = rng.normal(scale=0.4, size=(cols, 10))
        picks = rng.integers(0, 10, size=(rows, cols))
        return levels[np.arange(cols), picks]

    xg, xh = woe_like(guest_features), woe_like(host_features)
    logit = -1.3 + xg.sum(1) * 0.3 + xh[:, :30].sum(1) * 0.3
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    ones = np.ones((rows, 1))
    guest_x = FeatureMatrix.quantize(np.hstack([ones, xg]))
    spec = SessionSpec(
        session_id="fate-shape", engine=EngineName.CKKS,
        parties=(PartySpec("guest", "guest", ""), PartySpec("host", "host", ""),
                 PartySpec("arbiter", "arbiter", "")),
        gd=GdSettings(max_epochs=epochs, patience=epochs + 1), timeout_s=3600.0,
    )
    transport = LocalTransport()
    peers = {}
    for name in spec.names:
        transport.mailboxes[name] = Mailbox(name)
        peers[name] = Peer(name, spec.names, transport.mailboxes[name], transport, 3600.0)
    split = rows - n_valid
    results: dict[str, Any] = {}

    def guest() -> None:
        _, blobs = unpack(peers["guest"].recv("arbiter", "key"))
        scheme = load_scheme(EngineName.CKKS, blobs[0])
        started = time.monotonic()
        results["guest"] = guest_training(
            peers["guest"], spec, scheme, guest_x.rows_subset(np.arange(split)),
            guest_x.rows_subset(np.arange(split, rows)), y[:split], y[split:], SystemMasks())
        results["seconds"] = time.monotonic() - started

    def host() -> None:
        _, blobs = unpack(peers["host"].recv("arbiter", "key"))
        scheme = load_scheme(EngineName.CKKS, blobs[0])
        hx = FeatureMatrix.quantize(xh)
        results["host"] = host_training(peers["host"], spec, scheme,
                                        hx.rows_subset(np.arange(split)),
                                        hx.rows_subset(np.arange(split, rows)), SystemMasks())

    def arbiter() -> None:
        results["arbiter"] = run_arbiter(peers["arbiter"], spec)

    threads = [threading.Thread(target=f) for f in (arbiter, guest, host)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    steps = results["arbiter"].epochs
    return {
        "rows": rows, "guest_features": guest_features, "host_features": host_features,
        "epochs": steps, "seconds_training": round(results["seconds"], 2),
        "seconds_per_epoch": round(results["seconds"] / (steps + 1), 2),
        "fate_seconds_per_epoch_16_cores": 136.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-paillier", action="store_true")
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--skip-fate", action="store_true")
    parser.add_argument("--fate-rows", type=int, default=100_000)
    parser.add_argument("--fate-epochs", type=int, default=2)
    args = parser.parse_args()
    console = Console(width=130)
    report: dict[str, Any] = {"machine": machine_info(), "load_before": load_average(),
                              "date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "command": " ".join(["python", *sys.argv])}
    table = Table(title="Federated training on default_credit (30,000 clients, 70/30 split)")
    for col in ("engine", "binning", "AUC fed.", "AUC pooled", "|gap|", "AUC guest-only",
                "epochs", "s/epoch", "s end to end"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs = [(EngineName.CKKS, "exact")]
        if not args.skip_spark:
            runs.append((EngineName.CKKS, "spark"))
        if not args.skip_paillier:
            runs.append((EngineName.PAILLIER, "exact"))
        for engine, binning in runs:
            with console.status(f"training with {engine.value}, {binning} binning…"):
                summary = default_credit(engine, binning, work)
            key = engine.value if binning == "exact" else f"{engine.value}_spark_binning"
            report[key] = summary
            table.add_row(engine.value, binning, f"{summary['auc_federated']:.4f}",
                          f"{summary['auc_pooled']:.4f}", f"{summary['auc_gap']:.4f}",
                          f"{summary['auc_guest_only']:.4f}", str(summary["epochs"]),
                          f"{summary['seconds_per_epoch']:.2f}", f"{summary['seconds']:.1f}")
    console.print(table)
    for key in KEYS:  # the fast engine's figures at the top level, the reference under "paillier"
        report[key] = report["ckks"][key]
    if not args.skip_fate:
        with console.status(f"FATE shape: {args.fate_rows:,} rows x (30 + 300) features…"):
            report["fate_shape"] = fate_shape(args.fate_rows, 30, 300, args.fate_epochs)
        fate = report["fate_shape"]
        console.print(
            f"FATE's shape ({fate['rows']:,} x 30 + {fate['rows']:,} x 300, CKKS, loop only): "
            f"{fate['seconds_per_epoch']:.1f} s/epoch here vs FATE's 136 s on 16 cores "
            f"(x{136.0 / fate['seconds_per_epoch']:.1f})")
    report["load_after"] = load_average()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
