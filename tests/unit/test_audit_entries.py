"""Ledger entries' canonical bytes, tree head signatures, receipts and the receipt audit."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcredit.audit import (
    MAX_BODY_BYTES,
    ConsistencyProof,
    EntryDraft,
    EntryKind,
    InclusionProof,
    LedgerEntry,
    Receipt,
    SignedTreeHead,
    check_receipts,
    entry_bytes,
    tree_head_message,
    verify_receipt,
    verify_receipts,
    verify_tree_head,
)
from fedcredit.errors import (
    ErrorCode,
    InvalidRequestError,
    InvalidSignature,
    LedgerRangeError,
    LedgerTamperedError,
)
from mpc.merkle import Frontier, consistency_path, inclusion_path
from mpc.signing import TREE_HEAD_CONTEXT, Signer, Verifier

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.generate()


# -- canonical entry bytes ------------------------------------------------------------------


def test_the_documented_encoding_byte_for_byte() -> None:
    draft = EntryDraft(EntryKind.CONSENT, "bank-β", {"purpose": "loan", "n": 2, "a": [True, None],
                                                     "digest": b"\x01\xff"},
                       query_id="q-1", subject_tag=bytes([0xAB, 0x01]))
    encoded = draft.canonical_bytes(index=7, created_ms=1_700_000_000_123)
    assert encoded == (
        '{"actor":"bank-β","body":{"a":[true,null],"digest":"01ff","n":2,"purpose":"loan"},'
        '"created_ms":1700000000123,"index":7,"kind":"consent","query_id":"q-1",'
        '"subject_tag":"ab01","v":1}').encode()
    entry = LedgerEntry.from_draft(draft, 7, 1_700_000_000_123)
    assert entry.leaf_hash == hashlib.sha256(b"\x00" + encoded).digest()
    assert entry.canonical_bytes() == encoded
    assert entry.body == {"a": [True, None], "digest": "01ff", "n": 2, "purpose": "loan"}


def test_absent_fields_are_null() -> None:
    draft = EntryDraft(EntryKind.ADMISSION, "admin")
    assert draft.canonical_bytes(0, 5) == (
        b'{"actor":"admin","body":{},"created_ms":5,"index":0,"kind":"admission",'
        b'"query_id":null,"subject_tag":null,"v":1}')


def test_position_and_time_are_inside_the_hash() -> None:
    draft = EntryDraft(EntryKind.VOTE, "bank", {"for": "shop"})
    hashes = {LedgerEntry.from_draft(draft, i, t).leaf_hash for i in (0, 1) for t in (10, 11)}
    assert len(hashes) == 4


def test_entry_kinds_are_the_alliance_events() -> None:
    assert [k.value for k in EntryKind] == [
        "join_request", "vote", "admission", "rejection", "suspension", "reinstatement",
        "revocation", "certificate_renewal", "policy_change", "principal_change", "grant",
        "model_registered", "model_promoted", "model_rolled_back", "training_started",
        "product_published", "product_withdrawn", "plan", "consent", "contribution",
        "completion"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(actor=st.text(min_size=1, max_size=40), query_id=st.none() | st.text(min_size=1),
       tag=st.none() | st.binary(min_size=1, max_size=64),
       body=st.dictionaries(st.text(), json_values, max_size=5),
       index=st.integers(0, 2**40), created=st.integers(0, 2**45))
def test_the_spliced_encoding_is_canonical_json(actor: str, query_id: str | None,
                                                tag: bytes | None, body: dict[str, object],
                                                index: int, created: int) -> None:
    try:
        draft = EntryDraft(EntryKind.PLAN, actor, body, query_id, tag)  # type: ignore[arg-type]
    except InvalidRequestError:  # lone surrogates: not UTF-8
        return
    whole = {"v": 1, "index": index, "created_ms": created, "kind": "plan", "actor": actor,
             "query_id": query_id, "subject_tag": None if tag is None else tag.hex(),
             "body": body}
    expected = json.dumps(whole, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
    assert draft.canonical_bytes(index, created) == expected
    assert entry_bytes(index=index, created_ms=created, kind=EntryKind.PLAN, actor=actor,
                       query_id=query_id, subject_tag=tag, body=draft.stored_body) == expected
    assert json.loads(expected)["body"] == body


@pytest.mark.parametrize("body", [
    {"ratio": 0.5}, {"x": float("nan")}, {"nested": {"x": [1.0]}}, {1: "int key"},
    {"set": {1, 2}}, {"text": "\ud800"}, {"big": "x" * MAX_BODY_BYTES}])
def test_bodies_canonical_json_cannot_pin_are_refused(body: dict[object, object]) -> None:
    with pytest.raises(InvalidRequestError):
        EntryDraft(EntryKind.POLICY_CHANGE, "admin", body)  # type: ignore[arg-type]


@pytest.mark.parametrize("fields", [
    {"kind": "gossip"}, {"actor": ""}, {"actor": "x" * 257}, {"query_id": ""},
    {"subject_tag": b""}, {"subject_tag": b"x" * 65}, {"subject_tag": "ab"}])
def test_malformed_drafts_are_refused(fields: dict[str, object]) -> None:
    values: dict[str, object] = {"kind": EntryKind.GRANT, "actor": "regulator"} | fields
    with pytest.raises(InvalidRequestError):
        EntryDraft(**values)  # type: ignore[arg-type]


def test_bytes_and_tuples_are_normalized_once() -> None:
    draft = EntryDraft("contribution", "bank",  # type: ignore[arg-type]
                       {"digest": bytearray(b"\x00\x10"), "route": ("a", "b")})
    assert draft.kind is EntryKind.CONTRIBUTION
    assert draft.body == {"digest": "0010", "route": ["a", "b"]}


# -- tree heads ------------------------------------------------------------------------------


def test_tree_head_message_layout() -> None:
    root = bytes(range(32))
    assert tree_head_message(3, root, 9) == b"\x01" + struct.pack(">QQ", 3, 9) + root
    with pytest.raises(ValueError):
        tree_head_message(3, root[:31], 9)


def test_tree_heads_verify_and_any_change_is_refused(signer: Signer) -> None:
    head = SignedTreeHead.sign(5, b"r" * 32, 1_000, signer)
    verify_tree_head(head, signer.verifier)
    signer.verifier.verify(TREE_HEAD_CONTEXT, tree_head_message(5, b"r" * 32, 1_000),
                           head.signature)
    for forged in (replace(head, size=6), replace(head, root=b"s" * 32),
                   replace(head, timestamp_ms=1_001), replace(head, key_id="0" * 16),
                   # (a flipped bit: overwriting the last byte with 0 changed nothing 1 time in 256)
                   replace(head, signature=head.signature[:-1]
                           + bytes([head.signature[-1] ^ 1])),
                   replace(head, root=b"short")):
        with pytest.raises(InvalidSignature) as caught:
            verify_tree_head(forged, signer.verifier)
        assert caught.value.code is ErrorCode.LEDGER_TAMPERED
    with pytest.raises(InvalidSignature):
        verify_tree_head(head, Signer.generate().verifier)
    assert SignedTreeHead.from_dict(json.loads(json.dumps(head.to_dict()))) == head


# -- receipts against an in-memory log -------------------------------------------------------


class MemoryLog:
    """The coordinator's side, minus SQLite: enough to issue receipts and serve proofs."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.leaves: list[bytes] = []
        self.heads: dict[int, SignedTreeHead] = {}

    def _subtree(self, start: int, end: int) -> bytes:
        return Frontier.empty().extend(self.leaves[start:end])[0].root()

    def append(self, draft: EntryDraft, now_ms: int) -> Receipt:
        entry = LedgerEntry.from_draft(draft, len(self.leaves), now_ms)
        self.leaves.append(entry.leaf_hash)
        size = len(self.leaves)
        head = SignedTreeHead.sign(size, self._subtree(0, size), now_ms, self.signer)
        self.heads[size] = head
        return Receipt(entry.index, now_ms, entry.leaf_hash, head,
                       inclusion_path(entry.index, size, self._subtree))

    def inclusion_proof(self, index: int, size: int) -> InclusionProof:
        if not 0 <= index < size <= len(self.leaves):
            raise LedgerRangeError()
        return InclusionProof(index, size, inclusion_path(index, size, self._subtree))

    def consistency_proof(self, old: int, new: int) -> ConsistencyProof:
        if not 0 < old <= new <= len(self.leaves):
            raise LedgerRangeError()
        return ConsistencyProof(old, new, consistency_path(old, new, self._subtree))

    def audit(self, receipts: list[Receipt], signer: Signer | None = None) -> tuple[int, ...]:
        current = self.heads[len(self.leaves)]
        result = check_receipts(receipts, current, {(signer or self.signer).key_id:
                                                    (signer or self.signer).verifier},
                                inclusion_proof=self.inclusion_proof,
                                consistency_proof=self.consistency_proof)
        assert result.ok == (not result.failed_indices)
        assert result.receipts_checked == len(receipts)
        return result.failed_indices


def drafts(n: int) -> list[EntryDraft]:
    return [EntryDraft(EntryKind.CONSENT, f"member-{i % 3}", {"purpose": "loan", "i": i},
                       f"q{i}", hashlib.sha256(b"tag%d" % i).digest()) for i in range(n)]


def test_a_receipt_proves_the_member_s_own_draft(signer: Signer) -> None:
    log = MemoryLog(signer)
    items = drafts(6)
    receipts = [log.append(d, 100 + i) for i, d in enumerate(items)]
    for draft, receipt in zip(items, receipts, strict=True):
        verify_receipt(receipt, draft, signer.verifier)
        verify_receipt(receipt, receipt.leaf_hash, signer.verifier)
        verify_receipt(receipt, draft.canonical_bytes(receipt.index, receipt.created_ms),
                       signer.verifier)
        assert Receipt.from_dict(json.loads(json.dumps(receipt.to_dict()))) == receipt
    entry = LedgerEntry.from_draft(items[2], 2, 102)
    verify_receipt(receipts[2], entry, signer.verifier)


def test_a_receipt_for_something_else_is_refused(signer: Signer) -> None:
    log = MemoryLog(signer)
    items = drafts(5)
    receipts = [log.append(d, 7) for d in items]
    receipt = receipts[3]
    forgeries = [
        (receipt, items[2]),  # another entry
        (receipt, replace(items[3], actor="someone-else")),
        (replace(receipt, created_ms=8), items[3]),  # re-dated
        (replace(receipt, index=2), items[3]),  # moved
        (replace(receipt, inclusion=receipt.inclusion[:-1]), items[3]),
        (replace(receipt, tree_head=receipts[4].tree_head), items[3]),  # another head's root
        (replace(receipt, tree_head=replace(receipt.tree_head, timestamp_ms=0)), items[3]),
    ]
    for forged, draft in forgeries:
        with pytest.raises(LedgerTamperedError):
            verify_receipt(forged, draft, signer.verifier)
    with pytest.raises(LedgerTamperedError):
        verify_receipt(receipt, items[3], Signer.generate().verifier)
    with pytest.raises(LedgerTamperedError):  # canonical bytes of another entry
        verify_receipt(receipt, items[3].canonical_bytes(3, 8), signer.verifier)


def test_a_batch_under_one_head_checks_its_signature_once_and_every_proof(
        signer: Signer) -> None:
    log = MemoryLog(signer)
    items = drafts(5)
    for draft in items:
        log.append(draft, 50)
    head = log.heads[len(items)]
    batch = [(Receipt(i, 50, log.leaves[i], head, log.inclusion_proof(i, len(items)).hashes), d)
             for i, d in enumerate(items)]
    asked: list[str] = []

    def verifier_for(key_id: str) -> Verifier:
        asked.append(key_id)
        return signer.verifier

    verify_receipts(batch, verifier_for)
    assert asked == [signer.key_id]  # one head, one signature check
    # A bad proof anywhere in the batch still fails it, as does a forged head.
    for k in range(len(batch)):
        forged = list(batch)
        receipt, draft = forged[k]
        forged[k] = (replace(receipt, inclusion=receipt.inclusion[:-1]), draft)
        with pytest.raises(LedgerTamperedError):
            verify_receipts(forged, verifier_for)
    forged = [*batch[:3], (replace(batch[3][0], tree_head=replace(head, timestamp_ms=1)),
                           batch[3][1])]
    with pytest.raises(LedgerTamperedError):
        verify_receipts(forged, verifier_for)


def test_receipts_hold_while_the_log_only_grows(signer: Signer) -> None:
    log = MemoryLog(signer)
    receipts = [log.append(d, 1) for d in drafts(9)]
    for d in drafts(20):
        log.append(d, 2)
    assert log.audit(receipts) == ()


def test_a_rewrite_re_signed_with_the_coordinator_s_key_is_caught(signer: Signer) -> None:
    honest = MemoryLog(signer)
    items = drafts(12)
    receipts = [honest.append(d, 1) for d in items]
    # The operator drops entry 4, replays the rest and signs fresh heads with the same key.
    rewritten = MemoryLog(signer)
    for d in items[:4] + items[5:]:
        rewritten.append(d, 1)
    for d in drafts(3):
        rewritten.append(d, 2)
    failed = rewritten.audit(receipts)
    assert failed == tuple(range(4, 12))  # heads before the cut still extend; later ones don't
    # Editing one entry in place, same size: every receipt whose head covers it fails.
    edited = MemoryLog(signer)
    for i, d in enumerate(items):
        edited.append(replace(d, body={"purpose": "marketing"}) if i == 6 else d, 1)
    assert edited.audit(receipts) == tuple(range(6, 12))


def test_a_shrunken_log_or_a_forged_current_head_fails(signer: Signer) -> None:
    log = MemoryLog(signer)
    receipts = [log.append(d, 1) for d in drafts(8)]
    shorter = MemoryLog(signer)
    for d in drafts(5):
        shorter.append(d, 1)
    assert shorter.audit(receipts) == (5, 6, 7)
    other_key = Signer.generate()
    with pytest.raises(InvalidSignature):
        log.audit(receipts, other_key)  # the member does not know the head's key
    current = replace(log.heads[8], root=b"\x00" * 32)
    with pytest.raises(InvalidSignature):
        check_receipts(receipts, current, {signer.key_id: signer.verifier},
                       inclusion_proof=log.inclusion_proof,
                       consistency_proof=log.consistency_proof)
