"""The feature store in PostgreSQL (psycopg 3): for members that run a database server.

Same layout as the SQLite store, in one schema per member (``?schema=`` in the URL): a rows
table ``subjects_<key>`` per retained snapshot with a primary key on the pseudonym, the
``active_subjects`` view over the active one, ``snapshots`` and ``active_snapshot``.

* Loading creates the rows table and fills it with a binary ``COPY … FREEZE`` in the same
  transaction, built column-wise with numpy (no per-row Python), then adds the primary key and
  analyzes the table; a load that dies is rolled back by the server. Activation replaces the view
  and moves the pointer in a second, short transaction.
* Lookups run on a small pool of autocommit connections (a psycopg connection serializes its
  users, and the node serves from many threads) as a server-side prepared statement with binary
  parameters and results, executed straight through libpq (``psycopg.pq``, which releases the
  GIL while it waits); a connection found broken is replaced once before the lookup gives up.
* The load lock is a session advisory lock, released by the server if the loader dies.

Errors reaching the caller never contain the URL's password.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psycopg
from psycopg import pq

from fedcredit.clock import Clock, system_clock
from fedcredit.errors import FeatureStoreUnavailableError, SnapshotError
from node.ingest.snapshot import EXPOSURE_COLUMNS, PSEUDONYM_BYTES, SnapshotManifest, SubjectRecord
from node.store.base import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_RETAIN,
    FeatureStore,
    Progress,
    SnapshotEntry,
    SnapshotState,
    SubjectBatch,
    manifest_json,
)
from node.store.encoding import EncodedBatch
from node.store.location import DEFAULT_SCHEMA, redact_url, url_passwords

DEFAULT_POOL_SIZE = 8
CONNECT_TIMEOUT_S = 5
POOL_WAIT_S = 5.0
#: A view replacement or table drop waits at most this long for a lock before it gives up.
LOCK_TIMEOUT = "10s"
_EXPOSURES = ", ".join(EXPOSURE_COLUMNS)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_LOOKUP_STATEMENT = b"fedcredit_lookup"
_BYTEA_OID = 17
R = TypeVar("R")


def _copy_dtype(features: int) -> np.dtype[Any]:
    """One row of binary COPY: field count, then (length, value) per field, big-endian."""
    fields: list[tuple[str, Any]] = [("fields", ">i2"), ("pseudonym_len", ">i4"),
                                     ("pseudonym", f"V{PSEUDONYM_BYTES}")]
    for i in range(len(EXPOSURE_COLUMNS)):
        fields += [(f"len{i}", ">i4"), (f"exposure{i}", ">i8")]
    fields.append(("features_len", ">i4"))
    if features:
        fields.append(("features", f"V{8 * features}"))
    return np.dtype(fields)


def copy_rows(batch: EncodedBatch) -> bytes:
    """A batch in PostgreSQL's binary COPY row format (no header or trailer)."""
    width = batch.features.shape[1]
    rows = np.empty(batch.rows, dtype=_copy_dtype(width))
    rows["fields"] = 2 + len(EXPOSURE_COLUMNS)
    rows["pseudonym_len"] = PSEUDONYM_BYTES
    rows["pseudonym"] = batch.pseudonyms
    for i in range(len(EXPOSURE_COLUMNS)):
        rows[f"len{i}"] = 8
        rows[f"exposure{i}"] = batch.exposures[:, i]
    rows["features_len"] = 8 * width
    if width:
        rows["features"] = np.ascontiguousarray(batch.features).view(f"V{8 * width}").ravel()
    return rows.tobytes()


class _Session:
    """A pooled autocommit connection with its one binary cursor (a new cursor per query costs
    ~20 µs) and whether the lookup statement is prepared on it."""

    __slots__ = ("conn", "cursor", "lookup_prepared")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.cursor = conn.cursor(binary=True)
        self.lookup_prepared = False


class _ConnectionPool:
    """At most ``size`` sessions, opened on demand, most recently used first."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], size: int) -> None:
        self._connect = connect
        self._idle: deque[_Session] = deque()  # append/pop are atomic
        self._slots = threading.BoundedSemaphore(size)
        self._closed = False

    @contextmanager
    def session(self) -> Iterator[_Session]:
        if self._closed or not self._slots.acquire(timeout=POOL_WAIT_S):
            raise FeatureStoreUnavailableError("no feature store connection is free")
        try:
            try:
                session = self._idle.pop()
            except IndexError:
                session = _Session(self._connect())
            try:
                yield session
            finally:
                if session.conn.closed or session.conn.broken or self._closed:
                    session.conn.close()
                else:
                    self._idle.append(session)
        finally:
            self._slots.release()

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.pop().conn.close()
            except IndexError:
                return


class PostgresFeatureStore(FeatureStore):
    _driver_errors = (psycopg.Error,)

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        member_id: str | None = None,
        retain: int = DEFAULT_RETAIN,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        pool_size: int = DEFAULT_POOL_SIZE,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(member_id=member_id, retain=retain, batch_rows=batch_rows, clock=clock)
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise FeatureStoreUnavailableError(f"invalid feature store schema name {schema!r}")
        self._conninfo = conninfo
        self._where = redact_url(conninfo)
        self._passwords = url_passwords(conninfo)
        self._s = f'"{schema}"'
        self._schema = schema
        digest = hashlib.sha256(f"fedcredit/feature-store/{schema}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)
        self._lookup_pq_sql = (f"SELECT snapshot_key, {_EXPOSURES}, features "
                               f"FROM {self._s}.active_subjects WHERE pseudonym = $1").encode()
        self._pool = _ConnectionPool(self._connect, pool_size)
        self._writer_lock = threading.RLock()
        self._writer_conn: psycopg.Connection[Any] | None = None
        try:
            with self._translated():
                self._create_schema()
            self.clean_up()
        except BaseException:
            self.close()
            raise
        self._close_writer()  # a serving node never writes: no idle connection for it

    # -- connections ---------------------------------------------------------------------------
    def _unavailable(self, exc: Exception) -> FeatureStoreUnavailableError:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        for secret in self._passwords:
            reason = reason.replace(secret, "***")
        return FeatureStoreUnavailableError(f"feature store {self._where}: {reason}")

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self._conninfo, autocommit=True,
                                   connect_timeout=CONNECT_TIMEOUT_S,
                                   application_name="fedcredit-feature-store")
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._on_session(lambda session: self._query(session, sql, params))

    @staticmethod
    def _query(session: _Session, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        session.cursor.execute(sql, params, prepare=True)
        return session.cursor.fetchall()

    def _on_session(self, work: Callable[[_Session], R]) -> R:
        """``work`` on a pooled session; a connection found broken is replaced once."""
        for attempt in (1, 2):
            with self._pool.session() as session:
                try:
                    return work(session)
                except psycopg.Error as exc:
                    if attempt == 2 or not session.conn.broken:
                        raise self._unavailable(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _writer(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection for loads, rollbacks and clean-up (one user at a time)."""
        with self._writer_lock:
            conn = self._writer_conn
            if conn is None or conn.closed or conn.broken:
                conn = self._writer_conn = self._connect()
            yield conn

    def _close_writer(self) -> None:
        with self._writer_lock:
            if self._writer_conn is not None:
                self._writer_conn.close()
                self._writer_conn = None

    def close(self) -> None:
        self._pool.close()
        self._close_writer()

    def _create_schema(self) -> None:
        s = self._s
        nulls = ", ".join(f"NULL::bigint AS {c}" for c in EXPOSURE_COLUMNS)
        with self._writer() as conn, conn.transaction():
            # Two processes opening a new store at once would race on CREATE … IF NOT EXISTS.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key ^ 1,))
            # Only if missing: CREATE SCHEMA IF NOT EXISTS still needs CREATE on the database,
            # which a role given a schema of its own usually lacks.
            present = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                                   (self._schema,)).fetchone()
            if present is None:
                conn.execute(f"CREATE SCHEMA {s}")
            conn.execute(f"""CREATE TABLE IF NOT EXISTS {s}.snapshots (
                snapshot_key bigserial PRIMARY KEY,
                snapshot_id text NOT NULL UNIQUE,
                state text NOT NULL,
                loaded_unix_ms bigint,
                source_dir text NOT NULL,
                features text NOT NULL,
                subjects bigint NOT NULL,
                manifest text NOT NULL)""")
            conn.execute(f"""CREATE TABLE IF NOT EXISTS {s}.active_snapshot (
                id int PRIMARY KEY CHECK (id = 1),
                snapshot_key bigint REFERENCES {s}.snapshots (snapshot_key))""")
            conn.execute(f"INSERT INTO {s}.active_snapshot VALUES (1, NULL) "
                         "ON CONFLICT DO NOTHING")
            exists = conn.execute("SELECT to_regclass(%s)", (f"{s}.active_subjects",)).fetchone()
            if exists is None or exists[0] is None:
                conn.execute(f"CREATE VIEW {s}.active_subjects AS SELECT NULL::bigint AS "
                             f"snapshot_key, NULL::bytea AS pseudonym, {nulls}, "
                             "NULL::bytea AS features WHERE false")

    # -- the online path ---------------------------------------------------------------------
    def lookup(self, pseudonym: bytes) -> SubjectRecord | None:
        row = self._on_session(lambda session: self._lookup_row(session, pseudonym))
        if row is None:
            return None
        return SubjectRecord(
            exposures=dict(zip(EXPOSURE_COLUMNS, row[1:-1], strict=True)),
            features=self._codec(row[0]).decode(row[-1]),
        )

    def lookup_many(self, pseudonyms: Sequence[bytes]) -> SubjectBatch:
        """One query for a whole chunk (``= ANY`` over a bytea array)."""
        rows = self._read(
            f"SELECT snapshot_key, pseudonym, {_EXPOSURES}, features FROM {self._s}."
            "active_subjects WHERE pseudonym = ANY(%s)", (list(pseudonyms),))
        return SubjectBatch.from_rows(pseudonyms, rows, self._codec)

    def _lookup_row(self, session: _Session, pseudonym: bytes) -> tuple[Any, ...] | None:
        """The hot path, one libpq round trip on the session's own prepared statement with
        binary parameters and results: psycopg's cursor layer would add ~50 µs per lookup
        (measured), a third of a loopback lookup."""
        pgconn = session.conn.pgconn
        if not session.lookup_prepared:
            self._check(pgconn.prepare(_LOOKUP_STATEMENT, self._lookup_pq_sql, [_BYTEA_OID]))
            session.lookup_prepared = True
        result = pgconn.exec_prepared(_LOOKUP_STATEMENT, [pseudonym], [1], 1)
        self._check(result)
        if result.ntuples == 0:
            return None
        values = [result.get_value(0, i) or b"" for i in range(len(EXPOSURE_COLUMNS) + 2)]
        return (*(int.from_bytes(v, "big", signed=True) for v in values[:-1]), values[-1])

    @staticmethod
    def _check(result: pq.abc.PGresult) -> None:
        if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            raise psycopg.errors.error_from_result(result)

    def count(self) -> int:
        rows = self._read(f"SELECT s.subjects FROM {self._s}.active_snapshot a "
                          f"JOIN {self._s}.snapshots s ON s.snapshot_key = a.snapshot_key")
        return int(rows[0][0]) if rows else 0

    def _feature_names(self, key: int) -> tuple[str, ...]:
        rows = self._read(f"SELECT features FROM {self._s}.snapshots WHERE snapshot_key = %s",
                          (key,))
        if not rows:
            raise FeatureStoreUnavailableError(f"snapshot key {key} has no entry")
        return tuple(str(n) for n in json.loads(rows[0][0]))

    # -- the life cycle ----------------------------------------------------------------------
    def _entries(self) -> list[SnapshotEntry]:
        s = self._s
        rows = self._read(
            "SELECT s.snapshot_key, s.snapshot_id, s.state, s.loaded_unix_ms, s.source_dir, "
            f"s.manifest, a.snapshot_key IS NOT NULL FROM {s}.snapshots s "
            f"LEFT JOIN {s}.active_snapshot a ON a.snapshot_key = s.snapshot_key "
            "ORDER BY s.snapshot_key"
        )
        return [
            SnapshotEntry(key=r[0], snapshot_id=r[1], state=SnapshotState(r[2]),
                          loaded_unix_ms=r[3], source_dir=r[4], manifest=r[5], active=r[6])
            for r in rows
        ]

    @contextmanager
    def _load_lock(self, wait: bool) -> Iterator[bool]:
        with self._writer() as conn:
            if wait:
                conn.execute("SELECT pg_advisory_lock(%s)", (self._lock_key,))
            else:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._lock_key,)
                                   ).fetchone()
                if not (row and row[0]):
                    yield False
                    return
            try:
                yield True
            finally:
                with suppress(psycopg.Error):  # a lost session has released it already
                    conn.execute("SELECT pg_advisory_unlock(%s)", (self._lock_key,))

    def _begin_load(self, key: int | None, manifest: SnapshotManifest, source_dir: Path) -> int:
        s = self._s
        with self._writer() as conn:
            if key is not None:
                conn.execute(f"UPDATE {s}.snapshots SET state = %s, source_dir = %s "
                             "WHERE snapshot_key = %s",
                             (SnapshotState.INCOMPLETE.value, str(source_dir), key))
                return key
            row = conn.execute(
                f"INSERT INTO {s}.snapshots (snapshot_id, state, source_dir, features, "
                "subjects, manifest) VALUES (%s, %s, %s, %s, %s, %s) RETURNING snapshot_key",
                (manifest.snapshot_id, SnapshotState.INCOMPLETE.value, str(source_dir),
                 json.dumps(list(manifest.feature_names)), manifest.subjects,
                 manifest_json(manifest)),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def _write_rows(
        self, key: int, batches: Iterable[EncodedBatch], progress: Progress | None
    ) -> int:
        table = f"{self._s}.subjects_{int(key)}"
        columns = ", ".join(f"{c} bigint NOT NULL" for c in EXPOSURE_COLUMNS)
        rows = 0
        with self._writer() as conn:
            try:
                with conn.transaction():
                    conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
                    conn.execute(f"CREATE TABLE {table} (pseudonym bytea NOT NULL, {columns}, "
                                 "features bytea NOT NULL)")
                    # FREEZE: the table is new in this transaction, so its rows can be written
                    # frozen (no later vacuum rewrites them, no hint-bit writes on first reads).
                    with conn.cursor().copy(
                        f"COPY {table} FROM STDIN WITH (FORMAT binary, FREEZE)"
                    ) as copy:
                        copy.write(_COPY_HEADER)
                        for batch in batches:
                            copy.write(copy_rows(batch))
                            rows += batch.rows
                            if progress is not None:
                                progress(rows)
                        copy.write(_COPY_TRAILER)
                    conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (pseudonym)")
                    conn.execute(f"ANALYZE {table}")
            except psycopg.errors.UniqueViolation:
                raise SnapshotError("the snapshot holds a pseudonym twice") from None
        return rows

    def _activate(self, key: int, loaded_unix_ms: int | None) -> None:
        s = self._s
        with self._writer() as conn, conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            conn.execute(
                f"CREATE OR REPLACE VIEW {s}.active_subjects AS SELECT {int(key)}::bigint AS "
                f"snapshot_key, pseudonym, {_EXPOSURES}, features FROM {s}.subjects_{int(key)}"
            )
            conn.execute(f"UPDATE {s}.active_snapshot SET snapshot_key = %s WHERE id = 1", (key,))
            conn.execute(
                f"UPDATE {s}.snapshots SET state = %s, "
                "loaded_unix_ms = COALESCE(%s, loaded_unix_ms) WHERE snapshot_key = %s",
                (SnapshotState.LOADED.value, loaded_unix_ms, key),
            )

    def _set_state(self, key: int, state: SnapshotState) -> None:
        with self._writer() as conn:
            conn.execute(f"UPDATE {self._s}.snapshots SET state = %s WHERE snapshot_key = %s",
                         (state.value, key))

    def _delete_entry(self, key: int) -> None:
        with self._writer() as conn:
            conn.execute(f"DELETE FROM {self._s}.snapshots WHERE snapshot_key = %s", (key,))

    def _row_tables(self) -> set[int]:
        rows = self._read("SELECT tablename FROM pg_tables WHERE schemaname = %s "
                          "AND tablename ~ '^subjects_[0-9]+$'", (self._schema,))
        return {int(str(name).removeprefix("subjects_")) for (name,) in rows}

    def _drop_rows(self, key: int) -> None:
        with self._writer() as conn, conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            conn.execute(f"DROP TABLE IF EXISTS {self._s}.subjects_{int(key)}")
