"""The ``fedcredit`` command line."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from fedcredit.cli_output import console, err_console, fail
from fedcredit.errors import FedCreditError

app = typer.Typer(help="Privacy-preserving federated credit network.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
coordinator_app = typer.Typer(help="The alliance coordinator.", no_args_is_help=True)
node_app = typer.Typer(help="A member institution's node.", no_args_is_help=True)
alliance_app = typer.Typer(help="Alliance-wide secrets and setup.", no_args_is_help=True)
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(node_app, name="node")
app.add_typer(alliance_app, name="alliance")
audit_app = typer.Typer(help="The alliance's tamper-evident audit ledger.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


def _logging() -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def demo(
    nodes: Annotated[int, typer.Option(min=3, max=5, help="Member institutions.")] = 3,
    evaluations: Annotated[int, typer.Option(min=1, help="Joint evaluations to run.")] = 20,
    subjects: Annotated[int, typer.Option(min=100, help="Synthetic population size.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed of the population.")] = 7,
    workdir: Annotated[Path | None, typer.Option(help="Keep data and logs here.")] = None,
    report: Annotated[Path | None, typer.Option(
        help="Write one evaluation's printable HTML report here [default: report.html in "
        "--workdir, else demo-report.html here].")] = None,
) -> None:
    """Generate an alliance, start it as separate processes, run joint evaluations."""
    from fedcredit.demo.runner import run_demo

    if report is None:
        report = workdir / "report.html" if workdir is not None else Path("demo-report.html")
    try:
        code = run_demo(nodes, evaluations, subjects, seed, workdir, console, report)
    except KeyboardInterrupt:
        err_console.print("interrupted; everything was shut down")
        raise typer.Exit(130) from None
    except (FedCreditError, ValidationError) as exc:
        raise fail(exc) from None
    raise typer.Exit(code)


@coordinator_app.command("serve")
def coordinator_serve() -> None:
    """Run the coordinator (settings: FEDCREDIT_COORDINATOR_* environment variables)."""
    from coordinator.server import start_coordinator
    from coordinator.settings import CoordinatorSettings
    from fedcredit.files import write_json

    _logging()
    try:
        settings = CoordinatorSettings()
        running = start_coordinator(settings)
    except (FedCreditError, ValidationError) as exc:
        raise fail(exc) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if settings.ready_file is not None:
        write_json(settings.ready_file, running.ports())
    stop.wait()
    running.stop()


@node_app.command("serve")
def node_serve() -> None:
    """Run a member node: gRPC Node service + lender REST API (FEDCREDIT_NODE_* settings)."""
    from node.server import start_node
    from node.settings import NodeSettings

    _logging()
    try:
        runtime = start_node(NodeSettings())
    except (FedCreditError, ValidationError) as exc:
        raise fail(exc) from None
    # uvicorn restores the handlers it found and re-raises the signal it caught once it has
    # shut down; with these in place that re-raise is harmless and the cleanup below runs.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        runtime.serve_http_forever()
    except FedCreditError as exc:
        raise fail(exc) from None
    finally:
        runtime.stop()


@node_app.command("load-features")
def node_load_features(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet feature file.")],
) -> None:
    """Validate and pseudonymize a feature file, write it as a snapshot, load and activate it."""
    from mpc.pseudonym import SubjectKey
    from node.feature_loader import load_features
    from node.settings import NodeSettings
    from node.store import open_store

    try:
        settings = NodeSettings()
        store = open_store(settings.feature_store_location, settings.member_id)
        try:
            summary = load_features(
                file, store, SubjectKey.from_hex(settings.subject_key.get_secret_value()),
                member_id=settings.member_id, snapshot_root=settings.snapshot_root,
            )
        finally:
            store.close()
    except (FedCreditError, ValidationError) as exc:
        raise fail(exc) from None
    console.print(f"loaded {summary.rows} subjects from {summary.source} "
                  f"(sha256 {summary.source_sha256[:12]}…) as snapshot "
                  f"{summary.snapshot.snapshot_id}, now active")


StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Feature store URL; default: the node's FEDCREDIT_NODE_* "
                 "settings."),
]


def _node_store_target(url: str | None) -> tuple[str, str | None]:
    """``--store`` alone, or the store (and member) the node's settings name."""
    from node.settings import NodeSettings

    if url is not None:
        return url, None
    settings = NodeSettings()
    return settings.feature_store_location, settings.member_id


def _when(unix_ms: int | None) -> str:
    from datetime import UTC, datetime

    if unix_ms is None:
        return "—"
    return datetime.fromtimestamp(unix_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@node_app.command("snapshots")
def node_snapshots(store: StoreOption = None) -> None:
    """List the feature snapshots in this node's store, newest first; * marks the active one."""
    from rich.table import Table

    from node.store import open_store

    try:
        opened = open_store(*_node_store_target(store))
        try:
            infos = opened.snapshots()
        finally:
            opened.close()
    except (FedCreditError, ValidationError) as exc:
        raise fail(exc) from None
    table = Table(title="feature snapshots (times UTC)")
    for column in ("", "id", "state", "subjects", "features", "created", "loaded"):
        table.add_column(column, justify="right" if column in ("subjects", "features") else "left")
    for info in infos:
        table.add_row("*" if info.active else "", info.snapshot_id, info.state.value,
                      str(info.subjects), str(len(info.features)), _when(info.created_unix_ms),
                      _when(info.loaded_unix_ms))
    console.print(table if infos else "no snapshots in this feature store")


@node_app.command("rollback")
def node_rollback(
    snapshot_id: Annotated[str, typer.Argument(help="The snapshot to make active again.")],
    store: StoreOption = None,
) -> None:
    """Activate an earlier snapshot (reloaded from its directory if its rows were pruned)."""
    from node.store import open_store

    try:
        opened = open_store(*_node_store_target(store))
        try:
            info = opened.rollback(snapshot_id)
        finally:
            opened.close()
    except (FedCreditError, ValidationError) as exc:
        raise fail(exc) from None
    console.print(f"active: snapshot {info.snapshot_id} ({info.subjects} subjects, "
                  f"as of {info.as_of}, loaded {_when(info.loaded_unix_ms)} UTC)")


@alliance_app.command("subject-key")
def alliance_subject_key() -> None:
    """Print a new random alliance subject key (hex). Distribute to members only."""
    from mpc.pseudonym import SubjectKey

    print(SubjectKey.generate().secret.hex())


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Argument(help="Output folder.")],
    nodes: Annotated[int, typer.Option(min=3, max=5)] = 3,
    subjects: Annotated[int, typer.Option(min=100)] = 3000,
    seed: int = 7,
) -> None:
    """Write the demo population's per-member feature files and model slices."""
    from fedcredit.demo.population import generate, write_applicants, write_member_files

    population = generate(subjects, nodes, seed)
    files = write_member_files(population, out)
    write_applicants(population, out / "applicants.csv")
    for member, path in files.items():
        console.print(f"{member}: {path}")


@node_app.command("ingest")
def node_ingest(
    config: Annotated[Path, typer.Option("--config", exists=True, dir_okay=False,
                                         help="The institution's ingest config (YAML).")],
    spark_master: Annotated[str | None, typer.Option(
        help="Spark master (local[2], spark://host:7077); default FEDCREDIT_INGEST_SPARK_MASTER."
    )] = None,
    store: Annotated[str | None, typer.Option(
        "--store", help="Feature store URL to load the snapshot into (sqlite:/// or postgresql://)."
    )] = None,
) -> None:
    """Raw tables → validated, pseudonymized feature snapshot (Spark); load it if a store is set."""
    from node.ingest.command import ingest
    from node.ingest.settings import IngestSettings

    try:
        ingest(IngestSettings(), config, console, spark_master=spark_master, store_url=store)
    except (FedCreditError, ValidationError) as exc:
        raise fail(exc) from None
    except ValueError as exc:  # settings problems found after validation (e.g. no subject key)
        err_console.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


def _register_generate() -> None:
    from fedcredit import trust_cli
    from fedcredit.admin_cli import admin_app
    from fedcredit.synth.command import generate
    from node.api_keys_cli import api_keys_app
    from node.flags_cli import flags_app

    app.add_typer(admin_app, name="admin")
    node_app.command("join")(trust_cli.node_join)
    node_app.command("join-requests")(trust_cli.node_join_requests)
    node_app.command("vote")(trust_cli.node_vote)
    alliance_app.command("init")(trust_cli.alliance_init)
    audit_app.command("verify")(trust_cli.audit_verify)
    node_app.command("audit-check")(trust_cli.node_audit_check)
    node_app.add_typer(api_keys_app, name="api-keys")
    node_app.add_typer(flags_app, name="flags")
    from fedcredit.train_cli import train_app

    app.add_typer(train_app, name="train")

    app.command("generate", help="Write a synthetic alliance of raw institution tables "
                "(overlapping customers, latent risk, default labels).")(generate)


_register_generate()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
