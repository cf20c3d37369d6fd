"""The report of a local training run: the pooled reference, metrics, ROC and KS plots, JSON.

The pooled reference fits an ordinary (exact-sigmoid) logistic regression on all parties'
features joined by id, with the *same* bins, WOE, split and L2 as the federated run — possible
only here, where one machine holds every file. "Lossless" means the federated test AUC lands
within 0.005 of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.train_local import LocalTrainingOptions, SessionRun
from node.training.outputs import binning_from_entry
from node.training.party_data import read_csv
from scoring.binning import woe_encode
from scoring.logistic import Metrics, evaluate, fit_pooled

LOSSLESS_AUC_GAP = 0.005


def pooled_reference(run: SessionRun, options: LocalTrainingOptions
                     ) -> tuple[Metrics, np.ndarray]:
    guest_name = run.spec.guest
    split_ids: dict[str, list[str]] = run.results[guest_name]["split_ids"]
    blocks: dict[str, list[np.ndarray]] = {k: [] for k in split_ids}
    labels: dict[str, np.ndarray] = {}
    for party in run.parties:
        label = options.label_column if party.role == "guest" else None
        table = read_csv(party.path, options.id_column, label)
        index = {ident: i for i, ident in enumerate(table.ids)}
        column_of = {name: j for j, name in enumerate(table.feature_names)}
        entries = run.results[party.name]["slice"]["features"]
        for split, ids in split_ids.items():
            rows = np.asarray([index[i] for i in ids], dtype=np.int64)
            cols = []
            for entry in entries:
                binning, woe, _ = binning_from_entry(entry)
                values = table.values[rows, column_of[binning.feature]]
                cols.append(woe_encode(binning.assign(values), woe))
            if cols:
                blocks[split].append(np.column_stack(cols))
            if table.labels is not None:
                labels[split] = table.labels[rows]
    x = {k: np.hstack(v) for k, v in blocks.items()}
    model = fit_pooled(np.vstack([x["train"], x["valid"]]),
                       np.concatenate([labels["train"], labels["valid"]]), options.gd.l2)
    scores = model.logits(x["test"])
    return evaluate(scores, labels["test"]), scores


def summarize(run: SessionRun, pooled: Metrics | None) -> dict[str, Any]:
    guest = run.results[run.spec.guest]
    arbiter = run.results[run.spec.arbiter]
    epochs = int(arbiter["epochs"])
    summary: dict[str, Any] = {
        "engine": run.spec.engine.value,
        "parties": len(run.parties),
        "rows": guest["rows"],
        "overlap": guest["overlap"],
        "auc_federated": guest["metrics"]["auc"],
        "ks_federated": guest["metrics"]["ks"],
        "auc_guest_only": guest["guest_only"]["auc"] if guest["guest_only"] else None,
        "epochs": epochs,
        "best_epoch": guest["best_epoch"],
        "seconds": round(run.seconds, 2),
        "seconds_training": round(guest["seconds_training"], 2),
        "seconds_per_epoch": round(guest["seconds_training"] / max(1, epochs + 1), 3),
        "stages_seconds": guest.get("stages", {}),
        "bytes_sent": {n: r.get("bytes_sent", 0) for n, r in run.results.items()},
    }
    if pooled is not None:
        summary["auc_pooled"] = round(pooled.auc, 6)
        summary["ks_pooled"] = round(pooled.ks, 6)
        summary["auc_gap"] = round(abs(summary["auc_federated"] - pooled.auc), 6)
        summary["lossless"] = summary["auc_gap"] <= LOSSLESS_AUC_GAP
    return summary


def write_plots(out_dir: Path, labels: np.ndarray, curves: dict[str, np.ndarray]) -> list[Path]:
    """ROC and KS curves (PNG) for each named score vector (higher = riskier)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, scores in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, scores):.4f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (defaults caught)")
    ax.set_title("ROC on the held-out test set")
    ax.legend(loc="lower right", fontsize=8)
    roc = out_dir / "roc.png"
    fig.tight_layout()
    fig.savefig(roc, dpi=120)
    plt.close(fig)

    first = next(iter(curves))
    scores = curves[first]
    order = np.argsort(scores)
    sorted_labels = labels[order]
    bad = np.cumsum(sorted_labels) / max(1, sorted_labels.sum())
    good = np.cumsum(1 - sorted_labels) / max(1, (1 - sorted_labels).sum())
    share = np.arange(1, len(scores) + 1) / len(scores)
    k = int(np.argmax(np.abs(good - bad)))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(share, good, label="goods (cumulative)")
    ax.plot(share, bad, label="defaults (cumulative)")
    ax.vlines(share[k], bad[k], good[k], colors="red", linestyles="--",
              label=f"KS = {abs(good[k] - bad[k]):.3f}")
    ax.set_xlabel("share of applicants, lowest risk score first")
    ax.set_ylabel("cumulative share")
    ax.set_title(f"KS — {first}")
    ax.legend(loc="upper left", fontsize=8)
    ks = out_dir / "ks.png"
    fig.tight_layout()
    fig.savefig(ks, dpi=120)
    plt.close(fig)
    return [roc, ks]
