"""One SQLite file shared by a service's threads: WAL, full fsync, one lock, autocommit.

The coordinator's registry and a node's feature and report stores are small and local;
SQLite in WAL mode lets readers proceed while a writer commits, and ``synchronous=FULL``
makes a commit durable before the caller is told it happened. A caller may say a commit need
not wait for the disk (``durable=False``): it is atomic and survives a crash of this process
at once (it is in the operating system's page cache), and a crash of the machine from the next
durable commit or :meth:`SqliteDatabase.sync` on.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class SqliteDatabase:
    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._wal_path = path.with_name(path.name + "-wal")
        #: A commit since the last sync did not wait for the disk.
        self._unsynced = False
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(schema)
        # Re-entrant: code inside transaction() may read through the same connection (and
        # sees its own uncommitted writes); a nested transaction() fails loudly in SQLite.
        self._lock = threading.RLock()

    def add_missing_column(self, table: str, column: str, declaration: str) -> bool:
        """Add ``column`` to ``table`` of an older database (a no-op when it exists); whether
        it was added. Names come from code, never from input."""
        with self._lock:
            columns = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if column in columns:
                return False
            self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            return True

    def execute(self, sql: str, params: Sequence[Any] = (), *, durable: bool = True) -> int:
        """Run one statement (committed on return); the number of rows it changed.
        ``durable=False``: see :meth:`transaction`."""
        if not durable:
            with self.transaction(durable=False) as conn:
                return conn.execute(sql, params).rowcount
        with self._lock:
            return self._conn.execute(sql, params).rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._conn.execute(sql, params).fetchone()
            return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together, or none do.

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL`` for this
        commit: in WAL mode still atomic and consistent, and durable with the next durable
        commit, which syncs the log): for state a crash may lose, such as liveness — a
        heartbeat then holds the database lock for microseconds, not an fsync.
        """
        with self._lock:
            if not durable:
                self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                # A durable commit syncs the whole log, earlier non-durable commits included.
                self._unsynced = not durable
            finally:
                if not durable:
                    self._conn.execute("PRAGMA synchronous=FULL")

    @property
    def unsynced(self) -> bool:
        """Whether a commit since the last durable one or :meth:`sync` did not wait for the
        disk."""
        return self._unsynced

    def sync(self) -> None:
        """Make every commit so far durable, the non-durable ones included: one fsync of the
        write-ahead log (what a durable commit does), nothing when none waits.

        A checkpoint has synced what it copied into the database file already (SQLite syncs the
        log before and the database after each one, also in ``synchronous=NORMAL``), so the
        log is all that can hold an unsynced commit."""
        with self._lock:
            if not self._unsynced:
                return
            try:
                fd = os.open(self._wal_path, os.O_RDONLY)
            except FileNotFoundError:  # no log: every commit is in the synced database file
                self._unsynced = False
                return
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._unsynced = False

    def close(self) -> None:
        """Close the connection, syncing non-durable commits first."""
        self.sync()
        with self._lock:
            self._conn.close()
