"""This member's part of the alliance audit ledger: what it records, and the receipts it keeps.

The requester's consent to an inquiry is in the ledger *before* anything is routed (no inquiry
without its ledger entry): sent with the plan request and committed with the plan, or
recorded synchronously here (:meth:`AuditTrail.record`). Contribution digests and completions
go through a local outbox, flushed in batches by a background thread, so a hop's latency never
waits on the coordinator and a coordinator outage loses nothing. By default an outbox entry
does not wait for the disk either (``sync="batch"``): it survives a crash of the node's process
at once, and a crash of its machine once the flusher has synced the outbox — on its next round,
about a flush interval later while the coordinator answers; while it does not, the flusher
syncs after each failed send (every second or so, or after the call's deadline if the
coordinator hangs). Each fsync cost
a hop more CPU than the rest of its outbox write; ``sync="entry"`` syncs every entry before the
hop answers instead. The flusher sends at most one batch per flush interval: under load the
entries of many evaluations share one round trip, one commit and one signed tree head at the
coordinator (one per entry cost the coordinator more CPU than planning). Every receipt the
coordinator returns is checked (its signed tree head, and the entry's inclusion in it) and
kept; :meth:`check` later asks the coordinator for proofs that the current log still contains
every kept entry and grew consistently from every kept head — what catches an operator
rewriting history.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fedcredit.audit import (
    ConsistencyProof,
    EntryDraft,
    EntryKind,
    InclusionProof,
    Receipt,
    ReceiptAudit,
    check_receipts,
    verify_receipts,
)
from fedcredit.clock import Clock
from fedcredit.errors import FedCreditError, LedgerRangeError
from fedcredit.files import write_secret
from fedcredit.sqlite import SqliteDatabase
from node.coordinator_client import CoordinatorClient
from node.directory import MemberDirectory

log = logging.getLogger(__name__)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    query_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_receipts (
    idx INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    query_id TEXT,
    receipt TEXT NOT NULL,
    received_ms INTEGER NOT NULL
);
"""
BATCH = 200
#: When an outbox entry reaches the disk: with the flusher's next sync, or before ``enqueue``
#: returns.
OutboxSync = Literal["batch", "entry"]


@dataclass(frozen=True)
class Inquiry:
    """One line of an applicant's inquiry history, as a credit report shows it."""

    requester_id: str
    requester_name: str
    purpose: str
    at_ms: int
    query_id: str


class AuditTrail:
    def __init__(self, path: Path, member_id: str, client: CoordinatorClient,
                 directory: MemberDirectory, clock: Clock, flush_interval_s: float = 0.2,
                 idle_wait_s: float = 5.0, sync: OutboxSync = "batch") -> None:
        """``flush_interval_s``: the least time between two batches (entries wait at most about
        this long before they leave); ``idle_wait_s``: how long an idle flusher sleeps before it
        looks at the outbox anyway (an enqueue wakes it at once); ``sync``: when an entry and a
        kept receipt reach the disk (module docstring)."""
        self._db = SqliteDatabase(path, _SCHEMA)
        key_path = path.with_name("audit-commitment.key")
        if not key_path.exists():
            write_secret(key_path, secrets.token_bytes(32))
        self._commitment_key = key_path.read_bytes()
        self._member_id = member_id
        self._client = client
        self._directory = directory
        self._clock = clock
        self._interval_s = flush_interval_s
        self._idle_wait_s = idle_wait_s
        self._durable_entries = sync == "entry"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-outbox", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Close without flushing (one-shot use, e.g. a receipt check)."""
        self._stop.set()
        self._db.close()

    def stop(self) -> None:
        """Stop the flusher, flush what it can, close. Safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            self.flush()
        except FedCreditError as exc:
            log.warning("audit outbox: %d entries wait for the next start (%s)",
                        self.pending(), exc.code.value)
        self._db.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._idle_wait_s)
            self._wake.clear()
            failed = False
            try:
                self.flush()
            except FedCreditError as exc:
                log.warning("audit outbox: %s (%s); retrying", exc.detail, exc.code.value)
                failed = True
            except Exception:
                log.exception("audit outbox flush failed")
                failed = True
            # Sent or not, what was kept so far reaches the disk now (a flush that stored
            # receipts has synced it with them: then this is a no-op).
            self._sync()
            if failed:
                self._stop.wait(1.0)
            # At most one batch per interval: what is enqueued meanwhile joins the next one.
            self._stop.wait(self._interval_s)

    def commitment(self, data: bytes) -> str:
        """A hiding commitment to a result (HMAC under a key only this member holds): the
        ledger shows a result was fixed, and the member can open it to a regulator later."""
        return hmac.new(self._commitment_key, data, hashlib.sha256).hexdigest()

    # -- recording ----------------------------------------------------------------------------
    def _accept(self, drafts: Sequence[EntryDraft], receipts: Sequence[Receipt]) -> None:
        if len(receipts) != len(drafts):
            raise FedCreditError("the coordinator returned the wrong number of receipts")
        verify_receipts(zip(receipts, drafts, strict=True), self._directory.tree_head_verifier)

    def _sync(self) -> None:
        try:
            self._db.sync()
        except OSError:
            log.exception("audit outbox: sync failed; retrying on the next round")

    def _store(self, drafts: Sequence[EntryDraft], receipts: Sequence[Receipt],
               outbox_ids: Sequence[int] = (), *, durable: bool = True) -> None:
        now = self._clock()
        with self._db.transaction(durable=durable) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO audit_receipts VALUES (?, ?, ?, ?, ?)",
                [(r.index, d.kind.value, d.query_id, json.dumps(r.to_dict()), now)
                 for d, r in zip(drafts, receipts, strict=True)])
            conn.executemany("DELETE FROM audit_outbox WHERE id=?", [(i,) for i in outbox_ids])

    def record(self, draft: EntryDraft) -> Receipt:
        """Record now (durable at the coordinator before this returns) and keep the receipt."""
        receipts = self._client.record_audit([draft])
        self.keep(draft, receipts[0])
        return receipts[0]

    def keep(self, draft: EntryDraft, receipt: Receipt) -> None:
        """Check and keep the receipt of an entry recorded some other way (the consent that
        went with a plan request). The entry is durable at the coordinator already; its receipt
        here reaches the disk like an outbox entry."""
        self._accept([draft], [receipt])
        self._store([draft], [receipt], durable=self._durable_entries)
        if not self._durable_entries:
            self._wake.set()  # the flusher syncs it

    def enqueue(self, draft: EntryDraft) -> None:
        """Record soon: kept here now (on the disk now or with the flusher's next sync, as
        ``sync`` says), at the coordinator with the next flush."""
        if draft.subject_tag is not None:
            raise ValueError("entries with a subject tag are recorded synchronously")
        self._db.execute("INSERT INTO audit_outbox (kind, query_id, body, created_ms) "
                         "VALUES (?, ?, ?, ?)",
                         (draft.kind.value, draft.query_id or "", draft.body_json.decode(),
                          self._clock()), durable=self._durable_entries)
        self._wake.set()

    @property
    def synced(self) -> bool:
        """Whether every entry and receipt kept here has reached the disk."""
        return not self._db.unsynced

    def pending(self) -> int:
        row = self._db.one("SELECT COUNT(*) FROM audit_outbox")
        return int(row[0]) if row else 0

    def flush(self) -> int:
        """Send queued entries in batches; the number sent."""
        sent = 0
        while True:
            rows = self._db.all("SELECT id, kind, query_id, body FROM audit_outbox "
                                "ORDER BY id LIMIT ?", (BATCH,))
            if not rows:
                return sent
            drafts = [EntryDraft(kind=EntryKind(r[1]), actor=self._member_id,
                                 body=json.loads(r[3]), query_id=r[2]) for r in rows]
            receipts = self._client.record_audit(drafts)
            self._accept(drafts, receipts)
            self._store(drafts, receipts, [r[0] for r in rows])
            sent += len(rows)

    # -- checking -----------------------------------------------------------------------------
    def receipts(self) -> list[Receipt]:
        return [Receipt.from_dict(json.loads(r[0]))
                for r in self._db.all("SELECT receipt FROM audit_receipts ORDER BY idx")]

    def check(self) -> ReceiptAudit:
        """Prove, against the coordinator's current signed head, that every kept receipt's
        entry is still in the log and that the log only grew since each kept head."""
        receipts = self.receipts()
        indices = sorted({r.index for r in receipts})
        sizes = sorted({r.tree_head.size for r in receipts})
        head, inclusion, consistency = self._client.audit_proofs(indices, sizes)
        verifiers = {key: self._directory.tree_head_verifier(key)
                     for key in {head.key_id, *(r.tree_head.key_id for r in receipts)}}

        def inclusion_proof(index: int, size: int) -> InclusionProof:
            if size != head.size or index not in inclusion:
                raise LedgerRangeError("no proof for that index")
            return InclusionProof(index, size, inclusion[index])

        def consistency_proof(old: int, new: int) -> ConsistencyProof:
            if new != head.size or old not in consistency:
                raise LedgerRangeError("no proof for that size")
            return ConsistencyProof(old, new, consistency[old])

        return check_receipts(receipts, head, verifiers, inclusion_proof=inclusion_proof,
                              consistency_proof=consistency_proof)
