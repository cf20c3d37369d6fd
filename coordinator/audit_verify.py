"""Recompute the audit ledger from its rows and name the first place it was altered.

Run by an auditor or regulator against a copy of (or the live) coordinator database, opened
read-only. One pass in index order replays every append: the entry's canonical bytes must hash
to its stored leaf hash, every complete subtree the entry closes must equal the stored one, and
whenever the log reaches a size that has a signed tree head, the recomputed root must equal the
head's root and the head's signature must verify under the key it names. Failures are
attributed to the append that wrote the bad row (a subtree or a head written with entry ``i``
names ``i``), so the answer is the first append whose record does not hold up.

What this cannot catch alone: an operator holding the signing key who rewrites the tables and
re-signs every head. Members' receipts catch that (:func:`fedcredit.audit.check_receipts`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from coordinator.ledger import ENTRY_COLUMNS, HEAD_COLUMNS, head_from_row
from fedcredit.audit import EntryKind, encode_entry, verify_tree_head
from fedcredit.errors import ConfigurationError, InvalidSignature
from mpc.merkle import EMPTY_ROOT, leaf_hash, node_hash
from mpc.pki import CertRole, load_certificate, verify_certificate
from mpc.signing import Verifier

#: Rows fetched per round trip while streaming the entries.
FETCH_ROWS = 4_096


@dataclass(frozen=True)
class LedgerVerification:
    ok: bool
    entries_checked: int
    heads_checked: int
    first_bad_index: int | None
    reason: str | None


class _Bad(Exception):  # noqa: N818 - internal control flow, never escapes this module
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def verify_ledger(db_path: Path, verifiers: Mapping[str, Verifier]) -> LedgerVerification:
    """Replay the whole ledger in ``db_path``; ``verifiers`` maps key ids to coordinator keys
    (every key that ever signed a head: rotation keeps old heads valid)."""
    if not db_path.is_file():
        raise ConfigurationError(f"no database at {db_path}")
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True,
                           isolation_level=None)
    try:
        conn.execute("BEGIN")  # one snapshot for every cursor, even while the coordinator writes
        replay = _Replay(conn, verifiers)
        try:
            replay.run()
        except _Bad as bad:
            return LedgerVerification(False, replay.entries_checked, replay.heads_checked,
                                      bad.index, bad.reason)
        return LedgerVerification(True, replay.entries_checked, replay.heads_checked, None,
                                  None)
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            return LedgerVerification(False, 0, 0, 0, "the ledger tables are missing")
        raise
    finally:
        conn.close()


class _Replay:
    def __init__(self, conn: sqlite3.Connection, verifiers: Mapping[str, Verifier]) -> None:
        self._conn = conn
        self._verifiers = verifiers
        self._levels: dict[int, Iterator[tuple[int, bytes]]] = {}
        self._edge: list[bytes] = []  # the right edge of the replayed tree (see mpc.merkle)
        self.size = 0
        self.entries_checked = 0
        self.heads_checked = 0
        self._last_timestamp = -1
        self._last_signed = 0

    def run(self) -> None:
        heads = self._conn.execute(
            f"SELECT {HEAD_COLUMNS} FROM ledger_tree_heads ORDER BY size")
        head = heads.fetchone()
        entries = self._conn.execute(
            f"SELECT {ENTRY_COLUMNS} FROM ledger_entries ORDER BY idx")
        while rows := entries.fetchmany(FETCH_ROWS):
            for row in rows:
                self._entry(row)
                while head is not None and head[0] <= self.size:
                    self._head(head)
                    head = heads.fetchone()
                self.entries_checked += 1
        if head is not None:
            raise _Bad(self.size, f"a signed tree head covers {head[0]} entries; "
                                  f"only {self.size} are stored")
        if self._last_signed != self.size:
            raise _Bad(self._last_signed, "entries were added without a signed tree head")
        expected = sum(self.size >> level for level in range(1, self.size.bit_length()))
        stored = self._conn.execute("SELECT COUNT(*) FROM ledger_nodes").fetchone()[0]
        if stored != expected:
            raise _Bad(self.size, "stored subtrees that no entry accounts for")

    def _entry(self, row: tuple[Any, ...]) -> None:
        index = self.size
        if row[0] != index:
            raise _Bad(index, "entry missing (indices are not contiguous)")
        try:
            # The stored body text is spliced in as is: any edit changes the hashed bytes.
            # (Re-parsing it to check canonical form cost 40 % of the replay and guards only
            # against the writer, whose entries members re-encode and check themselves.)
            computed = leaf_hash(encode_entry(index, row[1], EntryKind(row[2]), row[3], row[4],
                                              None if row[5] is None else bytes(row[5]),
                                              row[6].encode("utf-8")))
        except (ValueError, TypeError, AttributeError):
            raise _Bad(index, "entry row is not well formed") from None
        if computed != row[7]:
            raise _Bad(index, "entry does not match its leaf hash")
        current, level = computed, 0
        while (index >> level) & 1:  # replay the append: close each subtree it completes
            current = node_hash(self._edge.pop(), current)
            level += 1
            stored = next(self._level(level), None)
            if stored != (((index + 1) >> level) - 1, current):
                raise _Bad(index, f"stored subtree at level {level} does not match the entries")
        self._edge.append(current)
        self.size += 1

    def _level(self, level: int) -> Iterator[tuple[int, bytes]]:
        if level not in self._levels:
            cursor = self._conn.execute(
                "SELECT position, hash FROM ledger_nodes WHERE level = ? ORDER BY position",
                (level,))
            self._levels[level] = iter(cursor)
        return self._levels[level]

    def _root(self) -> bytes:
        if not self._edge:
            return EMPTY_ROOT
        root = self._edge[-1]
        for left in reversed(self._edge[:-1]):
            root = node_hash(left, root)
        return root

    def _head(self, row: tuple[Any, ...]) -> None:
        index = self.size - 1
        try:
            head = head_from_row(row)
        except (TypeError, ValueError):
            raise _Bad(index, "signed tree head row is not well formed") from None
        if head.size != self.size:
            raise _Bad(index, f"signed tree head for size {head.size} is out of place")
        if head.root != self._root():
            raise _Bad(index, f"signed tree head for size {head.size}: root does not match")
        verifier = self._verifiers.get(head.key_id)
        if verifier is None:
            raise _Bad(index, f"signed tree head for size {head.size}: unknown key")
        try:
            verify_tree_head(head, verifier)
        except InvalidSignature:
            raise _Bad(index, f"signed tree head for size {head.size}: bad signature") from None
        if head.timestamp_ms < self._last_timestamp:
            raise _Bad(index, f"signed tree head for size {head.size}: time runs backwards")
        self._last_timestamp = head.timestamp_ms
        self._last_signed = head.size
        self.heads_checked += 1


def coordinator_verifiers(db_path: Path, ca_certificate: x509.Certificate) -> dict[str, Verifier]:
    """Every key the coordinator ever signed tree heads with (expired certificates included),
    each certificate checked against the alliance CA; read-only, like the replay itself."""
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT pem, issued_ms FROM certificates WHERE role = ?",
                            (CertRole.COORDINATOR.value,)).fetchall()
    finally:
        conn.close()
    verifiers: dict[str, Verifier] = {}
    for pem, issued_ms in rows:
        identity = verify_certificate(load_certificate(bytes(pem)), ca_certificate, issued_ms)
        verifiers[identity.verifier.key_id] = identity.verifier
    return verifiers
