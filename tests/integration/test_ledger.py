"""The audit ledger on a real SQLite file: appends, proofs, transactions, restarts, threads,
and the verifier naming the first altered row."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinator.audit_verify import verify_ledger
from coordinator.ledger import MAX_PAGE, AuditLedger, ConsentTag
from fedcredit.audit import (
    EntryDraft,
    EntryKind,
    Receipt,
    SignedTreeHead,
    check_receipts,
    verify_receipt,
    verify_tree_head,
)
from fedcredit.errors import LedgerRangeError
from fedcredit.sqlite import SqliteDatabase
from mpc.merkle import verify_consistency, verify_inclusion
from mpc.signing import Signer, Verifier

pytestmark = pytest.mark.integration

#: A stand-in for the registry's tables: the ledger shares the coordinator's database file.
REGISTRY = "CREATE TABLE IF NOT EXISTS members (member_id TEXT PRIMARY KEY, status TEXT);"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "coordinator.sqlite3"


@pytest.fixture
def db(db_path: Path) -> Iterator[SqliteDatabase]:
    database = SqliteDatabase(db_path, REGISTRY)
    yield database
    database.close()


def draft(i: int, kind: EntryKind = EntryKind.CONSENT) -> EntryDraft:
    return EntryDraft(kind, f"member-{i % 4}", {"purpose": "loan", "seq": i}, f"q-{i // 2}",
                      hashlib.sha256(b"tag-%d" % i).digest() if kind is EntryKind.CONSENT
                      else None)


def keys(signer: Signer) -> dict[str, Verifier]:
    return {signer.key_id: signer.verifier}


@dataclass
class Filled:
    ledger: AuditLedger
    receipts: list[Receipt]
    drafts: list[EntryDraft]


def fill(db: SqliteDatabase, signer: Signer, n: int = 40) -> Filled:
    """Single appends, then a batch of 10 (sizes inside it have no head), then singles."""
    ledger = AuditLedger(db, signer)
    drafts = [draft(i, EntryKind.CONSENT if i % 3 else EntryKind.PLAN) for i in range(n)]
    receipts = [ledger.append(d, now_ms=1_000 + i) for i, d in enumerate(drafts[:15])]
    receipts += ledger.append_many(drafts[15:25], now_ms=2_000)
    receipts += [ledger.append(d, now_ms=3_000 + i) for i, d in enumerate(drafts[25:])]
    return Filled(ledger, receipts, drafts)


# -- appending and proving --------------------------------------------------------------------


def test_receipts_proofs_and_heads_agree(db: SqliteDatabase, signer: Signer) -> None:
    filled = fill(db, signer)
    ledger = filled.ledger
    assert ledger.size() == 40
    head_sizes = [*range(1, 16), 25, *range(26, 41)]
    for size in head_sizes:
        verify_tree_head(ledger.tree_head(size), signer.verifier)
    assert ledger.tree_head() == ledger.tree_head(40)
    for i, (d, receipt) in enumerate(zip(filled.drafts, filled.receipts, strict=True)):
        verify_receipt(receipt, d, signer.verifier)
        assert receipt.index == i
        assert receipt.tree_head == ledger.tree_head(25 if 15 <= i < 25 else i + 1)
        entry = ledger.entry(i)
        assert entry.leaf_hash == receipt.leaf_hash and entry.body == d.body
    for size in head_sizes:
        head = ledger.tree_head(size)
        for index in range(size):
            proof = ledger.inclusion_proof(index, size)
            assert verify_inclusion(ledger.entry(index).leaf_hash, index, size, proof.hashes,
                                    head.root)
        for old in head_sizes[:head_sizes.index(size) + 1]:
            cons = ledger.consistency_proof(old, size)
            assert verify_consistency(old, size, ledger.tree_head(old).root, head.root,
                                      cons.hashes)


def test_time_never_runs_backwards(db: SqliteDatabase, signer: Signer) -> None:
    ledger = AuditLedger(db, signer)
    ledger.append(draft(0), now_ms=5_000)
    late = ledger.append(draft(1), now_ms=4_000)  # the clock stepped back
    assert late.created_ms == late.tree_head.timestamp_ms == 5_000


@pytest.mark.parametrize("call", [
    lambda ledger: ledger.entry(40), lambda ledger: ledger.entry(-1),
    lambda ledger: ledger.tree_head(20),  # inside the batch: no head was signed there
    lambda ledger: ledger.tree_head(41), lambda ledger: ledger.inclusion_proof(40, 40),
    lambda ledger: ledger.inclusion_proof(3, 41), lambda ledger: ledger.inclusion_proof(-1, 5),
    lambda ledger: ledger.consistency_proof(0, 10), lambda ledger: ledger.consistency_proof(11, 10),
    lambda ledger: ledger.consistency_proof(10, 41), lambda ledger: ledger.entries(5, 41),
    lambda ledger: ledger.entries(6, 5), lambda ledger: ledger.consent_tags(10, 5)])
def test_out_of_range_requests(db: SqliteDatabase, signer: Signer,
                               call: Callable[[AuditLedger], object]) -> None:
    ledger = fill(db, signer).ledger
    with pytest.raises(LedgerRangeError):
        call(ledger)


def test_an_empty_ledger_has_no_head(db: SqliteDatabase, db_path: Path,
                                     signer: Signer) -> None:
    ledger = AuditLedger(db, signer)
    assert ledger.size() == 0
    with pytest.raises(LedgerRangeError):
        ledger.tree_head()
    assert ledger.entries(0, 0) == []
    assert verify_ledger(db_path, keys(signer)).ok


def test_reading_entries_and_consent_tags(db: SqliteDatabase, signer: Signer) -> None:
    filled = fill(db, signer)
    ledger = filled.ledger
    assert [e.index for e in ledger.entries(0, 40)] == list(range(40))
    plans = ledger.entries(0, 40, kinds=[EntryKind.PLAN])
    assert [e.index for e in plans] == [i for i in range(40) if i % 3 == 0]
    assert ledger.entries(0, 40, kinds=[]) == []
    assert [e.index for e in ledger.entries(10, 20, actor="member-1")] == [13, 17]
    assert [e.index for e in ledger.entries(0, 40, query_id="q-7")] == [14, 15]
    assert len(ledger.entries(0, 40)) <= MAX_PAGE
    tags = ledger.consent_tags(1_010, 2_001)  # singles 10-14 and the batch at 2,000
    expected = [i for i in range(10, 25) if i % 3]
    assert tags == [ConsentTag(i, f"q-{i // 2}", hashlib.sha256(b"tag-%d" % i).digest())
                    for i in expected]


# -- transactions, restarts, threads ----------------------------------------------------------


def test_a_rolled_back_caller_leaves_no_trace(db: SqliteDatabase, db_path: Path,
                                             signer: Signer) -> None:
    ledger = fill(db, signer, 5).ledger
    before = ledger.tree_head()
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO members VALUES ('bank', 'ACTIVE')")
        ledger.append(EntryDraft(EntryKind.ADMISSION, "admin", {"member": "bank"}),
                      now_ms=9_000, conn=conn)
        ledger.append(EntryDraft(EntryKind.GRANT, "admin"), now_ms=9_000, conn=conn)
        raise RuntimeError("the registry change failed after the ledger append")
    assert ledger.size() == 5 and ledger.tree_head() == before
    assert db.one("SELECT COUNT(*) FROM members") == (0,)
    with db.transaction() as conn:  # the same change committed: both, one append each
        conn.execute("INSERT INTO members VALUES ('bank', 'ACTIVE')")
        receipt = ledger.append(EntryDraft(EntryKind.ADMISSION, "admin", {"member": "bank"}),
                                now_ms=9_000, conn=conn)
    assert receipt.index == 5 and ledger.size() == 6
    assert db.one("SELECT status FROM members") == ("ACTIVE",)
    assert verify_ledger(db_path, keys(signer)).ok
    with pytest.raises(ValueError):  # a connection outside a transaction would autocommit
        ledger.append(draft(9), now_ms=1, conn=sqlite3.connect(":memory:"))


def test_appends_survive_a_restart(db_path: Path, signer: Signer) -> None:
    first = SqliteDatabase(db_path, REGISTRY)
    filled = fill(first, signer, 20)
    head = filled.ledger.tree_head()
    first.close()
    second = SqliteDatabase(db_path, REGISTRY)
    try:
        ledger = AuditLedger(second, signer)
        assert ledger.tree_head() == head
        receipt = ledger.append(draft(20), now_ms=10_000)
        assert receipt.index == 20
        cons = ledger.consistency_proof(20, 21)
        assert verify_consistency(20, 21, head.root, receipt.tree_head.root, cons.hashes)
    finally:
        second.close()
    assert verify_ledger(db_path, keys(signer)) == verify_ledger(db_path, keys(signer))
    assert verify_ledger(db_path, keys(signer)).entries_checked == 21


def test_concurrent_appends_make_one_consistent_log(db: SqliteDatabase, db_path: Path,
                                                   signer: Signer) -> None:
    ledger = AuditLedger(db, signer)
    receipts: list[Receipt] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        for i in range(25):
            if i % 5 == 4:
                got = ledger.append_many([draft(t * 100 + i), draft(t * 100 + i + 50)],
                                         now_ms=1_000 + i)
            else:
                got = [ledger.append(draft(t * 100 + i), now_ms=1_000 + i)]
            with lock:
                receipts.extend(got)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.index for r in receipts) == list(range(8 * 30)) == list(range(ledger.size()))
    for receipt in receipts:
        verify_receipt(receipt, ledger.entry(receipt.index), signer.verifier)
    audit = check_receipts(receipts, ledger.tree_head(), keys(signer),
                           inclusion_proof=ledger.inclusion_proof,
                           consistency_proof=ledger.consistency_proof)
    assert audit.ok and audit.receipts_checked == 240
    result = verify_ledger(db_path, keys(signer))
    # One signed head per commit: concurrent appends may share one (group commit).
    assert result.ok and result.entries_checked == 240 and 1 <= result.heads_checked <= 200


def test_concurrent_appends_share_one_commit_and_each_gets_its_own_receipts(
    db: SqliteDatabase, db_path: Path, signer: Signer
) -> None:
    """While a commit is under way the other appends queue; the next commit takes them all:
    one transaction and one signed head, each caller its own entries' receipts."""
    ledger = AuditLedger(db, signer)
    results: dict[int, list[Receipt]] = {}
    db._lock.acquire()  # the first append's commit cannot start yet: the rest queue up
    try:
        threads = [threading.Thread(target=lambda t=t: results.__setitem__(
            t, ledger.append_many([draft(t), draft(t + 50)], now_ms=2_000 + t)))
            for t in range(6)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(ledger._queue) < 5:  # one leader (blocked on the lock) and five waiting
            assert time.monotonic() < deadline, len(ledger._queue)
            time.sleep(0.01)
    finally:
        db._lock.release()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(r.index for rs in results.values() for r in rs) == list(range(12))
    for t, receipts in results.items():
        assert [ledger.entry(r.index).body for r in receipts] == [draft(t).body,
                                                                 draft(t + 50).body]
        for receipt in receipts:
            verify_receipt(receipt, ledger.entry(receipt.index), signer.verifier)
    heads = {r.tree_head.size for rs in results.values() for r in rs}
    assert len(heads) == 2 and max(heads) == 12  # the leader's own commit, then the group's
    assert verify_ledger(db_path, keys(signer)).heads_checked == 2


def test_a_bad_batch_in_a_group_fails_only_its_own_caller(
    db: SqliteDatabase, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coordinator import ledger as ledger_module

    real = ledger_module.LedgerEntry.from_draft

    def failing(d: EntryDraft, index: int, created_ms: int) -> object:
        if d.actor == "member-bad":  # a fault inside the commit, for this batch only
            raise ValueError("cannot record this entry")
        return real(d, index, created_ms)

    monkeypatch.setattr(ledger_module.LedgerEntry, "from_draft", staticmethod(failing))
    ledger = AuditLedger(db, signer)
    bad = EntryDraft(EntryKind.CONSENT, "member-bad", {"seq": 1}, "q-1")
    outcomes: dict[str, object] = {}

    def append(name: str, drafts: list[EntryDraft]) -> None:
        try:
            outcomes[name] = ledger.append_many(drafts, now_ms=3_000)
        except Exception as exc:
            outcomes[name] = exc

    db._lock.acquire()
    try:
        threads = [threading.Thread(target=append, args=(name, drafts)) for name, drafts in
                   (("first", [draft(1)]), ("bad", [bad]), ("good", [draft(2)]))]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
    finally:
        db._lock.release()
    for thread in threads:
        thread.join(timeout=10)
    assert isinstance(outcomes["bad"], Exception)
    assert isinstance(outcomes["first"], list) and isinstance(outcomes["good"], list)
    assert ledger.size() == 2


# -- tampering ---------------------------------------------------------------------------------


def tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


TAMPERING = {
    "body edited": (["UPDATE ledger_entries SET body = '{\"purpose\":\"marketing\",\"seq\":17}' "
                     "WHERE idx = 17"], 17, "leaf hash"),
    "actor edited": (["UPDATE ledger_entries SET actor = 'member-0' WHERE idx = 31"], 31,
                     "leaf hash"),
    "leaf hash edited": (["UPDATE ledger_entries SET leaf_hash = zeroblob(32) WHERE idx = 9"],
                         9, "leaf hash"),
    "row deleted": (["DELETE FROM ledger_entries WHERE idx = 22"], 22, "missing"),
    "last row deleted": (["DELETE FROM ledger_entries WHERE idx = 39"], 39, "only 39"),
    "rows swapped": (["UPDATE ledger_entries SET idx = -1 WHERE idx = 5",
                      "UPDATE ledger_entries SET idx = 5 WHERE idx = 30",
                      "UPDATE ledger_entries SET idx = 30 WHERE idx = -1"], 5, "leaf hash"),
    "tree head root edited": (["UPDATE ledger_tree_heads SET root = zeroblob(32) "
                               "WHERE size = 12"], 11, "size 12: root"),
    "tree head time edited": (["UPDATE ledger_tree_heads SET timestamp_ms = 1 WHERE size = 25"],
                              24, "size 25: bad signature"),
    "tree head added inside a batch": (["INSERT INTO ledger_tree_heads SELECT 20, root, "
                                        "timestamp_ms, key_id, signature FROM "
                                        "ledger_tree_heads WHERE size = 25"], 19, "size 20"),
    "subtree edited": (["UPDATE ledger_nodes SET hash = zeroblob(32) "
                        "WHERE level = 2 AND position = 3"], 15, "level 2"),
    "subtree deleted": (["DELETE FROM ledger_nodes WHERE level = 1 AND position = 16"], 33,
                        "level 1"),
    "subtree added": (["INSERT INTO ledger_nodes VALUES (1, 99, zeroblob(32))"], 40,
                      "subtrees"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_verify_names_the_first_altered_append(db: SqliteDatabase, db_path: Path,
                                               signer: Signer, case: str) -> None:
    fill(db, signer)
    clean = verify_ledger(db_path, keys(signer))
    assert clean.ok and (clean.entries_checked, clean.heads_checked) == (40, 31)
    statements, index, reason = TAMPERING[case]
    tamper(db_path, *statements)
    result = verify_ledger(db_path, keys(signer))
    assert not result.ok
    assert result.first_bad_index == index, result
    assert result.reason is not None and reason in result.reason, result
    assert result.entries_checked <= index


def test_verify_needs_the_signing_key_and_opens_read_only(db: SqliteDatabase, db_path: Path,
                                                          signer: Signer) -> None:
    fill(db, signer, 3)
    result = verify_ledger(db_path, keys(Signer.generate()))
    assert (result.ok, result.first_bad_index) == (False, 0)
    assert result.reason is not None and "unknown key" in result.reason
    before = db_path.read_bytes()
    assert verify_ledger(db_path, keys(signer)).ok
    assert db_path.read_bytes() == before
    tamper(db_path, "DROP TABLE ledger_tree_heads")
    assert verify_ledger(db_path, keys(signer)).reason == "the ledger tables are missing"


def test_a_rewrite_re_signed_with_the_key_passes_verify_but_not_receipts(
        tmp_path: Path, db: SqliteDatabase, db_path: Path, signer: Signer) -> None:
    honest = fill(db, signer)
    held = [honest.receipts[i] for i in (3, 12, 18, 30, 39)]  # what members kept
    # The operator rebuilds the log without entry 10 and signs every head again.
    forged_db = SqliteDatabase(tmp_path / "rewritten.sqlite3", REGISTRY)
    try:
        forged = AuditLedger(forged_db, signer)
        for i, d in enumerate(honest.drafts):
            if i != 10:
                forged.append(d, now_ms=1_000 + i)
        assert verify_ledger(tmp_path / "rewritten.sqlite3", keys(signer)).ok  # self-consistent
        audit = check_receipts(held, forged.tree_head(), keys(signer),
                               inclusion_proof=forged.inclusion_proof,
                               consistency_proof=forged.consistency_proof)
        assert not audit.ok
        assert audit.failed_indices == (12, 18, 30, 39)
        honest_audit = check_receipts(held, honest.ledger.tree_head(), keys(signer),
                                      inclusion_proof=honest.ledger.inclusion_proof,
                                      consistency_proof=honest.ledger.consistency_proof)
        assert honest_audit.ok
    finally:
        forged_db.close()


def test_heads_round_trip_through_storage(db: SqliteDatabase, signer: Signer) -> None:
    ledger = fill(db, signer, 3).ledger
    head = ledger.tree_head()
    assert isinstance(head, SignedTreeHead) and head.key_id == signer.key_id
    assert SignedTreeHead.from_dict(head.to_dict()) == head
