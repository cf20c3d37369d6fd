"""The coordinator's member registry keeps each member's Paillier key with its DJN base, and
opens a database written before keys carried one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from coordinator.registry import SCHEMA, MemberRegistry
from fedcredit.sqlite import SqliteDatabase
from mpc.paillier import PaillierKeyPair, PaillierPublicKey

pytestmark = pytest.mark.unit

#: The members table as issue 6 left it: no paillier_hs column.
OLD_MEMBERS = """
CREATE TABLE members (
    member_id TEXT PRIMARY KEY, display_name TEXT NOT NULL, membership TEXT NOT NULL,
    joined_ms INTEGER NOT NULL, endpoint TEXT NOT NULL DEFAULT '', paillier_n BLOB,
    last_heartbeat_ms INTEGER NOT NULL DEFAULT 0, applied_version INTEGER NOT NULL DEFAULT 0,
    latency_ms REAL NOT NULL DEFAULT 0
);
"""


def registry_at(path: Path) -> MemberRegistry:
    return MemberRegistry(SqliteDatabase(path, SCHEMA), stale_after_ms=60_000)


def test_a_key_and_its_base_round_trip_and_a_new_base_bumps_the_directory(
    tmp_path: Path, keypair: PaillierKeyPair
) -> None:
    registry = registry_at(tmp_path / "c.sqlite3")
    with registry.db.transaction() as conn:
        MemberRegistry.add_member(conn, "bank-a", "Bank A", now_ms=1)
    bare = PaillierPublicKey.from_modulus(keypair.public.n)
    v1 = registry.announce("bank-a", "Bank A", "localhost:1", bare, now_ms=2)
    assert registry.get("bank-a", now_ms=3).public_key == bare
    assert registry.announce("bank-a", "Bank A", "localhost:1", bare, now_ms=4) == v1
    v2 = registry.announce("bank-a", "Bank A", "localhost:1", keypair.public, now_ms=5)
    assert v2 == v1 + 1  # nodes must learn the base: the directory changed
    stored = registry.get("bank-a", now_ms=6).public_key
    assert stored is not None and stored.hs == keypair.public.hs


def test_a_database_from_before_djn_bases_is_migrated_in_place(
    tmp_path: Path, keypair: PaillierKeyPair
) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_MEMBERS)
        conn.execute("INSERT INTO members (member_id, display_name, membership, joined_ms, "
                     "endpoint, paillier_n, last_heartbeat_ms) VALUES (?,?,?,?,?,?,?)",
                     ("bank-a", "Bank A", "ACTIVE", 1, "localhost:1",
                      keypair.public.to_bytes(), 2))
    registry = registry_at(path)
    old = registry.get("bank-a", now_ms=3).public_key
    assert old is not None and old.n == keypair.public.n and old.hs is None
    registry.announce("bank-a", "Bank A", "localhost:1", keypair.public, now_ms=4)
    assert registry_at(path).get("bank-a", now_ms=5).public_key == keypair.public
    assert not registry.db.add_missing_column("members", "paillier_hs", "BLOB")
