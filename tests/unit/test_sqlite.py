"""The shared SQLite wrapper: durable and non-durable commits, and syncing the latter."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
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


def test_sync_puts_non_durable_commits_on_the_disk_and_only_when_some_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.sqlite3"
    db = SqliteDatabase(path, "CREATE TABLE t (v INTEGER);")
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    assert not db.unsynced
    db.sync()
    assert synced == []  # nothing waited: no fsync
    db.execute("INSERT INTO t VALUES (1)", durable=False)
    assert db.unsynced
    db.sync()
    assert synced == [str(path) + "-wal"]  # the log, where the commit is
    assert not db.unsynced
    db.execute("INSERT INTO t VALUES (2)", durable=False)
    with db.transaction() as conn:  # a durable commit syncs the whole log
        conn.execute("INSERT INTO t VALUES (3)")
    assert not db.unsynced
    db.execute("INSERT INTO t VALUES (4)", durable=False)
    db.close()  # syncs first
    assert synced == [str(path) + "-wal"] * 2
    other = sqlite3.connect(path)
    assert sorted(v for (v,) in other.execute("SELECT v FROM t")) == [1, 2, 3, 4]
    other.close()


def test_a_non_durable_commit_survives_a_crash_of_the_process(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    crash = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from fedcredit.sqlite import SqliteDatabase
        db = SqliteDatabase(Path({str(path)!r}), "CREATE TABLE t (v INTEGER);")
        db.execute("INSERT INTO t VALUES (7)", durable=False)
        os._exit(9)  # no close, no sync, no clean-up
    """)
    done = subprocess.run([sys.executable, "-c", crash], cwd=Path(__file__).parents[2],
                          timeout=60, check=False)
    assert done.returncode == 9
    db = SqliteDatabase(path, "CREATE TABLE IF NOT EXISTS t (v INTEGER);")
    assert db.all("SELECT v FROM t") == [(7,)]
    db.close()
