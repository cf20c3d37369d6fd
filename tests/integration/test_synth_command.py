"""`fedcredit generate` as the CLI will run it (registered on a Typer app here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fedcredit.synth.command import generate
from node.ingest.config import load_ingest_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("generate")(generate)
    app.command("noop")(lambda: None)  # more than one command: `generate` stays a subcommand
    return app


def test_generate_writes_the_alliance_and_prints_a_summary(app: typer.Typer,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "alliance"
    result = CliRunner().invoke(app, ["generate", str(out), "--subjects", "400",
                                      "--institutions", "4", "--seed", "3", "--months", "6",
                                      "--dirty-rate", "0.01"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for text in ("bank2", "consumer_finance", "lenders", "default rate", "peak RSS"):
        assert text in result.output
    document = json.loads((out / "alliance.json").read_text())
    assert document["spec"]["months"] == 6 and document["spec"]["institutions"] == 4
    assert load_ingest_config(out / "bank2" / "ingest.yaml").window_months == 6

    again = CliRunner().invoke(app, ["generate", str(out), "--subjects", "400"])
    assert again.exit_code == 2 and "--force" in again.output
    forced = CliRunner().invoke(app, ["generate", str(out), "--subjects", "300",
                                      "--institutions", "2", "--force"])
    assert forced.exit_code == 0, forced.output
    assert not (out / "bank2" / "raw").exists()
    assert json.loads((out / "alliance.json").read_text())["spec"]["subjects"] == 300


@pytest.mark.parametrize(("args", "option"), [
    (["--institutions", "9"], "--institutions"),
    (["--subjects", "0"], "--subjects"),
    (["--as-of", "31/10/2026"], "--as-of"),
    (["--dirty-rate", "0.9"], "--dirty-rate"),
    (["--months", "0"], "--months"),
])
def test_bad_arguments_are_refused_naming_the_option(app: typer.Typer, tmp_path: Path,
                                                     args: list[str], option: str) -> None:
    result = CliRunner().invoke(app, ["generate", str(tmp_path / "out"), *args],
                                terminal_width=200)
    assert result.exit_code == 2
    assert option in result.output
    assert not (tmp_path / "out").exists()
