"""The ``fedcredit`` command as a user runs it: the demo, Ctrl-C, and refusals at start-up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "fedcredit.cli"]


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120,
        ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEDCREDIT_")}
    return subprocess.run([*CLI, *args], env={**clean, **(env or {}), "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The full demo (generation, Spark ingest, admission, evaluations, audit), once."""
    workdir = tmp_path_factory.mktemp("demo")
    result = run(["demo", "--evaluations", "9", "--subjects", "800", "--workdir", str(workdir)],
                 timeout=600)  # a hang, not a speed target (bench/ measures speed)
    return workdir, result


def test_demo_runs_and_every_joint_result_equals_the_pooled_computation(
    demo_run: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    tmp_path, result = demo_run
    assert result.returncode == 0, result.stdout + result.stderr
    assert "9/9 joint results equal the pooled plaintext computation" in result.stdout
    assert "All processes stopped cleanly." in result.stdout
    # Decisions with their reasons, one applicant flagged by a member, one printable report.
    assert "RC10" in result.stdout and "flagged the applicant" in result.stdout
    page = (tmp_path / "report.html").read_text()
    assert "Credit evaluation report" in page and "Repayment plan" in page
    assert "report.html" in result.stdout
    for log in (tmp_path / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(), log.name


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_using(workdir: Path) -> list[int]:
    """Live processes whose environment or command line names ``workdir`` (the demo's
    children do, and so does its Spark JVM through spark.local.dir)."""
    needle = str(workdir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (needle in (entry / "environ").read_bytes()
                        or needle in (entry / "cmdline").read_bytes()):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _sigint_as_in_a_terminal() -> None:
    """A test run started in the background by a non-interactive shell (no job control)
    inherits SIGINT *ignored*, and Python then keeps ignoring it; a Ctrl-C in a terminal
    reaches a process whose SIGINT is at its default. Simulate the terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def running_demo(workdir: Path) -> Iterator[subprocess.Popen[str]]:
    """The demo as a user starts it in a terminal; killed if a failed test left it running."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEDCREDIT_")}
    proc = subprocess.Popen(
        [*CLI, "demo", "--evaluations", "500", "--subjects", "800", "--workdir", str(workdir)],
        env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_sigint_as_in_a_terminal,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_ctrl_c_during_the_ingest_leaves_no_process_behind(tmp_path: Path) -> None:
    with running_demo(tmp_path) as proc:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "raw" / "bank" / "snapshots").glob(".work-*")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    time.sleep(0.5)
    assert processes_using(tmp_path) == []


def test_ctrl_c_shuts_everything_down(
    demo_run: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    """Ctrl-C once the alliance serves. This second run in the first one's workdir reuses its
    ingested snapshots, certificates and keys (so it does not wait for Spark again)."""
    tmp_path, _ = demo_run
    for ready_file in tmp_path.glob("*/ready.json"):
        ready_file.unlink()
    ready = [tmp_path / m / "ready.json" for m in ("bank", "finco", "shop")]
    with running_demo(tmp_path) as proc:
        deadline = time.monotonic() + 300
        while not all(p.exists() for p in ready):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        ports = [json.loads(p.read_text())["http_port"] for p in ready]
        ports.append(json.loads((tmp_path / "coordinator" / "ready.json").read_text())[
            "grpc_port"])
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "interrupted" in err
    assert "reusing the snapshots ingested by an earlier run" in out
    time.sleep(0.5)
    assert not any(listening(port) for port in ports)
    assert processes_using(tmp_path) == []


def test_node_refuses_to_start_without_configuration() -> None:
    result = run(["node", "serve"])
    assert result.returncode == 2
    assert "configuration error" in result.stderr and "member_id" in result.stderr


def test_node_refuses_to_serve_without_an_alliance_identity(tmp_path: Path) -> None:
    result = run(["node", "serve"], {
        "FEDCREDIT_NODE_ENVIRONMENT": "prod",
        "FEDCREDIT_NODE_MEMBER_ID": "bank",
        "FEDCREDIT_NODE_DATA_DIR": str(tmp_path),
        "FEDCREDIT_NODE_SUBJECT_KEY": bytes(range(32)).hex(),
    })
    assert result.returncode == 1
    assert "CONFIGURATION_INVALID" in result.stderr and "node join" in result.stderr


def test_coordinator_refuses_to_start_without_an_alliance_ca(tmp_path: Path) -> None:
    result = run(["coordinator", "serve"], {"FEDCREDIT_COORDINATOR_ENVIRONMENT": "prod",
                                            "FEDCREDIT_COORDINATOR_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "CONFIGURATION_INVALID" in result.stderr and "alliance init" in result.stderr
    assert not (tmp_path / "coordinator.sqlite3").exists()


def test_load_features_reports_bad_rows_and_loads_nothing(tmp_path: Path) -> None:
    env = {
        "FEDCREDIT_NODE_ENVIRONMENT": "dev",
        "FEDCREDIT_NODE_MEMBER_ID": "bank",
        "FEDCREDIT_NODE_DATA_DIR": str(tmp_path / "data"),
        "FEDCREDIT_NODE_SUBJECT_KEY": "ab" * 32,
    }
    header = ("subject_id,id_type,outstanding_debt_cents,active_loans,open_credit_lines,"
              "accounts_30dpd,accounts_90dpd,inquiries_90d,bank_income\n")
    good = tmp_path / "good.csv"
    good.write_text(header + "11010519491231002X,cn_resident_id,1000,1,1,0,0,0,5000\n")
    assert run(["node", "load-features", str(good)], env).returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "11010519491231002X,cn_resident_id,1000,1,1,0,0,0,5000\n"
                   "110105194912310021,cn_resident_id,5,1,1,0,0,0,1\n"
                   "11010519491231002X,cn_resident_id,-3,1,1,0,0,0,1\n")
    result = run(["node", "load-features", str(bad)], env)
    assert result.returncode == 1
    assert "INVALID_FEATURE_FILE" in result.stderr
    assert "row 2" in result.stderr and "row 3" in result.stderr
    assert "110105194912310021" not in result.stderr  # errors name rows, never values


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run(["alliance", "init", "--data-dir", str(tmp_path)]).returncode == 0
        result = run(["coordinator", "serve"], {
            "FEDCREDIT_COORDINATOR_ENVIRONMENT": "dev",
            "FEDCREDIT_COORDINATOR_DATA_DIR": str(tmp_path),
            "FEDCREDIT_COORDINATOR_BIND": f"127.0.0.1:{port}",
        })
    assert result.returncode == 1
    assert "CONFIGURATION_INVALID" in result.stderr and f"127.0.0.1:{port}" in result.stderr
