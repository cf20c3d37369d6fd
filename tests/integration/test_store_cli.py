"""``fedcredit node snapshots`` and ``fedcredit node rollback`` on real stores."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedcredit.cli import app
from mpc.pseudonym import SubjectKey
from node.ingest.snapshot import EXPOSURE_COLUMNS, SubjectRecord, write_snapshot
from node.store import open_store

pytestmark = pytest.mark.integration


def load_two(url: str, root: Path, member: str = "bank") -> tuple[str, str]:
    ids = []
    store = open_store(url, member)
    try:
        for version in (1, 2):
            rows = [(hashlib.sha256(bytes([i])).digest(),
                     SubjectRecord(dict.fromkeys(EXPOSURE_COLUMNS, version), {"x": 1.0}))
                    for i in range(5 * version)]
            manifest = write_snapshot(root, rows, member_id=member, features=("x",),
                                      as_of="2026-01-31", mode="feature_file")
            ids.append(store.load_snapshot(root / manifest.snapshot_id).snapshot_id)
    finally:
        store.close()
    return ids[0], ids[1]


def active_id(url: str) -> str | None:
    store = open_store(url)
    try:
        active = store.active()
        return active.snapshot_id if active else None
    finally:
        store.close()


def test_snapshots_lists_them_and_rollback_switches(store_url: str, tmp_path: Path) -> None:
    first, second = load_two(store_url, tmp_path)
    runner = CliRunner()
    listed = runner.invoke(app, ["node", "snapshots", "--store", store_url],
                           env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    lines = {line.split("│")[2].strip(): line for line in listed.output.splitlines()
             if first in line or second in line}
    assert "*" in lines[second].split("│")[1] and "*" not in lines[first].split("│")[1]
    assert [cell.strip() for cell in lines[first].split("│")[3:6]] == ["loaded", "5", "1"]

    rolled = runner.invoke(app, ["node", "rollback", first, "--store", store_url])
    assert rolled.exit_code == 0, rolled.output
    assert f"active: snapshot {first} (5 subjects" in rolled.output
    assert active_id(store_url) == first

    missing = runner.invoke(app, ["node", "rollback", "nope", "--store", store_url])
    assert missing.exit_code == 1 and "SNAPSHOT_NOT_FOUND" in missing.output
    assert active_id(store_url) == first


def test_without_store_the_node_settings_name_the_store(
    tmp_path: Path, subject_key: SubjectKey
) -> None:
    env = {
        "FEDCREDIT_NODE_ENVIRONMENT": "dev",
        "FEDCREDIT_NODE_MEMBER_ID": "bank",
        "FEDCREDIT_NODE_DATA_DIR": str(tmp_path / "bank"),
        "FEDCREDIT_NODE_SUBJECT_KEY": subject_key.secret.hex(),
    }
    first, second = load_two(str(tmp_path / "bank" / "features.sqlite3"), tmp_path / "snaps")
    runner = CliRunner()
    listed = runner.invoke(app, ["node", "snapshots"], env={**env, "COLUMNS": "200"})
    assert listed.exit_code == 0 and first in listed.output and second in listed.output
    assert runner.invoke(app, ["node", "rollback", first], env=env).exit_code == 0
    assert active_id(str(tmp_path / "bank" / "features.sqlite3")) == first
    # Another data dir is another (empty) store.
    other = runner.invoke(app, ["node", "snapshots"],
                          env={**env, "FEDCREDIT_NODE_DATA_DIR": str(tmp_path / "empty")})
    assert other.exit_code == 0 and "no snapshots" in other.output
