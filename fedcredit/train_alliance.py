"""``fedcredit train --config FILE``: a training run over the alliance, from a terminal.

The file (YAML) holds the run: ``guest``, ``hosts``, ``engine``, ``binning``, ``l2``,
``max_epochs``, ``test_fraction``, ``min_overlap``, ``promote``… (the admin API's
``TrainingRunIn``). It is checked here first, so a typo fails before anything starts; then the
coordinator runs it (``POST /v1/training-runs``) over the members' own feature stores and this
command follows it until it ends, then prints the summary. The connection is the admin CLI's
(``FEDCREDIT_ADMIN_URL``, ``FEDCREDIT_ADMIN_CA_CERT``, ``FEDCREDIT_ADMIN_TOKEN``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from rich.table import Table

from fedcredit.admin_client import AdminClient
from fedcredit.cli_output import console
from fedcredit.error_catalog import code_from_name
from fedcredit.errors import ConfigurationError, ErrorCode, FedCreditError

POLL_S = 1.0


def read_config(path: Path) -> dict[str, Any]:
    """The run file, validated against the API's request model (all errors at once)."""
    from coordinator.api.training_runs import TrainingRunIn

    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(f"{path}: not valid YAML{where}") from None
    if not isinstance(doc, dict):
        raise ConfigurationError(f"{path}: expected a mapping (guest, hosts, …)")
    try:
        body: dict[str, Any] = TrainingRunIn.model_validate(doc).model_dump(mode="json")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}"
                             for e in exc.errors()[:10])
        raise ConfigurationError(f"{path}: {problems}") from None
    return body


def run_training(client: AdminClient, body: dict[str, Any], wait: bool = True
                 ) -> dict[str, Any]:
    """Start the run; with ``wait``, follow it to the end (a failed run raises)."""
    run: dict[str, Any] = client.call("POST", "/v1/training-runs", body=body)
    console.print(f"training run [bold]{run['run_id']}[/]: {body['guest']} (labels) with "
                  f"{', '.join(body['hosts'])}, {body['engine']}")
    if not wait:
        return run
    with console.status(run["stage"]) as status:
        while run["state"] == "running":
            time.sleep(POLL_S)
            run = client.call("GET", f"/v1/training-runs/{run['run_id']}")
            status.update(f"{run['stage']}")
    if run["state"] == "failed":
        error = run["error"] or {}
        raise FedCreditError(f"run {run['run_id']} stopped at '{run['stage']}': "
                             f"{error.get('detail', '')}",
                             code=code_from_name(str(error.get("code")))
                             or ErrorCode.TRAINING_ABORTED)
    return run


def print_summary(run: dict[str, Any]) -> None:
    summary = run["summary"]
    metrics = summary.get("metrics", {})
    table = Table(title=f"Model {run['model_version']} ({summary.get('model_status')})")
    table.add_column("")
    table.add_column("value", justify="right")
    for key, label in (("test_auc", "AUC, held-out (guest's test split)"),
                       ("test_ks", "KS, held-out"),
                       ("guest_only_auc", "AUC, guest features only"),
                       ("test_n", "held-out subjects"),
                       *((k, f"shared with {k.removeprefix('overlap_')}")
                         for k in sorted(metrics) if k.startswith("overlap_"))):
        if key in metrics:
            value = metrics[key]
            table.add_row(label, f"{value:.4f}" if key.endswith(("auc", "ks")) else
                          f"{int(value):,}")
    table.add_row("epochs (best)", f"{summary.get('epochs')} ({summary.get('best_epoch')})")
    table.add_row("seconds", f"{summary.get('seconds', 0):.1f}")
    console.print(table)
    rows = summary.get("rows", {})
    console.print("rows per party: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
    if summary.get("model_status") != "active":
        console.print(f"promote it with `fedcredit admin models promote {run['model_version']}`")
