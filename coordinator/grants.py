"""Judicial access to the audit ledger: what a regulator granted, for which case, until when.

A judicial authority sees no ledger entry by default. A regulator grants it access for a named
case (a court order, an investigation) with an explicit scope: query ids and/or one member's
activity within a time window, and an expiry. A case read returns only the entries the case's
active grants cover, each with its inclusion proof against one signed tree head, so the reader
can check the coordinator did not make them up. Every grant, revocation and read is itself a
ledger entry (kind GRANT), committed before any data is returned: who read what under which
case is as auditable as the data.

Entries that record the trust plane's own administration (policy and principal changes,
grants and case reads) are never in a case: they would tell one case's reader about another.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from coordinator.ledger import MAX_PAGE, AuditLedger
from coordinator.principals import Principal, PrincipalStore, Role
from fedcredit.audit import EntryDraft, EntryKind, InclusionProof, LedgerEntry, SignedTreeHead
from fedcredit.clock import Clock, system_clock
from fedcredit.errors import (
    ConflictError,
    InvalidRequestError,
    LedgerRangeError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from fedcredit.sqlite import SqliteDatabase

TABLE = """
CREATE TABLE IF NOT EXISTS judicial_grants (
    grant_id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    grantee TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    legal_basis TEXT NOT NULL,
    query_ids TEXT NOT NULL,
    member_id TEXT,
    since_ms INTEGER,
    until_ms INTEGER,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER,
    revoked_by TEXT
)
"""
INDEX = "CREATE INDEX IF NOT EXISTS judicial_grants_by_case ON judicial_grants (case_id)"
COLUMNS = ("grant_id, case_id, grantee, granted_by, legal_basis, query_ids, member_id, "
           "since_ms, until_ms, created_ms, expires_ms, revoked_ms, revoked_by")
CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
MAX_QUERY_IDS = 100
MAX_TEXT = 200
#: Grants are for a case, not forever: a longer investigation renews its grant (recorded).
MAX_GRANT_MS = 366 * 24 * 3600 * 1000
#: Entries one case read returns at most (its ledger record lists their indices).
MAX_READ_ENTRIES = 200
#: Kinds never shown in a case (module docstring).
NEVER_IN_A_CASE = frozenset({EntryKind.POLICY_CHANGE, EntryKind.PRINCIPAL_CHANGE,
                             EntryKind.GRANT})
#: Body fields through which an entry names the members it concerns.
MEMBER_FIELDS = ("member_id", "requester_id")


def concerns(entry: LedgerEntry, member_id: str) -> bool:
    """Does the entry record something ``member_id`` did or underwent?"""
    body = entry.body
    route = body.get("route")
    return (entry.actor == member_id
            or any(body.get(name) == member_id for name in MEMBER_FIELDS)
            or (isinstance(route, list) and member_id in route))


@dataclass(frozen=True)
class GrantScope:
    query_ids: tuple[str, ...] = ()
    member_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        if not self.query_ids and self.member_id is None:
            raise InvalidRequestError("a grant names query ids, a member and a time window, "
                                      "or both")
        if len(self.query_ids) > MAX_QUERY_IDS or any(
                not isinstance(q, str) or not 0 < len(q) <= 64 for q in self.query_ids):
            raise InvalidRequestError(f"at most {MAX_QUERY_IDS} query ids of 1-64 characters")
        if self.member_id is None:
            if self.since_ms is not None or self.until_ms is not None:
                raise InvalidRequestError("a time window scopes a member's activity: name the "
                                          "member")
        elif self.since_ms is None or self.until_ms is None or not (
                0 <= self.since_ms < self.until_ms):
            raise InvalidRequestError("a member scope needs a time window with since_ms < "
                                      "until_ms")

    def covers(self, entry: LedgerEntry) -> bool:
        if entry.kind in NEVER_IN_A_CASE:
            return False
        if entry.query_id is not None and entry.query_id in self.query_ids:
            return True
        if self.member_id is None or self.since_ms is None or self.until_ms is None:
            return False
        return (self.since_ms <= entry.created_ms < self.until_ms
                and concerns(entry, self.member_id))

    def to_body(self) -> dict[str, Any]:
        return {"query_ids": list(self.query_ids), "member_id": self.member_id,
                "since_ms": self.since_ms, "until_ms": self.until_ms}


@dataclass(frozen=True)
class Grant:
    grant_id: str
    case_id: str
    grantee: str
    granted_by: str
    legal_basis: str
    scope: GrantScope
    created_ms: int
    expires_ms: int
    revoked_ms: int | None
    revoked_by: str | None

    def active_at(self, now_ms: int) -> bool:
        return self.revoked_ms is None and now_ms < self.expires_ms


@dataclass(frozen=True)
class CaseEntry:
    entry: LedgerEntry
    proof: InclusionProof


@dataclass(frozen=True)
class CaseRead:
    """One page of a case: the matching entries among ledger indices ``[start, next_start)``,
    proved against ``tree_head``. ``complete`` when that page reached the head."""

    case_id: str
    tree_head: SignedTreeHead
    entries: tuple[CaseEntry, ...]
    start: int
    next_start: int

    @property
    def complete(self) -> bool:
        return self.next_start >= self.tree_head.size


def _from_row(row: Sequence[Any]) -> Grant:
    scope = GrantScope(tuple(json.loads(row[5])), row[6], row[7], row[8])
    return Grant(grant_id=row[0], case_id=row[1], grantee=row[2], granted_by=row[3],
                 legal_basis=row[4], scope=scope, created_ms=row[9], expires_ms=row[10],
                 revoked_ms=row[11], revoked_by=row[12])


class GrantStore:
    def __init__(self, db: SqliteDatabase, ledger: AuditLedger, principals: PrincipalStore,
                 clock: Clock = system_clock) -> None:
        self._db = db
        self._ledger = ledger
        self._principals = principals
        self._clock = clock
        with db.transaction() as conn:
            conn.execute(TABLE)
            conn.execute(INDEX)

    # -- a regulator's changes -----------------------------------------------------------------
    def create(self, case_id: str, grantee: str, scope: GrantScope, expires_ms: int,
               legal_basis: str, actor: str) -> Grant:
        if not CASE_ID.match(case_id):
            raise InvalidRequestError("case_id must be 1-64 characters: letters, digits, ._:-")
        legal_basis = legal_basis.strip()
        if not 0 < len(legal_basis) <= MAX_TEXT:
            raise InvalidRequestError(f"legal_basis must be 1-{MAX_TEXT} characters")
        now = self._clock()
        if not now < expires_ms <= now + MAX_GRANT_MS:
            raise InvalidRequestError("expires_ms must be in the future, within 366 days")
        grant_id = str(uuid.uuid4())
        with self._db.transaction() as conn:
            principal = PrincipalStore.lookup(conn, grantee)
            if principal.role is not Role.JUDICIAL or not principal.active:
                raise ConflictError("the grantee must be an active judicial principal")
            conn.execute(
                f"INSERT INTO judicial_grants ({COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                (grant_id, case_id, grantee, actor, legal_basis, json.dumps(scope.query_ids),
                 scope.member_id, scope.since_ms, scope.until_ms, now, expires_ms))
            self._record(conn, actor, {
                "action": "grant", "grant_id": grant_id, "case_id": case_id, "grantee": grantee,
                "legal_basis": legal_basis, "scope": scope.to_body(), "expires_ms": expires_ms,
            }, now)
            return self._load(conn, grant_id)

    def revoke(self, grant_id: str, actor: str) -> Grant:
        now = self._clock()
        with self._db.transaction() as conn:
            grant = self._load(conn, grant_id)
            if grant.revoked_ms is not None:
                raise ConflictError("the grant is already revoked")
            conn.execute("UPDATE judicial_grants SET revoked_ms=?, revoked_by=? "
                         "WHERE grant_id=?", (now, actor, grant_id))
            self._record(conn, actor, {"action": "revoke_grant", "grant_id": grant_id,
                                       "case_id": grant.case_id}, now)
            return self._load(conn, grant_id)

    # -- reads -----------------------------------------------------------------------------
    def all(self, grantee: str | None = None) -> list[Grant]:
        sql = f"SELECT {COLUMNS} FROM judicial_grants"
        rows = (self._db.all(sql + " WHERE grantee=? ORDER BY created_ms", (grantee,))
                if grantee is not None else self._db.all(sql + " ORDER BY created_ms"))
        return [_from_row(r) for r in rows]

    def readable_grants(self, case_id: str, reader: Principal) -> list[Grant]:
        """The active grants through which ``reader`` may read ``case_id``.

        A judicial reader gets PERMISSION_DENIED alike for another authority's case, an
        expired or revoked grant and a case that does not exist (no oracle on case names).
        """
        now = self._clock()
        rows = self._db.all(f"SELECT {COLUMNS} FROM judicial_grants WHERE case_id=? "
                            "ORDER BY created_ms", (case_id,))
        grants = [g for g in map(_from_row, rows) if g.active_at(now)]
        if reader.role is Role.JUDICIAL:
            grants = [g for g in grants if g.grantee == reader.principal_id]
            if not grants:
                raise PermissionDeniedError(f"no active grant for case {case_id!r}")
        elif reader.role is Role.REGULATOR:
            if not grants:
                raise ResourceNotFoundError(f"no active grant for case {case_id!r}")
        else:
            raise PermissionDeniedError("only regulators and judicial authorities read cases")
        return grants

    def read_case(self, case_id: str, reader: Principal, start: int = 0,
                  limit: int = MAX_READ_ENTRIES) -> CaseRead:
        """The case's entries from ledger index ``start`` on, scanning at most one ledger page;
        the read is recorded in the ledger before anything is returned."""
        grants = self.readable_grants(case_id, reader)
        head = self._ledger.tree_head()
        if not 0 <= start <= head.size:
            raise LedgerRangeError("start is beyond the ledger's end")
        limit = max(1, min(limit, MAX_READ_ENTRIES))
        end = min(head.size, start + MAX_PAGE)
        matches, next_start = _scan(self._ledger.entries(start, end), grants, limit, end)
        self._ledger.append(EntryDraft(EntryKind.GRANT, reader.actor, {
            "action": "case_read", "case_id": case_id,
            "grant_ids": [g.grant_id for g in grants], "tree_size": head.size,
            "start": start, "end": next_start, "indices": [e.index for e in matches],
        }), now_ms=self._clock())
        proved = tuple(CaseEntry(e, self._ledger.inclusion_proof(e.index, head.size))
                       for e in matches)
        return CaseRead(case_id, head, proved, start, next_start)

    # -- helpers -----------------------------------------------------------------------------
    def _load(self, conn: sqlite3.Connection, grant_id: str) -> Grant:
        row = conn.execute(f"SELECT {COLUMNS} FROM judicial_grants WHERE grant_id=?",
                           (grant_id,)).fetchone()
        if row is None:
            raise ResourceNotFoundError(f"no grant {grant_id!r}")
        return _from_row(row)

    def _record(self, conn: sqlite3.Connection, actor: str, body: dict[str, Any],
                now: int) -> None:
        self._ledger.append(EntryDraft(EntryKind.GRANT, actor, body), now_ms=now, conn=conn)


def _scan(entries: Iterable[LedgerEntry], grants: Sequence[Grant], limit: int,
          end: int) -> tuple[list[LedgerEntry], int]:
    """Matching entries (up to ``limit``) and the index to continue from."""
    matches: list[LedgerEntry] = []
    for entry in entries:
        if any(g.scope.covers(entry) for g in grants):
            matches.append(entry)
            if len(matches) == limit:
                return matches, entry.index + 1
    return matches, end
