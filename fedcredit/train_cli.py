"""``fedcredit train …``: federated training from the command line."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from fedcredit.cli_output import console, err_console, fail
from fedcredit.errors import FedCreditError
from fedcredit.training_spec import BinningSpec
from mpc.vector_he import EngineName
from scoring.logistic import GdSettings

train_app = typer.Typer(help="Federated model training (vertical logistic regression).")


@train_app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", help="A training run (YAML: guest, hosts, engine, binning, promote…) for "
        "the coordinator to run over the members' feature stores.")] = None,
    url: Annotated[str | None, typer.Option(envvar="FEDCREDIT_ADMIN_URL",
                                            help="The admin API, e.g. https://coord:8443")] = None,
    ca_cert: Annotated[Path | None, typer.Option(envvar="FEDCREDIT_ADMIN_CA_CERT",
                                                 help="The alliance CA certificate.")] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="File holding your admin token (default: $FEDCREDIT_ADMIN_TOKEN).")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the run until it ends.")] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the run here.")] =
        None,
) -> None:
    """`fedcredit train --config FILE` runs training over the alliance; `train local` runs it
    on CSV files."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        console.print(ctx.get_help())
        raise typer.Exit(0)
    from fedcredit.admin_cli import connect
    from fedcredit.train_alliance import print_summary, read_config, run_training

    try:
        body = read_config(config)
        run = run_training(connect(url, ca_cert, token_file), body, wait)
        if json_out is not None:
            json_out.write_text(json.dumps(run, indent=2))
        if run["state"] == "succeeded":
            print_summary(run)
    except FedCreditError as exc:
        raise fail(exc) from None


@train_app.command("local")
def train_local(
    party: Annotated[list[Path], typer.Option(
        "--party", help="A party's CSV file (repeat: the one with the label column is the "
        "guest, the others hosts).")],
    id_column: Annotated[str, typer.Option("--id", help="Column holding the subject id.")],
    label: Annotated[str, typer.Option(help="Label column (1 = default), guest file only.")],
    test_fraction: Annotated[float, typer.Option(min=0.05, max=0.9)] = 0.3,
    engine: Annotated[EngineName, typer.Option(help="ckks (fast) or paillier (reference).")] =
        EngineName.CKKS,
    out: Annotated[Path, typer.Option(help="Model, report and logs go here.")] =
        Path("train-run"),
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the summary here.")] =
        None,
    binning: Annotated[str, typer.Option(
        help="Quantile engine: exact (numpy, the default for CSV files) or spark.")] = "exact",
    max_bins: Annotated[int, typer.Option(min=2, max=64)] = 10,
    min_bin_size: Annotated[int, typer.Option(min=1)] = 50,
    min_iv: Annotated[float, typer.Option(min=0.0, help="Drop features below this IV.")] = 0.0,
    min_overlap: Annotated[int, typer.Option(min=1)] = 100,
    l2: Annotated[float, typer.Option(min=0.0)] = 0.01,
    max_epochs: Annotated[int, typer.Option(min=1)] = 30,
    seed: Annotated[int | None, typer.Option(help="Seed of the train/test split.")] = None,
    timeout: Annotated[float, typer.Option(min=5.0, help="Seconds a party waits for a peer.")]
        = 600.0,
    overlap_only: Annotated[bool, typer.Option(
        "--overlap-only", help="Only count shared subjects (cardinality PSI), then stop.")] =
        False,
    pooled: Annotated[bool, typer.Option(help="Also fit the pooled reference model.")] = True,
) -> None:
    """Run every party as a separate process on loopback from plain CSV files."""
    from fedcredit.train_local import LocalTrainingOptions, run_session, write_model
    from fedcredit.train_report import pooled_reference, summarize, write_plots

    try:
        options = LocalTrainingOptions(
            parties=tuple(party), id_column=id_column, label_column=label, out_dir=out,
            engine=engine, test_fraction=test_fraction,
            binning=BinningSpec(max_bins=max_bins, min_bin_size=min_bin_size, min_iv=min_iv,
                                engine=binning),
            gd=GdSettings(l2=l2, max_epochs=max_epochs), min_overlap=min_overlap,
            split_seed=seed, timeout_s=timeout, overlap_only=overlap_only,
        )
        with console.status("starting the parties…") as status:
            def progress(event: dict[str, Any]) -> None:
                status.update(str(event.get("message", "")))

            run = run_session(options, progress)
        guest = run.results[run.spec.guest]
        if overlap_only:
            for host, count in guest["overlap"].items():
                console.print(f"{run.spec.guest} and {host}: [bold]{count}[/] shared subjects")
            return
        reference = None
        ref_scores = None
        if pooled:
            with console.status("fitting the pooled reference…"):
                reference, ref_scores = pooled_reference(run, options)
        summary = summarize(run, reference)
        write_model(run, out, summary)
        labels = np.asarray(guest["test_labels"])
        curves = {"federated": np.asarray(guest["test_scores"])}
        if ref_scores is not None:
            curves["pooled"] = ref_scores
        summary["plots"] = [str(p) for p in write_plots(out, labels, curves)]
        _print(run, summary)
        write_json = json.dumps(summary, indent=2)
        (out / "metrics.json").write_text(write_json)
        if json_out is not None:
            json_out.write_text(write_json)
    except FedCreditError as exc:
        raise fail(exc) from None


def _print(run: Any, summary: dict[str, Any]) -> None:
    guest = run.results[run.spec.guest]
    table = Table(title=f"Held-out test set ({summary['rows']['test']} subjects)")
    table.add_column("model")
    table.add_column("AUC", justify="right")
    table.add_column("KS", justify="right")
    table.add_row("federated (" + summary["engine"] + ")", f"{summary['auc_federated']:.4f}",
                  f"{summary['ks_federated']:.4f}")
    if "auc_pooled" in summary:
        table.add_row("pooled plaintext reference", f"{summary['auc_pooled']:.4f}",
                      f"{summary['ks_pooled']:.4f}")
    if guest["guest_only"]:
        table.add_row(f"{run.spec.guest} features only", f"{guest['guest_only']['auc']:.4f}",
                      f"{guest['guest_only']['ks']:.4f}")
    console.print(table)
    features = Table(title="Features (information value)")
    for column in ("party", "feature", "bins", "IV", "kept"):
        features.add_column(column)
    for row in sorted(guest["feature_report"], key=lambda r: -r["iv"]):
        features.add_row(row["party"], row["feature"], str(row["bins"]), f"{row['iv']:.4f}",
                         "yes" if row["kept"] else "no")
    console.print(features)
    gap = summary.get("auc_gap")
    console.print(
        f"{summary['epochs']} epochs (best {summary['best_epoch']}), "
        f"{summary['seconds_per_epoch']:.2f} s/epoch, {summary['seconds']:.1f} s end to end"
        + (f"; |AUC - pooled| = {gap:.4f} ({'lossless' if summary['lossless'] else 'NOT lossless'})"
           if gap is not None else "")
    )
    console.print(f"model: {Path(run.workdir).parent / 'model'}; plots: "
                  + ", ".join(summary["plots"]))


@train_app.command("party", hidden=True)
def train_party(
    workdir: Annotated[Path, typer.Option()],
    name: Annotated[str, typer.Option()],
    data: Annotated[Path | None, typer.Option()] = None,
    id_column: Annotated[str | None, typer.Option("--id")] = None,
    label: Annotated[str | None, typer.Option()] = None,
    overlap_only: Annotated[bool, typer.Option("--overlap-only")] = False,
) -> None:
    """One party of a session (started by `train local` or the coordinator)."""
    from fedcredit.train_party import run_party

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code = run_party(name, workdir, data, id_column, label, overlap_only)
    if code:
        err_console.print(f"{name} failed; see {workdir / 'parties' / name / 'error.json'}")
    raise typer.Exit(code)
