"""The audit ledger's shared vocabulary: entries, their canonical bytes, tree heads, receipts.

The coordinator appends (:mod:`coordinator.ledger`); members, regulators and auditors check.
Both sides must agree on the exact bytes that get hashed and signed, so they are defined once,
here, and pinned by tests.

**Entry encoding** (what the Merkle leaf hash covers, ``leaf = SHA-256(0x00 || bytes)``):
canonical JSON of one object with exactly the keys ``actor, body, created_ms, index, kind,
query_id, subject_tag, v`` — keys sorted by code point at every depth, no whitespace
(``,`` and ``:`` separators), UTF-8 without ``\\u`` escapes for non-ASCII, ``null`` for an
absent ``query_id`` / ``subject_tag``, bytes as lowercase hex strings, ``v`` = 1. Bodies hold
only ``null``, booleans, integers, strings, lists and string-keyed objects: floats are refused
because their text form is where canonical JSON encoders disagree (send basis points, cents
or a decimal string instead); bytes in a draft's body are stored as hex strings.

Index and creation time are inside the hashed bytes, so moving or re-dating an entry changes
its leaf hash, not just its position.

**Tree head signature**: :data:`mpc.signing.TREE_HEAD_CONTEXT` followed by
``0x01 || size (8 bytes, big-endian) || timestamp_ms (8 bytes, big-endian) || root (32)``.

Nothing in an entry may identify an applicant: no identifiers, pseudonyms, feature values or
plaintext results. ``subject_tag`` is an opaque per-entry HMAC that members compute so that an
applicant's own member can later recognise its inquiries; the coordinator only stores it.
"""

from __future__ import annotations

import hmac
import json
import json.encoder
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias, cast

from fedcredit.errors import (
    ErrorCode,
    InvalidRequestError,
    InvalidSignature,
    LedgerRangeError,
    LedgerTamperedError,
)
from mpc.merkle import HASH_SIZE, leaf_hash, verify_consistency, verify_inclusion
from mpc.signing import TREE_HEAD_CONTEXT, Signer, Verifier

ENTRY_ENCODING_VERSION = 1
TREE_HEAD_VERSION = 1
MAX_BODY_BYTES = 16_384
MAX_ACTOR_CHARS = 256
MAX_SUBJECT_TAG_BYTES = 64

JsonValue: TypeAlias = bool | int | str | list["JsonValue"] | dict[str, "JsonValue"] | None
#: What a draft's body may hold before normalization (bytes become hex, tuples lists).
DraftValue: TypeAlias = (bool | int | str | bytes | bytearray | Sequence["DraftValue"]
                         | Mapping[str, "DraftValue"] | None)


class EntryKind(StrEnum):
    JOIN_REQUEST = "join_request"
    VOTE = "vote"
    ADMISSION = "admission"
    REJECTION = "rejection"
    SUSPENSION = "suspension"
    REINSTATEMENT = "reinstatement"
    REVOCATION = "revocation"
    CERTIFICATE_RENEWAL = "certificate_renewal"
    POLICY_CHANGE = "policy_change"
    PRINCIPAL_CHANGE = "principal_change"
    GRANT = "grant"
    MODEL_REGISTERED = "model_registered"
    MODEL_PROMOTED = "model_promoted"
    MODEL_ROLLED_BACK = "model_rolled_back"
    TRAINING_STARTED = "training_started"
    PRODUCT_PUBLISHED = "product_published"
    PRODUCT_WITHDRAWN = "product_withdrawn"
    PLAN = "plan"
    CONSENT = "consent"
    CONTRIBUTION = "contribution"
    COMPLETION = "completion"


def canonical_json(value: JsonValue) -> bytes:
    return _dumps(value).encode("utf-8")


def _dumps(value: JsonValue) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _refuse(path: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"ledger entry {path} {why}")


def _normalize(value: object, path: str) -> JsonValue:
    kind = type(value)
    if kind is int or kind is bool or value is None:  # the common cases, exactly typed
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _refuse(path, "is not valid Unicode") from None
        return value if kind is str else str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_normalize(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _refuse(path, "has a non-string key")
            _normalize(key, path)
            out[str.__str__(key)] = _normalize(item, f"{path}.{key}")
        return out
    raise _refuse(path, f"holds a {type(value).__name__}, not null/bool/int/str/list/object")


def normalize_body(body: Mapping[str, DraftValue]) -> dict[str, JsonValue]:
    """The body as it will be stored and hashed; refuses what canonical JSON cannot pin."""
    if not isinstance(body, Mapping):
        raise _refuse("body", "must be an object")
    normalized = _normalize(body, "body")
    assert isinstance(normalized, dict)
    return normalized


def entry_bytes(*, index: int, created_ms: int, kind: EntryKind, actor: str,
                query_id: str | None, subject_tag: bytes | None,
                body: Mapping[str, JsonValue]) -> bytes:
    """The canonical encoding of one entry (module docstring): what the leaf hash covers."""
    return encode_entry(index, created_ms, kind, actor, query_id, subject_tag,
                        canonical_json(dict(body)))


def _string_json(text: str) -> bytes:
    """A JSON string exactly as :func:`canonical_json` writes one (json's own C encoder)."""
    encoded: str = json.encoder.encode_basestring(text)
    return encoded.encode("utf-8")


def _hex_json(data: bytes) -> bytes:
    return b'"' + data.hex().encode("ascii") + b'"'


def encode_entry(index: int, created_ms: int, kind: str, actor: str, query_id: str | None,
                 subject_tag: bytes | None, body_json: bytes) -> bytes:
    """:func:`entry_bytes` with the body already in canonical JSON, as the ledger stores it.

    Spliced rather than re-encoded (verifying a million entries is this function a million
    times); the result is byte-for-byte the canonical JSON of the whole entry object.
    """
    return b"".join((
        b'{"actor":', _string_json(actor),
        b',"body":', body_json,
        b',"created_ms":', b"%d" % created_ms,
        b',"index":', b"%d" % index,
        b',"kind":', _string_json(str.__str__(kind)),
        b',"query_id":', b"null" if query_id is None else _string_json(query_id),
        b',"subject_tag":', b"null" if subject_tag is None else _hex_json(subject_tag),
        b',"v":%d}' % ENTRY_ENCODING_VERSION,
    ))


@dataclass(frozen=True)
class EntryDraft:
    """What a caller asks to record; the ledger assigns index and time."""

    kind: EntryKind
    actor: str
    body: Mapping[str, DraftValue] = field(default_factory=dict, hash=False)
    query_id: str | None = None
    subject_tag: bytes | None = None
    #: The body's canonical JSON, computed once: it is checked, stored and hashed.
    body_json: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", EntryKind(self.kind))
        except ValueError:
            raise _refuse("kind", "is not a ledger entry kind") from None
        if not isinstance(self.actor, str) or not 0 < len(self.actor) <= MAX_ACTOR_CHARS:
            raise _refuse("actor", f"must be 1-{MAX_ACTOR_CHARS} characters")
        object.__setattr__(self, "actor", _normalize(self.actor, "actor"))
        if self.query_id is not None:
            if not isinstance(self.query_id, str) or not self.query_id:
                raise _refuse("query_id", "must be a non-empty string or absent")
            object.__setattr__(self, "query_id", _normalize(self.query_id, "query_id"))
        if self.subject_tag is not None and (
                not isinstance(self.subject_tag, bytes)
                or not 0 < len(self.subject_tag) <= MAX_SUBJECT_TAG_BYTES):
            raise _refuse("subject_tag", f"must be 1-{MAX_SUBJECT_TAG_BYTES} bytes or absent")
        body = normalize_body(self.body)
        body_json = canonical_json(body)
        if len(body_json) > MAX_BODY_BYTES:
            raise _refuse("body", f"is larger than {MAX_BODY_BYTES} bytes")
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "body_json", body_json)

    @property
    def stored_body(self) -> Mapping[str, JsonValue]:
        """The body as normalized in ``__post_init__``: bytes as hex, tuples as lists."""
        return cast(Mapping[str, JsonValue], self.body)

    def canonical_bytes(self, index: int, created_ms: int) -> bytes:
        return encode_entry(index, created_ms, self.kind, self.actor, self.query_id,
                            self.subject_tag, self.body_json)


@dataclass(frozen=True)
class LedgerEntry:
    index: int
    created_ms: int
    kind: EntryKind
    actor: str
    query_id: str | None
    subject_tag: bytes | None
    body: Mapping[str, JsonValue] = field(hash=False)
    leaf_hash: bytes

    @classmethod
    def from_draft(cls, draft: EntryDraft, index: int, created_ms: int) -> LedgerEntry:
        return cls(index, created_ms, draft.kind, draft.actor, draft.query_id,
                   draft.subject_tag, draft.stored_body,
                   leaf_hash(draft.canonical_bytes(index, created_ms)))

    def canonical_bytes(self) -> bytes:
        return entry_bytes(index=self.index, created_ms=self.created_ms, kind=self.kind,
                           actor=self.actor, query_id=self.query_id,
                           subject_tag=self.subject_tag, body=self.body)


# -- tree heads and proofs ---------------------------------------------------------------


def tree_head_message(size: int, root: bytes, timestamp_ms: int) -> bytes:
    """The bytes a tree head signature covers (after :data:`TREE_HEAD_CONTEXT`)."""
    if len(root) != HASH_SIZE or not 0 <= size < 2**64 or not 0 <= timestamp_ms < 2**64:
        raise ValueError("tree head out of range")
    return struct.pack(">BQQ", TREE_HEAD_VERSION, size, timestamp_ms) + root


@dataclass(frozen=True)
class SignedTreeHead:
    size: int
    root: bytes
    timestamp_ms: int
    key_id: str
    signature: bytes

    @classmethod
    def sign(cls, size: int, root: bytes, timestamp_ms: int, signer: Signer) -> SignedTreeHead:
        message = tree_head_message(size, root, timestamp_ms)
        return cls(size, root, timestamp_ms, signer.key_id,
                   signer.sign(TREE_HEAD_CONTEXT, message))

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "root": self.root.hex(), "timestamp_ms": self.timestamp_ms,
                "key_id": self.key_id, "signature": self.signature.hex()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedTreeHead:
        return cls(int(data["size"]), bytes.fromhex(data["root"]), int(data["timestamp_ms"]),
                   str(data["key_id"]), bytes.fromhex(data["signature"]))


@dataclass(frozen=True)
class InclusionProof:
    index: int
    size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class Receipt:
    """The coordinator's signed word that an entry is in the log: the tree head of the append
    that wrote it and the entry's inclusion proof in that tree. A member keeps it; later
    heads must stay consistent with it (:func:`check_receipts`)."""

    index: int
    created_ms: int
    leaf_hash: bytes
    tree_head: SignedTreeHead
    inclusion: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "created_ms": self.created_ms,
                "leaf_hash": self.leaf_hash.hex(), "tree_head": self.tree_head.to_dict(),
                "inclusion": [h.hex() for h in self.inclusion]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Receipt:
        return cls(int(data["index"]), int(data["created_ms"]), bytes.fromhex(data["leaf_hash"]),
                   SignedTreeHead.from_dict(data["tree_head"]),
                   tuple(bytes.fromhex(h) for h in data["inclusion"]))


# -- checks a member runs ----------------------------------------------------------------


def verify_tree_head(head: SignedTreeHead, verifier: Verifier) -> None:
    """Raise the opaque :class:`InvalidSignature` (LEDGER_TAMPERED) unless ``verifier`` signed
    exactly this size, root and time."""
    try:
        message = tree_head_message(head.size, head.root, head.timestamp_ms)
    except (ValueError, TypeError):
        raise InvalidSignature(code=ErrorCode.LEDGER_TAMPERED) from None
    if head.key_id != verifier.key_id:
        raise InvalidSignature(code=ErrorCode.LEDGER_TAMPERED)
    verifier.verify(TREE_HEAD_CONTEXT, message, head.signature, code=ErrorCode.LEDGER_TAMPERED)


def verify_receipt(receipt: Receipt, entry: EntryDraft | LedgerEntry | bytes,
                   verifier: Verifier) -> None:
    """Raise one opaque :class:`LedgerTamperedError` unless the receipt proves this entry.

    ``entry`` is what the member asked to record (a draft: index and time come from the
    receipt), an entry it was served, its canonical bytes, or a bare leaf hash. Bytes of
    exactly 32 are a leaf hash: no canonical entry is that short.
    """
    verify_receipts([(receipt, entry)], lambda _key_id: verifier)


def verify_receipts(
    pairs: Iterable[tuple[Receipt, EntryDraft | LedgerEntry | bytes]],
    verifier_for: Callable[[str], Verifier],
) -> None:
    """:func:`verify_receipt` for many receipts, each distinct signed tree head checked once:
    the receipts of one batch, committed together, share one head (one signature check per
    batch instead of one per entry). ``verifier_for`` gives the ledger key of a key id."""
    verified: set[SignedTreeHead] = set()
    for receipt, entry in pairs:
        if isinstance(entry, EntryDraft):
            expected = leaf_hash(entry.canonical_bytes(receipt.index, receipt.created_ms))
        elif isinstance(entry, LedgerEntry):
            expected = leaf_hash(entry.canonical_bytes())
        else:
            expected = entry if len(entry) == HASH_SIZE else leaf_hash(entry)
        head = receipt.tree_head
        if head not in verified:
            try:
                verify_tree_head(head, verifier_for(head.key_id))
            except InvalidSignature:
                raise LedgerTamperedError("ledger receipt failed verification") from None
            verified.add(head)
        if not (hmac.compare_digest(expected, receipt.leaf_hash)
                and verify_inclusion(expected, receipt.index, head.size, receipt.inclusion,
                                     head.root)):
            raise LedgerTamperedError("ledger receipt failed verification")


@dataclass(frozen=True)
class ReceiptAudit:
    ok: bool
    receipts_checked: int
    #: Ledger indices of receipts the current log no longer honours.
    failed_indices: tuple[int, ...]


def check_receipts(
    receipts: Iterable[Receipt],
    current_head: SignedTreeHead,
    verifiers: Mapping[str, Verifier],
    *,
    inclusion_proof: Callable[[int, int], InclusionProof],
    consistency_proof: Callable[[int, int], ConsistencyProof],
) -> ReceiptAudit:
    """Does the log the coordinator serves now still hold every entry a member has a receipt
    for, and only grow from each head it once signed?

    This catches what :func:`coordinator.audit_verify.verify_ledger` cannot: an operator who
    rewrites history and re-signs every head with the coordinator's own key. The old heads
    held by members are signed too, and no consistency proof links them to the new tree.
    ``verifiers`` maps key ids to every coordinator key that signed a held receipt. A current
    head that does not verify raises :class:`InvalidSignature`; the proof callables may raise
    :class:`LedgerRangeError` (a shrunken log), which fails the receipts concerned.
    """
    head_verifier = verifiers.get(current_head.key_id)
    if head_verifier is None:
        raise InvalidSignature(code=ErrorCode.LEDGER_TAMPERED)
    verify_tree_head(current_head, head_verifier)
    consistent: dict[tuple[int, bytes], bool] = {}
    failed: list[int] = []
    checked = 0
    for receipt in receipts:
        checked += 1
        if not _still_honoured(receipt, current_head, verifiers, consistent,
                               inclusion_proof, consistency_proof):
            failed.append(receipt.index)
    return ReceiptAudit(ok=not failed, receipts_checked=checked, failed_indices=tuple(failed))


def _still_honoured(
    receipt: Receipt, head: SignedTreeHead, verifiers: Mapping[str, Verifier],
    consistent: dict[tuple[int, bytes], bool],
    inclusion_proof: Callable[[int, int], InclusionProof],
    consistency_proof: Callable[[int, int], ConsistencyProof],
) -> bool:
    old = receipt.tree_head
    verifier = verifiers.get(old.key_id)
    if verifier is None:
        return False
    try:
        verify_receipt(receipt, receipt.leaf_hash, verifier)
    except LedgerTamperedError:
        return False
    if old.size > head.size:
        return False
    key = (old.size, old.root)
    if key not in consistent:
        consistent[key] = _consistent(old, head, consistency_proof)
    if not consistent[key]:
        return False
    try:
        proof = inclusion_proof(receipt.index, head.size)
    except LedgerRangeError:
        return False
    return (proof.index, proof.size) == (receipt.index, head.size) and verify_inclusion(
        receipt.leaf_hash, receipt.index, head.size, proof.hashes, head.root)


def _consistent(old: SignedTreeHead, head: SignedTreeHead,
                consistency_proof: Callable[[int, int], ConsistencyProof]) -> bool:
    if old.size == head.size:  # two signed roots for one size: equivocation unless equal
        return hmac.compare_digest(old.root, head.root)
    try:
        proof = consistency_proof(old.size, head.size)
    except LedgerRangeError:
        return False
    return (proof.old_size, proof.new_size) == (old.size, head.size) and verify_consistency(
        old.size, head.size, old.root, head.root, proof.hashes)
