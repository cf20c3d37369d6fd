"""The versioned feature store against real databases: SQLite and a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import math
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from fedcredit.errors import FeatureStoreUnavailableError, SnapshotError, SnapshotNotFoundError
from node.ingest.snapshot import (
    EXPOSURE_COLUMNS,
    SubjectRecord,
    finish_snapshot,
    read_manifest,
    write_snapshot,
)
from node.store import FeatureStore, SnapshotState, open_store
from node.store.location import PostgresLocation, SqliteLocation, parse_store_url
from tests.support.postgres import schema_url

pytestmark = pytest.mark.integration
MEMBER = "bank"
FEATURES = ("income", "utilization")
Opener = Callable[..., FeatureStore]


def pseudonym(i: int) -> bytes:
    return hashlib.sha256(f"subject-{i}".encode()).digest()


def records(n: int, version: int) -> list[tuple[bytes, SubjectRecord]]:
    """Every subject carries ``version`` in an exposure and a feature; some lack a feature."""
    out = []
    for i in range(n):
        exposures = dict.fromkeys(EXPOSURE_COLUMNS, i)
        exposures["active_loans"] = version
        features = {"income": float(version)}
        if i % 3:
            features["utilization"] = i / 7 + version
        out.append((pseudonym(i), SubjectRecord(exposures, features)))
    return out


def snapshot(root: Path, rows: list[tuple[bytes, SubjectRecord]], member: str = MEMBER) -> Path:
    manifest = write_snapshot(root, rows, member_id=member, features=FEATURES,
                              as_of="2026-01-31", mode="feature_file")
    return root / manifest.snapshot_id


def version_of(record: SubjectRecord | None) -> int | None:
    if record is None:
        return None
    assert record.exposures["active_loans"] == record.features["income"]  # never a mix
    return record.exposures["active_loans"]


def row_tables(url: str) -> int:
    """How many snapshot rows tables the database holds, read behind the store's back."""
    location = parse_store_url(url)
    if isinstance(location, SqliteLocation):
        with sqlite3.connect(location.path) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                                    "AND name GLOB 'subjects_[0-9]*'").fetchone()[0])
    assert isinstance(location, PostgresLocation)
    with psycopg.connect(location.conninfo) as conn:
        row = conn.execute("SELECT COUNT(*) FROM pg_tables WHERE schemaname = %s "
                           "AND tablename ~ '^subjects_[0-9]+$'", (location.schema,)).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def opened(store_url: str) -> Iterator[Opener]:
    """Open stores on the test's URL (each call a separate store object and connections)."""
    stores: list[FeatureStore] = []

    def open_(**options: object) -> FeatureStore:
        store = open_store(store_url, MEMBER, **options)  # type: ignore[arg-type]
        stores.append(store)
        return store

    yield open_
    for store in stores:
        store.close()


def test_a_loaded_snapshot_serves_every_record_as_written(
    opened: Opener, store_url: str, tmp_path: Path
) -> None:
    rows = records(300, version=1)
    store = opened(batch_rows=64)
    assert store.active() is None and store.count() == 0 and store.lookup(pseudonym(0)) is None
    progress: list[int] = []
    info = store.load_snapshot(snapshot(tmp_path, rows), progress=progress.append)
    assert progress == [64, 128, 192, 256, 300]
    assert (info.state, info.active, info.subjects, info.features, info.member_id) == (
        SnapshotState.LOADED, True, 300, FEATURES, MEMBER)
    for key, record in rows:
        assert store.lookup(key) == record  # absent features stay absent, not zero
    assert store.lookup(pseudonym(300)) is None
    assert store.count() == 300
    other = opened()  # another connection sees the same active snapshot
    assert other.active() == info and other.lookup(rows[1][0]) == rows[1][1]


def test_a_chunk_is_read_in_one_call_exactly_as_one_by_one(
    opened: Opener, tmp_path: Path
) -> None:
    """lookup_many (portfolio jobs) answers row i for the i-th pseudonym asked, whatever order
    the database returns, with absent features NaN and unknown subjects not found."""
    rows = records(100, version=2)
    store = opened()
    store.load_snapshot(snapshot(tmp_path, rows))
    asked = [pseudonym(i) for i in (57, 3, 1000, 0, 99, 42, 1001)]
    batch = store.lookup_many(asked)
    assert batch.found.tolist() == [True, True, False, True, True, True, False]
    for i, key in enumerate(asked):
        record = store.lookup(key)
        if record is None:
            assert batch.exposures[i].tolist() == [0] * len(EXPOSURE_COLUMNS)
            assert all(math.isnan(batch.features[f][i]) for f in FEATURES)
            continue
        assert batch.exposures[i].tolist() == [record.exposures[c] for c in EXPOSURE_COLUMNS]
        for name in FEATURES:
            value = batch.features[name][i]
            assert (math.isnan(value) and name not in record.features) or (
                value == record.features[name])
    assert not store.lookup_many([pseudonym(5000)]).found.any()


def test_one_store_serves_many_threads_at_once(opened: Opener, tmp_path: Path) -> None:
    rows = records(64, version=1)
    store = opened()
    store.load_snapshot(snapshot(tmp_path, rows))
    wrong: list[int] = []

    def serve(offset: int) -> None:
        for i in range(150):
            key, record = rows[(offset + i) % len(rows)]
            if store.lookup(key) != record or store.lookup(pseudonym(1000 + i)) is not None:
                wrong.append(i)

    threads = [threading.Thread(target=serve, args=(k * 7,)) for k in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert wrong == [] and not any(t.is_alive() for t in threads)


def test_a_second_load_switches_atomically_under_concurrent_lookups(
    opened: Opener, tmp_path: Path
) -> None:
    n = 200
    writer, reader = opened(batch_rows=50), opened()
    writer.load_snapshot(snapshot(tmp_path, records(n, version=1)))
    seen: list[int | None] = []
    loading, overlapped, stop = threading.Event(), threading.Event(), threading.Event()

    def read() -> None:
        i = during = 0
        while not stop.is_set():
            seen.append(version_of(reader.lookup(pseudonym(i % n))))
            i += 1
            if loading.is_set():
                during += 1
                if during >= 20:
                    overlapped.set()

    thread = threading.Thread(target=read)
    thread.start()
    try:
        def hold(rows: int) -> None:  # keep the load open until the reader has read through it
            loading.set()
            assert overlapped.wait(10)

        writer.load_snapshot(snapshot(tmp_path, records(n, version=2)), progress=hold)
        target = len(seen) + 20
        while len(seen) < target and thread.is_alive():
            time.sleep(0.001)
    finally:
        stop.set()
        thread.join(10)
    assert None not in seen
    switch = seen.index(2)
    assert switch > 20 and set(seen[:switch]) == {1} and set(seen[switch:]) == {2}


def test_a_corrupt_snapshot_is_refused_and_nothing_changes(
    opened: Opener, tmp_path: Path
) -> None:
    store = opened()
    first = store.load_snapshot(snapshot(tmp_path, records(10, version=1)))
    corrupt = snapshot(tmp_path, records(10, version=2))
    part = next((corrupt / "subjects").glob("*.parquet"))
    part.write_bytes(part.read_bytes()[:-1] + b"\0")
    with pytest.raises(SnapshotError, match="does not match its hash"):
        store.load_snapshot(corrupt)
    duplicated = snapshot(tmp_path, records(10, version=3) + records(1, version=3))
    with pytest.raises(SnapshotError, match="pseudonym twice"):
        store.load_snapshot(duplicated)
    assert store.active() == first
    assert version_of(store.lookup(pseudonym(3))) == 1
    states = {i.snapshot_id: i.state for i in store.snapshots()}
    assert states == {first.snapshot_id: SnapshotState.LOADED,
                      duplicated.name: SnapshotState.FAILED}


def test_a_load_that_raises_midway_leaves_the_old_snapshot_serving(
    opened: Opener, store_url: str, tmp_path: Path
) -> None:
    store = opened(batch_rows=20)
    first = store.load_snapshot(snapshot(tmp_path, records(100, version=1)))
    broken = snapshot(tmp_path, records(100, version=2))

    def interrupt(rows: int) -> None:
        if rows >= 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.load_snapshot(broken, progress=interrupt)
    assert store.active() == first and store.count() == 100
    assert {version_of(store.lookup(pseudonym(i))) for i in range(100)} == {1}
    listed = {i.snapshot_id: i for i in store.snapshots()}
    assert listed[broken.name].state is SnapshotState.FAILED and not listed[broken.name].active
    opened()  # opening removes the partial rows; the failed entry stays listed
    assert broken.name in {i.snapshot_id for i in store.snapshots()}
    assert row_tables(store_url) == 1
    # The next load forgets the failed one.
    third = store.load_snapshot(snapshot(tmp_path, records(100, version=3)))
    assert {i.snapshot_id for i in store.snapshots()} == {first.snapshot_id, third.snapshot_id}
    assert row_tables(store_url) == 2
    assert version_of(store.lookup(pseudonym(5))) == 3


KILLED_LOAD = """
import os, signal, sys
from pathlib import Path
from node.store import open_store
store = open_store(sys.argv[1], "bank", batch_rows=20)
store.load_snapshot(Path(sys.argv[2]), progress=lambda rows: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_a_killed_load_is_listed_incomplete_and_cleaned_up_on_the_next_open(
    opened: Opener, store_url: str, tmp_path: Path
) -> None:
    store = opened()
    first = store.load_snapshot(snapshot(tmp_path, records(100, version=1)))
    killed = snapshot(tmp_path, records(100, version=2))
    done = subprocess.run([sys.executable, "-c", KILLED_LOAD, store_url, str(killed)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == -9, done.stderr
    listed = {i.snapshot_id: i.state for i in store.snapshots()}
    assert listed == {first.snapshot_id: SnapshotState.LOADED,
                      killed.name: SnapshotState.INCOMPLETE}
    assert store.active() == first and version_of(store.lookup(pseudonym(7))) == 1
    opened()  # the next open cleans up (the dead loader no longer holds the load lock)
    listed = {i.snapshot_id: i.state for i in store.snapshots()}
    assert listed == {first.snapshot_id: SnapshotState.LOADED,
                      killed.name: SnapshotState.FAILED}
    assert row_tables(store_url) == 1
    assert store.load_snapshot(killed).active  # and the snapshot itself loads fine
    assert {i.state for i in store.snapshots()} == {SnapshotState.LOADED}


def test_rollback_retention_and_reload_from_the_snapshot_directory(
    opened: Opener, store_url: str, tmp_path: Path
) -> None:
    store, server = opened(retain=2), opened()
    a, b, c = (store.load_snapshot(snapshot(tmp_path, records(30, version=v))) for v in (1, 2, 3))
    states = {i.snapshot_id: i.state for i in store.snapshots()}
    assert states == {a.snapshot_id: SnapshotState.PRUNED, b.snapshot_id: SnapshotState.LOADED,
                      c.snapshot_id: SnapshotState.LOADED}
    assert row_tables(store_url) == 2
    assert version_of(server.lookup(pseudonym(1))) == 3

    assert store.rollback(b.snapshot_id).active  # retained: switched at once
    assert server.active() == store.active() == b  # b as it was when first activated
    assert version_of(server.lookup(pseudonym(1))) == 2 and server.count() == 30

    rolled = store.rollback(a.snapshot_id)  # pruned: reloaded from its directory
    assert (rolled.state, rolled.active) == (SnapshotState.LOADED, True)
    assert version_of(server.lookup(pseudonym(1))) == 1
    states = {i.snapshot_id: i.state for i in store.snapshots()}
    assert states[b.snapshot_id] is SnapshotState.PRUNED  # the two latest loads are a and c
    assert row_tables(store_url) == 2

    with pytest.raises(SnapshotNotFoundError, match="no snapshot nope"):
        store.rollback("nope")
    shutil.rmtree(b.source_dir)
    with pytest.raises(SnapshotNotFoundError, match="no longer exists"):
        store.rollback(b.snapshot_id)
    assert version_of(server.lookup(pseudonym(1))) == 1


def test_loading_a_known_snapshot_again_reactivates_it_and_a_different_one_is_refused(
    opened: Opener, tmp_path: Path
) -> None:
    store = opened()
    first = snapshot(tmp_path, records(10, version=1))
    store.load_snapshot(first)
    store.load_snapshot(snapshot(tmp_path, records(10, version=2)))
    again = store.load_snapshot(first)
    assert again.active and again.snapshot_id == first.name and len(store.snapshots()) == 2
    assert version_of(store.lookup(pseudonym(0))) == 1
    # Same id, other contents: written elsewhere, renamed, its manifest rewritten to match.
    written = snapshot(tmp_path / "elsewhere", records(12, version=3))
    stats = read_manifest(written).features
    impostor = written.rename(written.with_name(first.name))
    finish_snapshot(impostor, subjects=12, stats=stats, member_id=MEMBER, as_of="2026-01-31",
                    mode="feature_file", sources=(), pipeline={}, created=datetime.now(UTC))
    with pytest.raises(SnapshotError, match="different snapshot with id"):
        store.load_snapshot(impostor)
    assert version_of(store.lookup(pseudonym(0))) == 1


def test_another_members_snapshot_is_refused(opened: Opener, tmp_path: Path) -> None:
    store = opened()
    with pytest.raises(SnapshotError, match="is member shop's snapshot"):
        store.load_snapshot(snapshot(tmp_path, records(5, version=1), member="shop"))
    assert store.snapshots() == [] and store.active() is None


def test_postgres_down_is_unavailable_and_the_password_is_never_shown() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    password = "s3cret-Pa55word"
    url = f"postgresql://fedcredit:{password}@127.0.0.1:{port}/fedcredit?schema=bank"
    with pytest.raises(FeatureStoreUnavailableError) as info:
        open_store(url, MEMBER)
    shown = f"{info.value.detail} {info.value!r}"
    assert password not in shown and f"fedcredit:***@127.0.0.1:{port}" in shown
    assert info.value.__suppress_context__  # the driver's exception is not chained into logs


def test_lost_postgres_connections_are_replaced_on_the_next_lookup(
    postgres_url: str, tmp_path: Path
) -> None:
    url = schema_url(postgres_url)
    store = open_store(url, MEMBER)
    try:
        rows = records(5, version=1)
        store.load_snapshot(snapshot(tmp_path, rows))
        assert store.lookup(rows[0][0]) == rows[0][1]  # a pooled session, statement prepared
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'fedcredit-feature-store'").fetchone()
        assert killed is not None and killed[0] >= 1
        assert store.lookup(rows[1][0]) == rows[1][1]
        assert store.lookup(pseudonym(99)) is None and store.count() == 5
    finally:
        store.close()


def test_a_role_that_owns_only_its_schema_can_run_the_store(
    postgres_url: str, tmp_path: Path
) -> None:
    """The setup docs/operations.md recommends: no CREATE on the database, one schema."""
    name = schema_url(postgres_url, prefix="member").rsplit("=", 1)[1]
    password = "member-Pa55-word"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        admin.execute("REVOKE CREATE ON DATABASE fedcredit FROM PUBLIC")
        admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    host = postgres_url.split("@", 1)[1]
    store = open_store(f"postgresql://{name}:{password}@{host}?schema={name}", MEMBER)
    try:
        rows = records(3, version=1)
        store.load_snapshot(snapshot(tmp_path, rows))
        assert store.lookup(rows[2][0]) == rows[2][1]
    finally:
        store.close()
