"""Who may call the coordinator's admin API, and in which role.

Principals are people and offices outside the member network (members speak gRPC and prove
who they are with their certificates): an **admin** configures the alliance, a **regulator**
reads the whole audit ledger and grants judicial access, a **judicial** authority reads only
the ledger entries a regulator granted it for a named case (:mod:`coordinator.grants`).

Tokens are ``fca_<principal_id>_<secret>``. The id lets the store fetch the one row to check
instead of comparing against every stored hash; the secret is 256 bits from :mod:`secrets`.
Only SHA-256 of the whole token is stored: with that much entropy a fast hash is as strong
as a slow password hash and keeps every request cheap. Hashes are compared in constant time,
and a lookup that finds no row still compares (against a dummy) so timing does not tell a
caller whether an id exists. Every create, rotate and revoke is an audit-ledger entry
(PRINCIPAL_CHANGE, never the token or its hash) committed in the same transaction as the
change: nothing is half-written.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from fedcredit.audit import EntryDraft, EntryKind, Receipt
from fedcredit.clock import Clock, system_clock
from fedcredit.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    ResourceNotFoundError,
)
from fedcredit.sqlite import SqliteDatabase

TABLE = """
CREATE TABLE IF NOT EXISTS admin_principals (
    principal_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    token_sha256 BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    rotated_ms INTEGER,
    revoked_ms INTEGER,
    revoked_reason TEXT NOT NULL DEFAULT ''
)
"""
COLUMNS = "principal_id, name, role, created_ms, created_by, rotated_ms, revoked_ms, revoked_reason"
TOKEN_PREFIX = "fca"
#: Who creates the first admin: the operator running ``fedcredit alliance init``, who holds
#: the data directory (and with it the CA key) and so needs no token to prove anything.
BOOTSTRAP_ACTOR = "alliance-init"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
PRINCIPAL_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_TOKEN_CHARS = 128
MAX_REASON = 200
#: Compared against when a token names no stored principal, so both paths do the same work.
_DUMMY_HASH = hashlib.sha256(b"no such principal").digest()


class Role(StrEnum):
    ADMIN = "admin"
    REGULATOR = "regulator"
    JUDICIAL = "judicial"


@dataclass(frozen=True)
class Principal:
    principal_id: str
    name: str
    role: Role
    created_ms: int
    created_by: str
    rotated_ms: int | None
    revoked_ms: int | None
    revoked_reason: str

    @property
    def active(self) -> bool:
        return self.revoked_ms is None

    @property
    def actor(self) -> str:
        """How the ledger names this principal: role and the stable id (the PRINCIPAL_CHANGE
        entry that created it maps the id to a human name)."""
        return f"{self.role.value}:{self.principal_id}"


@dataclass(frozen=True)
class IssuedToken:
    """A principal and its new token: the only time the token exists outside its holder."""

    principal: Principal
    token: str


class LedgerAppend(Protocol):
    """What the store needs of :class:`coordinator.ledger.AuditLedger`."""

    def append(self, draft: EntryDraft, *, now_ms: int,
               conn: sqlite3.Connection | None = None) -> Receipt: ...


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _new_token(principal_id: str) -> str:
    return f"{TOKEN_PREFIX}_{principal_id}_{secrets.token_urlsafe(32)}"


def _principal_id_of(token: str) -> str | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not PRINCIPAL_ID.match(parts[1]):
        return None
    return parts[1]


def _from_row(row: tuple[Any, ...]) -> Principal:
    return Principal(principal_id=row[0], name=row[1], role=Role(row[2]), created_ms=row[3],
                     created_by=row[4], rotated_ms=row[5], revoked_ms=row[6],
                     revoked_reason=row[7])


class PrincipalStore:
    """Principals and their hashed tokens, in the coordinator's database."""

    def __init__(self, db: SqliteDatabase, ledger: LedgerAppend,
                 clock: Clock = system_clock) -> None:
        self._db = db
        self._ledger = ledger
        self._clock = clock
        with db.transaction() as conn:
            conn.execute(TABLE)

    # -- reads ---------------------------------------------------------------------------------
    @staticmethod
    def lookup(conn: sqlite3.Connection, principal_id: str) -> Principal:
        """A principal, read inside the caller's transaction (grants check their grantee)."""
        row = conn.execute(f"SELECT {COLUMNS} FROM admin_principals WHERE principal_id=?",
                           (principal_id,)).fetchone()
        if row is None:
            raise ResourceNotFoundError(f"no principal {principal_id!r}")
        return _from_row(row)

    def get(self, principal_id: str) -> Principal:
        with self._db.transaction() as conn:
            return self.lookup(conn, principal_id)

    def all(self) -> list[Principal]:
        rows = self._db.all(f"SELECT {COLUMNS} FROM admin_principals ORDER BY created_ms, name")
        return [_from_row(r) for r in rows]

    def authenticate(self, token: str) -> Principal:
        """The active principal holding ``token``; one UNKNOWN_API_KEY error for every failure
        (malformed, unknown, wrong secret, rotated, revoked), so failures are not an oracle."""
        principal_id = _principal_id_of(token) if len(token) <= MAX_TOKEN_CHARS else None
        row = None
        if principal_id is not None:
            row = self._db.one(f"SELECT {COLUMNS}, token_sha256 FROM admin_principals "
                               "WHERE principal_id=?", (principal_id,))
        stored = bytes(row[8]) if row is not None else _DUMMY_HASH
        matches = hmac.compare_digest(token_digest(token), stored)
        if row is None or not matches or row[6] is not None:
            raise AuthenticationError("missing, unknown or revoked admin token")
        return _from_row(row[:8])

    # -- changes (each with its ledger entry, in one transaction) ------------------------------
    def bootstrap_admin(self, name: str) -> str:
        """The alliance's first admin token, for ``fedcredit alliance init``.

        Refused while any admin is active: bootstrapping must not be a second way in. If every
        admin was revoked, the operator who holds the data directory can bootstrap again (they
        hold the CA key too, so this grants them nothing new).
        """
        with self._db.transaction() as conn:
            active = conn.execute("SELECT COUNT(*) FROM admin_principals WHERE role=? "
                                  "AND revoked_ms IS NULL", (Role.ADMIN.value,)).fetchone()[0]
            if active:
                raise ConflictError("an admin already exists; ask an admin to create principals")
            return self._insert(conn, name, Role.ADMIN, BOOTSTRAP_ACTOR).token

    def create(self, name: str, role: Role, actor: str) -> IssuedToken:
        with self._db.transaction() as conn:
            return self._insert(conn, name, Role(role), actor)

    def rotate(self, principal_id: str, actor: str) -> IssuedToken:
        """A new token; the old one stops working when this commits."""
        now = self._clock()
        with self._db.transaction() as conn:
            principal = self._active(conn, principal_id)
            token = _new_token(principal_id)
            conn.execute("UPDATE admin_principals SET token_sha256=?, rotated_ms=? "
                         "WHERE principal_id=?", (token_digest(token), now, principal_id))
            self._record(conn, actor, {"action": "rotate", "principal_id": principal_id,
                                       "role": principal.role.value}, now)
            return IssuedToken(self.lookup(conn, principal_id), token)

    def revoke(self, principal_id: str, actor: str, reason: str) -> Principal:
        """Final. The last active admin cannot be revoked (nobody could configure anything)."""
        reason = _reason(reason)
        now = self._clock()
        with self._db.transaction() as conn:
            principal = self._active(conn, principal_id)
            if principal.role is Role.ADMIN:
                others = conn.execute(
                    "SELECT COUNT(*) FROM admin_principals WHERE role=? AND revoked_ms IS NULL "
                    "AND principal_id<>?", (Role.ADMIN.value, principal_id)).fetchone()[0]
                if not others:
                    raise ConflictError("the last active admin cannot be revoked; create "
                                        "another admin first")
            conn.execute("UPDATE admin_principals SET revoked_ms=?, revoked_reason=? "
                         "WHERE principal_id=?", (now, reason, principal_id))
            self._record(conn, actor, {"action": "revoke", "principal_id": principal_id,
                                       "role": principal.role.value, "reason": reason}, now)
            return self.lookup(conn, principal_id)

    # -- helpers -------------------------------------------------------------------------------
    def _insert(self, conn: sqlite3.Connection, name: str, role: Role,
                actor: str) -> IssuedToken:
        if not isinstance(name, str) or not NAME.match(name):
            raise InvalidRequestError("name must be 1-64 characters: letters, digits, "
                                      "space and ._@- (starting with a letter or digit)")
        if conn.execute("SELECT 1 FROM admin_principals WHERE name=?", (name,)).fetchone():
            raise ConflictError(f"a principal named {name!r} already exists")
        now = self._clock()
        principal_id = secrets.token_hex(8)
        token = _new_token(principal_id)
        conn.execute(
            "INSERT INTO admin_principals (principal_id, name, role, token_sha256, created_ms, "
            "created_by) VALUES (?, ?, ?, ?, ?, ?)",
            (principal_id, name, role.value, token_digest(token), now, actor))
        self._record(conn, actor, {"action": "create", "principal_id": principal_id,
                                   "name": name, "role": role.value}, now)
        return IssuedToken(self.lookup(conn, principal_id), token)

    def _active(self, conn: sqlite3.Connection, principal_id: str) -> Principal:
        principal = self.lookup(conn, principal_id)
        if not principal.active:
            raise ConflictError(f"principal {principal_id} is already revoked")
        return principal

    def _record(self, conn: sqlite3.Connection, actor: str, body: dict[str, Any],
                now: int) -> None:
        self._ledger.append(EntryDraft(EntryKind.PRINCIPAL_CHANGE, actor, body), now_ms=now,
                            conn=conn)


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not 0 < len(reason) <= MAX_REASON:
        raise InvalidRequestError(f"a reason of 1-{MAX_REASON} characters is required")
    return reason
