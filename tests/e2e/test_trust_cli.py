"""The trust plane from the command line, as operators run it: ``alliance init``, a
coordinator process, ``node join``, ``fedcredit admin`` over HTTPS, ``audit verify`` — and a
ledger row edited in the database, which ``audit verify`` names."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "fedcredit.cli"]


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEDCREDIT_")}
    return subprocess.run([*CLI, *args], env={**clean, **(env or {}), "COLUMNS": "250"},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    data = tmp_path / "coordinator"
    first = run(["alliance", "init", "--data-dir", str(data), "--name", "e2e"])
    assert first.returncode == 0, first.stderr
    again = run(["alliance", "init", "--data-dir", str(data)])
    assert again.returncode == 1 and "RESOURCE_CONFLICT" in again.stderr
    ready = data / "ready.json"
    env = {**os.environ, "FEDCREDIT_COORDINATOR_ENVIRONMENT": "dev",
           "FEDCREDIT_COORDINATOR_DATA_DIR": str(data),
           "FEDCREDIT_COORDINATOR_BIND": "127.0.0.1:0",
           "FEDCREDIT_COORDINATOR_ENROLL_BIND": "127.0.0.1:0",
           "FEDCREDIT_COORDINATOR_ADMIN_BIND": "127.0.0.1:0",
           "FEDCREDIT_COORDINATOR_PROPAGATION_TIMEOUT_MS": "500",
           "FEDCREDIT_COORDINATOR_READY_FILE": str(ready)}
    proc = subprocess.Popen([*CLI, "coordinator", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield data, json.loads(ready.read_text())
    finally:
        proc.terminate()
        proc.wait(10)


def test_join_approve_suspend_and_verify_from_the_command_line(
    tmp_path: Path, coordinator: tuple[Path, dict[str, int]]
) -> None:
    data, ports = coordinator
    admin = {"FEDCREDIT_ADMIN_URL": f"https://127.0.0.1:{ports['admin_port']}",
             "FEDCREDIT_ADMIN_CA_CERT": str(data / "ca.crt"),
             "FEDCREDIT_ADMIN_TOKEN": (data / "admin-token").read_text().strip()}
    node = {"FEDCREDIT_NODE_ENVIRONMENT": "dev", "FEDCREDIT_NODE_MEMBER_ID": "bank",
            "FEDCREDIT_NODE_DATA_DIR": str(tmp_path / "bank"),
            "FEDCREDIT_NODE_SUBJECT_KEY": "ab" * 32,
            "FEDCREDIT_NODE_COORDINATOR_ENROLL_ADDRESS": f"127.0.0.1:{ports['enroll_port']}",
            "FEDCREDIT_NODE_CA_FILE": str(data / "ca.crt")}

    filed = run(["node", "join"], node)
    assert filed.returncode == 0, filed.stderr
    fingerprint = re.search(r"fingerprint\s+([0-9a-f:]{79})", filed.stdout)
    assert fingerprint is not None, filed.stdout
    request_id = json.loads((tmp_path / "bank" / "identity" / "join-request.json").read_text())[
        "request_id"]

    listed = run(["admin", "join-requests", "list"], admin)
    assert listed.returncode == 0 and request_id in listed.stdout, listed.stderr
    no_token = run(["admin", "join-requests", "list"],
                   {k: v for k, v in admin.items() if k != "FEDCREDIT_ADMIN_TOKEN"})
    assert no_token.returncode == 1 and "UNKNOWN_API_KEY" in no_token.stderr
    wrong = run(["admin", "members", "approve", request_id, "--fingerprint", "00" * 32], admin)
    assert wrong.returncode == 1 and "PERMISSION_DENIED" in wrong.stderr
    approved = run(["admin", "members", "approve", request_id, "--fingerprint",
                    fingerprint.group(1)], admin)
    assert approved.returncode == 0, approved.stderr

    installed = run(["node", "join"], node)
    assert installed.returncode == 0 and "admitted" in installed.stdout, installed.stderr
    key = tmp_path / "bank" / "identity" / "identity.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not (tmp_path / "bank" / "identity" / "join-request.json").exists()

    suspended = run(["admin", "members", "suspend", "bank", "--reason", "audit finding"], admin)
    assert suspended.returncode == 0, suspended.stderr
    members = run(["admin", "members", "list"], admin)
    assert "SUSPENDED" in members.stdout

    verified = run(["audit", "verify", "--data-dir", str(data)])
    assert verified.returncode == 0 and "ledger OK" in verified.stdout, verified.stderr

    # Someone with write access to the database edits one row: verify names it.
    database = sqlite3.connect(data / "coordinator.sqlite3")
    with database:
        index = database.execute("SELECT idx FROM ledger_entries WHERE kind='suspension'"
                                 ).fetchone()[0]
        database.execute("UPDATE ledger_entries SET body=replace(body, 'audit finding', "
                         "'routine') WHERE idx=?", (index,))
    database.close()
    tampered = run(["audit", "verify", "--data-dir", str(data)])
    assert tampered.returncode == 1
    assert "LEDGER_TAMPERED" in tampered.stderr and f"first bad entry {index}" in tampered.stderr
