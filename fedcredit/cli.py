"""The ``fedcredit`` command line."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from fedcredit.errors import FedCreditError

app = typer.Typer(help="Privacy-preserving federated credit network.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
coordinator_app = typer.Typer(help="The alliance coordinator.", no_args_is_help=True)
node_app = typer.Typer(help="A member institution's node.", no_args_is_help=True)
alliance_app = typer.Typer(help="Alliance-wide secrets and setup.", no_args_is_help=True)
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(node_app, name="node")
app.add_typer(alliance_app, name="alliance")
console = Console(width=max(Console().width, 130))
err_console = Console(stderr=True)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(exc: Exception) -> typer.Exit:
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in exc.errors()
        )
        err_console.print(f"[red]configuration error:[/] {problems}")
        return typer.Exit(2)
    if isinstance(exc, FedCreditError):
        err_console.print(f"[red]{exc.code.value}:[/] {exc.detail}")
        return typer.Exit(1)
    raise exc


@app.command()
def demo(
    nodes: Annotated[int, typer.Option(min=3, max=5, help="Member institutions.")] = 3,
    evaluations: Annotated[int, typer.Option(min=1, help="Joint evaluations to run.")] = 20,
    subjects: Annotated[int, typer.Option(min=100, help="Synthetic population size.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed of the population.")] = 7,
    workdir: Annotated[Path | None, typer.Option(help="Keep data and logs here.")] = None,
) -> None:
    """Generate an alliance, start it as separate processes, run joint evaluations."""
    from fedcredit.demo.runner import run_demo

    try:
        code = run_demo(nodes, evaluations, subjects, seed, workdir, console)
    except KeyboardInterrupt:
        err_console.print("interrupted; everything was shut down")
        raise typer.Exit(130) from None
    except (FedCreditError, ValidationError) as exc:
        raise _fail(exc) from None
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
        raise _fail(exc) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if settings.ready_file is not None:
        write_json(settings.ready_file, {"grpc_port": running.port})
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
        raise _fail(exc) from None
    # uvicorn restores the handlers it found and re-raises the signal it caught once it has
    # shut down; with these in place that re-raise is harmless and the cleanup below runs.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        runtime.serve_http_forever()
    except FedCreditError as exc:
        raise _fail(exc) from None
    finally:
        runtime.stop()


@node_app.command("load-features")
def node_load_features(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet feature file.")],
) -> None:
    """Validate, pseudonymize and atomically load a feature file into this node's store."""
    from mpc.pseudonym import SubjectKey
    from node.feature_loader import load_features
    from node.feature_store import FeatureStore
    from node.settings import NodeSettings

    try:
        settings = NodeSettings()
        store = FeatureStore(settings.feature_store_path)
        try:
            summary = load_features(
                file, store, SubjectKey.from_hex(settings.subject_key.get_secret_value())
            )
        finally:
            store.close()
    except (FedCreditError, ValidationError) as exc:
        raise _fail(exc) from None
    console.print(f"loaded {summary.rows} subjects from {summary.source} "
                  f"(sha256 {summary.source_sha256[:12]}…)")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
