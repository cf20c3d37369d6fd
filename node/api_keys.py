"""The API keys lender applications present to this node's REST API, and what each may do.

A key is ``fck_<key_id>_<secret>``: the id lets the store fetch the one row to check, the
secret is 256 bits from :mod:`secrets`. Only SHA-256 of the whole key is stored. A slow
password hash (scrypt, argon2) exists to make guessing low-entropy passwords expensive; a
256-bit random secret cannot be guessed, so a fast hash is as strong here and keeps every
request cheap. Digests are compared with :func:`hmac.compare_digest`, and a lookup that finds
no row still compares (against a dummy) so that a missing, malformed, unknown, revoked or
expired key all fail the same way with one message: the answer is no oracle.

Keys are rotated in place (same id, name and scopes, new secret). With a grace period the old
secret keeps working until it ends, so a lender application can switch without downtime.
Revocation and rotation take effect on the next request, even when made from another process
(``fedcredit node api-keys``): every request reads the row, nothing is cached.

Keys from the old ``FEDCREDIT_NODE_API_KEYS`` setting can be imported as they are
(:meth:`ApiKeyStore.import_plaintext`): they are stored hashed from then on and, not having an
id, are found by their digest (an index lookup on SHA-256 of the key reveals nothing useful
about the key through its timing). Rotating an imported key issues an ``fck_`` key.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from fedcredit.clock import Clock, system_clock
from fedcredit.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from fedcredit.settings_base import check_secret
from fedcredit.sqlite import SqliteDatabase

TOKEN_PREFIX = "fck"
SECRET_BYTES = 32
KEY_ID = re.compile(r"^[0-9a-f]{16}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
#: Longer "keys" are refused before hashing anything.
MAX_TOKEN_CHARS = 256
#: What an imported key may contain: it travels in an HTTP header.
IMPORTABLE = re.compile(r"^[\x21-\x7e]+$")
#: ``last_used_ms`` is written at most this often per key, not on every request.
LAST_USED_RESOLUTION_MS = 60_000
#: A rotation's grace period is for switching an application over, not a second key.
MAX_GRACE_MS = 7 * 86_400_000
#: The one detail every authentication failure carries.
UNKNOWN_KEY_DETAIL = "missing, unknown, revoked or expired API key"
_DUMMY_HASH = hashlib.sha256(b"no such API key").digest()
#: Stands for a malformed token's digest; equal to no stored digest, nor to the dummy.
_NO_DIGEST = bytes(32)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    token_sha256 BLOB NOT NULL UNIQUE,
    previous_sha256 BLOB,
    previous_until_ms INTEGER,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    rotated_ms INTEGER,
    last_used_ms INTEGER,
    revoked_ms INTEGER,
    imported INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name)
    WHERE revoked_ms IS NULL;
CREATE INDEX IF NOT EXISTS api_keys_previous ON api_keys (previous_sha256);
"""
_COLUMNS = ("key_id, name, scopes, created_ms, expires_ms, rotated_ms, previous_until_ms, "
            "last_used_ms, revoked_ms, imported")
_SECRET_COLUMNS = "token_sha256, previous_sha256"


class ApiScope(StrEnum):
    EVALUATIONS_CREATE = "evaluations:create"
    EVALUATIONS_READ = "evaluations:read"
    #: The applicant inquiry-history endpoint.
    INQUIRIES_READ = "inquiries:read"


@dataclass(frozen=True)
class ApiKeyRecord:
    """A key's metadata: everything but its secret, which the store never has."""

    key_id: str
    name: str
    scopes: frozenset[ApiScope]
    created_ms: int
    expires_ms: int | None
    rotated_ms: int | None
    #: Until when the secret replaced by the last rotation still works (None: it does not).
    previous_until_ms: int | None
    last_used_ms: int | None
    revoked_ms: int | None
    #: Imported from ``FEDCREDIT_NODE_API_KEYS`` and not rotated since.
    imported: bool

    def expired(self, now_ms: int) -> bool:
        return self.expires_ms is not None and now_ms >= self.expires_ms

    def usable(self, now_ms: int) -> bool:
        return self.revoked_ms is None and not self.expired(now_ms)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _new_token(key_id: str) -> str:
    return f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def _key_id_of(token: str) -> str | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not KEY_ID.match(parts[1]):
        return None
    return parts[1]


def _scopes(scopes: Iterable[ApiScope | str]) -> frozenset[ApiScope]:
    try:
        parsed = frozenset(ApiScope(s) for s in scopes)
    except ValueError:
        known = ", ".join(s.value for s in ApiScope)
        raise InvalidRequestError(f"unknown scope; the scopes are {known}") from None
    if not parsed:
        raise InvalidRequestError("a key needs at least one scope")
    return parsed


def _encode_scopes(scopes: frozenset[ApiScope]) -> str:
    return " ".join(sorted(s.value for s in scopes))


def _from_row(row: tuple[Any, ...]) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row[0], name=row[1], scopes=frozenset(ApiScope(s) for s in row[2].split()),
        created_ms=row[3], expires_ms=row[4], rotated_ms=row[5], previous_until_ms=row[6],
        last_used_ms=row[7], revoked_ms=row[8], imported=bool(row[9]),
    )


def _create_private(path: Path) -> None:
    """The database file exists with mode 0600 before SQLite opens it; SQLite gives its WAL
    and shared-memory files the database file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


class ApiKeyStore:
    """A node's API keys, in their own SQLite file (WAL, fsync on commit, mode 0600)."""

    def __init__(self, path: Path, clock: Clock = system_clock) -> None:
        _create_private(path)
        self._db = SqliteDatabase(path, _SCHEMA)
        self._clock = clock

    def close(self) -> None:
        self._db.close()

    # -- requests ------------------------------------------------------------------------------
    def authenticate(self, token: str, needed_scope: ApiScope, now_ms: int) -> ApiKeyRecord:
        """The usable key ``token`` is, if it carries ``needed_scope``.

        Raises :class:`AuthenticationError` (one message, whatever the reason) or, for a
        genuine key without the scope, :class:`PermissionDeniedError`.
        """
        well_formed = 0 < len(token) <= MAX_TOKEN_CHARS
        digest = token_digest(token) if well_formed else _NO_DIGEST
        key_id = _key_id_of(token) if well_formed else None
        row = None
        if key_id is not None:
            row = self._db.one(f"SELECT {_COLUMNS}, {_SECRET_COLUMNS} FROM api_keys "
                               "WHERE key_id=?", (key_id,))
        elif well_formed and not token.startswith(f"{TOKEN_PREFIX}_"):
            row = self._db.one(f"SELECT {_COLUMNS}, {_SECRET_COLUMNS} FROM api_keys "
                               "WHERE token_sha256=? OR previous_sha256=?", (digest, digest))
        current = bytes(row[10]) if row is not None else _DUMMY_HASH
        previous = bytes(row[11]) if row is not None and row[11] is not None else _DUMMY_HASH
        # Both comparisons always run: which one matched must not show in the timing.
        is_current = hmac.compare_digest(digest, current)
        is_previous = hmac.compare_digest(digest, previous)
        record = _from_row(row[:10]) if row is not None else None
        if record is None or not record.usable(now_ms) or not (
            is_current or (is_previous and record.previous_until_ms is not None
                           and now_ms < record.previous_until_ms)
        ):
            raise AuthenticationError(UNKNOWN_KEY_DETAIL)
        record = self._touch(record, now_ms)
        if needed_scope not in record.scopes:
            raise PermissionDeniedError(f"this API key does not carry the {needed_scope.value} "
                                        "scope")
        return record

    def _touch(self, record: ApiKeyRecord, now_ms: int) -> ApiKeyRecord:
        """Record use at most once per :data:`LAST_USED_RESOLUTION_MS` (no write per request)."""
        last = record.last_used_ms
        if last is not None and now_ms - last < LAST_USED_RESOLUTION_MS:
            return record
        self._db.execute("UPDATE api_keys SET last_used_ms=? WHERE key_id=? AND "
                         "(last_used_ms IS NULL OR last_used_ms<=?)",
                         (now_ms, record.key_id, now_ms - LAST_USED_RESOLUTION_MS))
        return replace(record, last_used_ms=now_ms)

    # -- operator commands ---------------------------------------------------------------------
    def create(self, name: str, scopes: Iterable[ApiScope | str],
               expires_ms: int | None = None) -> tuple[ApiKeyRecord, str]:
        """A new key and its token: the only time the token exists outside its holder."""
        key_id = secrets.token_hex(8)
        token = _new_token(key_id)
        return self._insert(key_id, name, _scopes(scopes), token_digest(token), expires_ms,
                            imported=False), token

    def import_plaintext(self, name: str, token: str,
                         scopes: Iterable[ApiScope | str]) -> ApiKeyRecord:
        """Keep a key a lender application already holds (from ``FEDCREDIT_NODE_API_KEYS``).

        Placeholders and keys under 16 characters are refused whatever the environment: the
        store is where production keys live.
        """
        if len(token) > MAX_TOKEN_CHARS or not IMPORTABLE.match(token):
            raise InvalidRequestError(f"an API key is 1-{MAX_TOKEN_CHARS} printable ASCII "
                                      "characters without spaces")
        if token.startswith(f"{TOKEN_PREFIX}_"):
            raise InvalidRequestError(f"{TOKEN_PREFIX}_ keys are issued by this store; "
                                      "they cannot be imported")
        try:
            check_secret("the imported key", SecretStr(token), "prod")
        except ValueError:
            raise InvalidRequestError("the key is a placeholder or shorter than 16 characters; "
                                      "issue a new one instead (create)") from None
        return self._insert(secrets.token_hex(8), name, _scopes(scopes), token_digest(token),
                            None, imported=True)

    def rotate(self, key_id: str, grace_ms: int = 0) -> str:
        """A new secret for the key; the old one works for ``grace_ms`` more, then never.

        Only the secret just replaced gets a grace period: rotating again during one ends it.
        """
        if not 0 <= grace_ms <= MAX_GRACE_MS:
            raise InvalidRequestError(f"the grace period is 0 to {MAX_GRACE_MS // 86_400_000} "
                                      "days")
        now = self._clock()
        with self._db.transaction() as conn:
            record = self._get(conn, key_id)
            self._require_usable(record, now)
            token = _new_token(key_id)
            if grace_ms > 0:
                conn.execute("UPDATE api_keys SET previous_sha256=token_sha256, "
                             "previous_until_ms=?, token_sha256=?, rotated_ms=?, imported=0 "
                             "WHERE key_id=?", (now + grace_ms, token_digest(token), now, key_id))
            else:
                conn.execute("UPDATE api_keys SET previous_sha256=NULL, previous_until_ms=NULL, "
                             "token_sha256=?, rotated_ms=?, imported=0 WHERE key_id=?",
                             (token_digest(token), now, key_id))
        return token

    def revoke(self, key_id: str) -> ApiKeyRecord:
        """Final: the key (and any secret in its grace period) stops working now."""
        now = self._clock()
        with self._db.transaction() as conn:
            record = self._get(conn, key_id)
            if record.revoked_ms is not None:
                raise ConflictError(f"API key {key_id} is already revoked")
            conn.execute("UPDATE api_keys SET revoked_ms=?, previous_sha256=NULL, "
                         "previous_until_ms=NULL WHERE key_id=?", (now, key_id))
            return self._get(conn, key_id)

    def get(self, key_id: str) -> ApiKeyRecord:
        with self._db.transaction() as conn:
            return self._get(conn, key_id)

    def list(self) -> builtins.list[ApiKeyRecord]:
        """Every key, revoked and expired ones too (newest last)."""
        rows = self._db.all(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_ms, key_id")
        return [_from_row(r) for r in rows]

    # -- helpers -------------------------------------------------------------------------------
    def _insert(self, key_id: str, name: str, scopes: frozenset[ApiScope], digest: bytes,
                expires_ms: int | None, *, imported: bool) -> ApiKeyRecord:
        if not isinstance(name, str) or not NAME.match(name):
            raise InvalidRequestError("name must be 1-64 characters: letters, digits, "
                                      "space and ._@- (starting with a letter or digit)")
        now = self._clock()
        if expires_ms is not None and expires_ms <= now:
            raise InvalidRequestError("the expiry must be in the future")
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM api_keys WHERE name=? AND revoked_ms IS NULL",
                            (name,)).fetchone():
                raise ConflictError(f"an active API key named {name!r} already exists")
            if conn.execute("SELECT 1 FROM api_keys WHERE token_sha256=? OR previous_sha256=?",
                            (digest, digest)).fetchone():
                raise ConflictError("this API key is already stored")
            conn.execute(
                "INSERT INTO api_keys (key_id, name, scopes, token_sha256, created_ms, "
                "expires_ms, imported) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key_id, name, _encode_scopes(scopes), digest, now, expires_ms, int(imported)))
            return self._get(conn, key_id)

    @staticmethod
    def _get(conn: sqlite3.Connection, key_id: str) -> ApiKeyRecord:
        row = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id=?",
                           (key_id,)).fetchone()
        if row is None:
            raise ResourceNotFoundError(f"no API key {key_id!r}")
        return _from_row(row)

    @staticmethod
    def _require_usable(record: ApiKeyRecord, now_ms: int) -> None:
        if record.revoked_ms is not None:
            raise ConflictError(f"API key {record.key_id} is revoked")
        if record.expired(now_ms):
            raise ConflictError(f"API key {record.key_id} has expired; create a new one")
