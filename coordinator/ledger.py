"""The alliance's audit ledger: an append-only RFC 6962 Merkle log in the coordinator's SQLite.

It lives in the same database file as the registry so that a registry change and the entry that
records it commit in one transaction: :meth:`AuditLedger.append` takes the caller's connection
from ``db.transaction()``, or commits its own — together with the appends other threads make at
the same moment (group commit: one transaction, one fsync and one signed head for all of them).
Nothing but that queue is held in memory — every append reads the log's right edge from the
tables — so a rolled-back caller leaves no trace.

Each append stores the entries, every complete ("perfect") subtree they close (the
``ledger_nodes`` table, ``(level, position) -> hash``; level 0 is the entries' own
``leaf_hash``), and one signed tree head for the new size. Proofs are then assembled from at
most ~2·log2(n) stored subtrees: a proof at a million entries reads ~40 rows, never the leaves.
:mod:`coordinator.audit_verify` recomputes all of it from the rows to detect tampering.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedcredit.audit import (
    ConsistencyProof,
    EntryDraft,
    EntryKind,
    InclusionProof,
    LedgerEntry,
    Receipt,
    SignedTreeHead,
)
from fedcredit.errors import InvalidRequestError, LedgerRangeError, LedgerTamperedError
from fedcredit.sqlite import SqliteDatabase
from mpc.merkle import (
    Frontier,
    SubtreeHash,
    consistency_path,
    frontier_coordinates,
    inclusion_path,
    subtree_from_nodes,
)
from mpc.signing import Signer

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_entries (
    idx INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    query_id TEXT,
    subject_tag BLOB,
    body TEXT NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_entries_by_kind_time ON ledger_entries (kind, created_ms);
CREATE INDEX IF NOT EXISTS ledger_entries_by_query ON ledger_entries (query_id)
    WHERE query_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS ledger_plans_by_query ON ledger_entries (query_id)
    WHERE kind = 'plan';
CREATE TABLE IF NOT EXISTS ledger_nodes (
    level INTEGER NOT NULL,
    position INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_tree_heads (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    signature BLOB NOT NULL
);
"""
ENTRY_COLUMNS = "idx, created_ms, kind, actor, query_id, subject_tag, body, leaf_hash"
HEAD_COLUMNS = "size, root, timestamp_ms, key_id, signature"
#: The most entries one :meth:`AuditLedger.entries` call returns (readers page through).
MAX_PAGE = 10_000


@dataclass(frozen=True)
class ConsentTag:
    index: int
    query_id: str | None
    subject_tag: bytes


def entry_from_row(row: Sequence[Any]) -> LedgerEntry:
    """A stored row as an entry; raises ValueError/TypeError if the row is not well formed."""
    body = json.loads(row[6])
    if not isinstance(body, dict):
        raise ValueError("body is not an object")
    return LedgerEntry(index=row[0], created_ms=row[1], kind=EntryKind(row[2]), actor=row[3],
                       query_id=row[4], subject_tag=None if row[5] is None else bytes(row[5]),
                       body=body, leaf_hash=bytes(row[7]))


def head_from_row(row: Sequence[Any]) -> SignedTreeHead:
    return SignedTreeHead(size=row[0], root=bytes(row[1]), timestamp_ms=row[2], key_id=row[3],
                          signature=bytes(row[4]))


def _entry_row(entry: LedgerEntry, body_json: bytes) -> tuple[Any, ...]:
    return (entry.index, entry.created_ms, entry.kind.value, entry.actor, entry.query_id,
            entry.subject_tag, body_json.decode("utf-8"), entry.leaf_hash)


def _node_query(level: int, position: int) -> tuple[str, tuple[int, ...]]:
    """Level 0 is the entries' own leaf hash; complete subtrees above it have their table."""
    if level == 0:
        return "SELECT leaf_hash FROM ledger_entries WHERE idx = ?", (position,)
    return ("SELECT hash FROM ledger_nodes WHERE level = ? AND position = ?",
            (level, position))


def _node_hash(row: Sequence[Any] | None) -> bytes:
    if row is None:
        raise LedgerTamperedError("a stored ledger subtree is missing")
    return bytes(row[0])


def _stored_node(conn: sqlite3.Connection, level: int, position: int) -> bytes:
    return _node_hash(conn.execute(*_node_query(level, position)).fetchone())


@dataclass
class _Pending:
    """One caller's batch waiting for a group commit."""

    drafts: list[EntryDraft]
    now_ms: int
    done: threading.Event = field(default_factory=threading.Event)
    receipts: list[Receipt] | None = None
    error: BaseException | None = None


class AuditLedger:
    """The durable log. Thread-safe through the database's lock; holds no state of its own
    beyond the queue of appends waiting for a group commit."""

    def __init__(self, db: SqliteDatabase, signer: Signer) -> None:
        self._db = db
        self._signer = signer
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._leading = False
        with db.transaction() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    # -- appending ------------------------------------------------------------------------

    def append(self, draft: EntryDraft, *, now_ms: int,
               conn: sqlite3.Connection | None = None) -> Receipt:
        """Record one entry and sign the new tree head.

        With ``conn`` (from the caller's ``db.transaction()``) the entry commits or rolls back
        with the caller's own writes; without, it is committed (fsync'd) before returning.
        """
        return self.append_many([draft], now_ms=now_ms, conn=conn)[0]

    def append_many(self, drafts: Iterable[EntryDraft], *, now_ms: int,
                    conn: sqlite3.Connection | None = None) -> list[Receipt]:
        """Record several entries in one transaction under one signed tree head (bulk use).

        An empty batch records nothing and signs no head.
        """
        batch = list(drafts)
        if not batch:
            return []
        if conn is None:
            return self._group_commit(batch, now_ms)
        if not conn.in_transaction:
            raise ValueError("conn must come from an open db.transaction()")
        return self._append(conn, batch, now_ms)

    def _group_commit(self, batch: list[EntryDraft], now_ms: int) -> list[Receipt]:
        """Commit ``batch`` durably, together with whatever other threads are appending.

        Group commit: the first caller to find no commit under way leads — it takes every
        queued batch, appends them all in one transaction under one signed tree head (one
        fsync), hands each caller its receipts, and repeats until the queue is empty; the others
        wait. Each caller still returns only once its entries are durable. If a group fails,
        its batches are retried one by one, so one bad batch fails only its own caller.
        """
        pending = _Pending(batch, now_ms)
        with self._queue_lock:
            self._queue.append(pending)
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.receipts is not None
        return pending.receipts

    def _lead(self) -> None:
        while True:
            with self._queue_lock:
                group, self._queue = self._queue, []
                if not group:
                    self._leading = False
                    return
            try:
                with self._db.transaction() as conn:
                    receipts = self._append(conn, [d for p in group for d in p.drafts],
                                            max(p.now_ms for p in group))
            except BaseException as exc:
                if len(group) == 1:
                    group[0].error = exc
                    group[0].done.set()
                    continue
                for one in group:
                    try:
                        with self._db.transaction() as conn:
                            one.receipts = self._append(conn, one.drafts, one.now_ms)
                    except BaseException as single:
                        one.error = single
                    one.done.set()
                continue
            start = 0
            for one in group:
                one.receipts = receipts[start:start + len(one.drafts)]
                start += len(one.drafts)
                one.done.set()

    def _append(self, conn: sqlite3.Connection, drafts: list[EntryDraft],
                now_ms: int) -> list[Receipt]:
        latest = conn.execute(f"SELECT {HEAD_COLUMNS} FROM ledger_tree_heads "
                              "ORDER BY size DESC LIMIT 1").fetchone()
        size = 0 if latest is None else int(latest[0])
        # Time never runs backwards in the log, whatever the clock did.
        created_ms = now_ms if latest is None else max(now_ms, int(latest[2]))
        edge = frontier_coordinates(size)
        edge_hashes = tuple(_stored_node(conn, *c) for c in edge)
        frontier = Frontier(size, edge_hashes)
        if latest is not None and frontier.root() != bytes(latest[1]):
            raise LedgerTamperedError("the ledger's stored subtrees do not match its head")
        entries = [LedgerEntry.from_draft(d, size + i, created_ms) for i, d in enumerate(drafts)]
        frontier, created = frontier.extend(e.leaf_hash for e in entries)
        try:
            conn.executemany(f"INSERT INTO ledger_entries ({ENTRY_COLUMNS}) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             [_entry_row(e, d.body_json)
                              for e, d in zip(entries, drafts, strict=True)])
        except sqlite3.IntegrityError:  # the only constraint an entry can break
            raise InvalidRequestError("a plan with this query id is in the ledger already"
                                      ) from None
        conn.executemany("INSERT INTO ledger_nodes (level, position, hash) VALUES (?, ?, ?)",
                         [tuple(n) for n in created if n.level > 0])
        head = SignedTreeHead.sign(frontier.size, frontier.root(), created_ms, self._signer)
        conn.execute(f"INSERT INTO ledger_tree_heads ({HEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                     (head.size, head.root, head.timestamp_ms, head.key_id, head.signature))
        # The receipts' proofs only need subtrees this batch closed and the old right edge.
        nodes = dict(zip(edge, edge_hashes, strict=True))
        nodes.update(((n.level, n.position), n.hash) for n in created)

        def node(level: int, position: int) -> bytes:
            found = nodes.get((level, position))
            return _stored_node(conn, level, position) if found is None else found

        subtree = subtree_from_nodes(node)
        right_edge: dict[tuple[int, int], bytes] = {}  # shared by every receipt of the batch

        def memoized(start: int, end: int) -> bytes:
            found = right_edge.get((start, end))
            if found is None:
                found = right_edge[start, end] = subtree(start, end)
            return found

        return [Receipt(e.index, created_ms, e.leaf_hash, head,
                        inclusion_path(e.index, head.size, memoized)) for e in entries]

    # -- reading --------------------------------------------------------------------------

    def size(self) -> int:
        row = self._db.one("SELECT MAX(size) FROM ledger_tree_heads")
        return 0 if row is None or row[0] is None else int(row[0])

    def tree_head(self, size: int | None = None) -> SignedTreeHead:
        """The latest signed tree head, or the one signed when the log reached ``size``."""
        if size is None:
            row = self._db.one(f"SELECT {HEAD_COLUMNS} FROM ledger_tree_heads "
                               "ORDER BY size DESC LIMIT 1")
        else:
            row = self._db.one(f"SELECT {HEAD_COLUMNS} FROM ledger_tree_heads WHERE size = ?",
                               (size,))
        if row is None:
            raise LedgerRangeError("no signed tree head for that size")
        return head_from_row(row)

    def entry(self, index: int) -> LedgerEntry:
        row = self._db.one(f"SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE idx = ?",
                           (index,))
        if row is None:
            raise LedgerRangeError("no ledger entry at that index")
        return _read(row)

    def entries(self, start: int, end: int, kinds: Iterable[EntryKind] | None = None,
                actor: str | None = None, query_id: str | None = None) -> list[LedgerEntry]:
        """Entries with ``start <= index < end`` (at most :data:`MAX_PAGE` indices), filtered."""
        if not 0 <= start <= end <= self.size() or end - start > MAX_PAGE:
            raise LedgerRangeError(f"ledger ranges are within the log, at most {MAX_PAGE}")
        sql = f"SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE idx >= ? AND idx < ?"
        params: list[Any] = [start, end]
        if kinds is not None:
            wanted = [EntryKind(k).value for k in kinds]
            sql += f" AND kind IN ({', '.join('?' * len(wanted))})" if wanted else " AND 0"
            params += wanted
        if actor is not None:
            sql += " AND actor = ?"
            params.append(actor)
        if query_id is not None:
            sql += " AND query_id = ?"
            params.append(query_id)
        return [_read(row) for row in self._db.all(sql + " ORDER BY idx", params)]

    def first_of(self, kind: EntryKind, query_id: str) -> LedgerEntry | None:
        """The first entry of ``kind`` for ``query_id`` (e.g. the plan an evaluation ran on)."""
        row = self._db.one(f"SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE query_id = ? "
                           "AND kind = ? ORDER BY idx LIMIT 1", (query_id, kind.value))
        return None if row is None else _read(row)

    def consent_tags(self, since_ms: int, until_ms: int) -> list[ConsentTag]:
        """Every consent's opaque subject tag recorded in ``[since_ms, until_ms)``.

        How an applicant's inquiry history is answered without the coordinator learning who
        the applicant is: the applicant's member recomputes its HMAC tags and matches them.
        """
        if since_ms > until_ms:
            raise LedgerRangeError("the time range is reversed")
        rows = self._db.all(
            "SELECT idx, query_id, subject_tag FROM ledger_entries WHERE kind = ? "
            "AND created_ms >= ? AND created_ms < ? AND subject_tag IS NOT NULL ORDER BY idx",
            (EntryKind.CONSENT.value, since_ms, until_ms))
        return [ConsentTag(row[0], row[1], bytes(row[2])) for row in rows]

    def inclusion_proof(self, index: int, size: int) -> InclusionProof:
        if not 0 <= index < size <= self.size():
            raise LedgerRangeError("no such entry in a tree of that size")
        return InclusionProof(index, size, inclusion_path(index, size, self._subtree()))

    def consistency_proof(self, old_size: int, new_size: int) -> ConsistencyProof:
        if not 0 < old_size <= new_size <= self.size():
            raise LedgerRangeError("need 0 < old size <= new size <= the log's size")
        return ConsistencyProof(old_size, new_size,
                                consistency_path(old_size, new_size, self._subtree()))

    def _subtree(self) -> SubtreeHash:
        # Committed subtrees never change, so reading them one lock at a time is consistent.
        return subtree_from_nodes(
            lambda level, position: _node_hash(self._db.one(*_node_query(level, position))))


def _read(row: Sequence[Any]) -> LedgerEntry:
    try:
        return entry_from_row(row)
    except (ValueError, TypeError):
        raise LedgerTamperedError("a ledger row is not well formed") from None
