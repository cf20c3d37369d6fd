"""The shared SQLite wrapper: durable and non-durable commits."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fedcredit.sqlite import SqliteDatabase

FULL = 2


def synchronous(db: SqliteDatabase) -> int:
    row = db.one("PRAGMA synchronous")
    assert row is not None
    return int(row[0])


def test_a_non_durable_commit_is_committed_and_leaves_later_commits_durable(
        tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "x.sqlite3", "CREATE TABLE t (v INTEGER);")
    assert synchronous(db) == FULL
    with db.transaction(durable=False) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    assert db.execute("INSERT INTO t VALUES (2)", durable=False) == 1
    assert synchronous(db) == FULL
    with pytest.raises(RuntimeError), db.transaction(durable=False) as conn:
        conn.execute("INSERT INTO t VALUES (3)")
        raise RuntimeError("rolled back")
    assert synchronous(db) == FULL
    db.close()
    other = sqlite3.connect(tmp_path / "x.sqlite3")  # another connection sees both commits
    assert sorted(v for (v,) in other.execute("SELECT v FROM t")) == [1, 2]
    other.close()
