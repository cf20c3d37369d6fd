"""The model registry: which jointly trained models exist, and which one each requester uses.

The coordinator holds metadata only — the parties, each member's features, the training
metrics, fingerprints of the data each member trained on, and the SHA-256 of each member's
slice file — never weights, bins or WOE: those stay in the members' own slice files. A model
is trained for one requester (the guest, the label holder: only its slice holds the intercept
and the score scale), so promotion and rollback are per requester. Every change and its
audit-ledger entry commit in one transaction.

Registration is not an admin action: the coordinator's training orchestration calls
:meth:`ModelRegistry.register` in-process when a session ends. Admins promote and roll back.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from coordinator.ledger import AuditLedger
from fedcredit.audit import DraftValue, EntryDraft, EntryKind
from fedcredit.errors import (
    ConflictError,
    InvalidRequestError,
    ModelUnavailableError,
    ResourceNotFoundError,
)
from fedcredit.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    version TEXT PRIMARY KEY,
    requester_id TEXT NOT NULL,
    engine TEXT NOT NULL,
    session_id TEXT NOT NULL,
    slices TEXT NOT NULL,
    metrics TEXT NOT NULL,
    fingerprints TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    registered_by TEXT NOT NULL,
    status TEXT NOT NULL,
    promoted_ms INTEGER
);
CREATE INDEX IF NOT EXISTS models_by_requester ON models (requester_id, created_ms);
CREATE TABLE IF NOT EXISTS model_activations (
    requester_id TEXT NOT NULL,
    depth INTEGER NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (requester_id, depth)
);
"""
#: The names a member's :class:`node.models.ModelCatalog` accepts as ``<version>.json``.
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_TEXT = 128
MAX_FEATURES = 4_096
MAX_METRICS = 64
COLUMNS = ("version, requester_id, engine, session_id, slices, metrics, fingerprints, "
           "created_ms, registered_by, status, promoted_ms")
PROMOTE_HINT = "an admin promotes one with `fedcredit admin models promote VERSION`"


class ModelStatus(StrEnum):
    CANDIDATE = "candidate"  # registered, never active
    ACTIVE = "active"        # what an empty model_version in a plan resolves to
    RETIRED = "retired"      # was active once; promote or roll back to use it again


@dataclass(frozen=True)
class SliceRecord:
    """One member's part of a model, as the coordinator knows it: no weights, a digest."""

    member_id: str
    role: str  # "guest" (the label holder, the requester) | "host"
    #: SHA-256 (hex) of the member's slice file ``<version>.json``.
    sha256: str
    features: tuple[str, ...]


@dataclass(frozen=True)
class ModelDraft:
    """What training registers."""

    version: str
    #: The guest: the only member whose slice holds the intercept and the score scale, so the
    #: only one that can request evaluations with this model.
    requester_id: str
    engine: str
    session_id: str
    slices: tuple[SliceRecord, ...]
    #: E.g. auc, ks, auc_guest_only, rows, epochs.
    metrics: Mapping[str, float] = field(hash=False)
    #: member_id -> SHA-256 (hex) of the training data that member used.
    fingerprints: Mapping[str, str] = field(hash=False)


@dataclass(frozen=True)
class ModelRecord(ModelDraft):
    created_ms: int
    status: ModelStatus
    #: When it last became its requester's active model (promotion or rollback).
    promoted_ms: int | None
    #: The ledger actor that registered it (the training orchestration).
    registered_by: str


def check_version(version: str) -> None:
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise InvalidRequestError(
            f"model version {version!r} must be 1-64 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)")


def _text(value: object, what: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise InvalidRequestError(f"{what} must be 1-{MAX_TEXT} characters")


def check_draft(draft: ModelDraft) -> None:
    """Refuse a draft that cannot describe a model a requester could evaluate with."""
    check_version(draft.version)
    for text, what in ((draft.requester_id, "requester_id"), (draft.engine, "engine"),
                       (draft.session_id, "session_id")):
        _text(text, what)
    if not draft.slices:
        raise InvalidRequestError("a model has at least one slice")
    members = [s.member_id for s in draft.slices]
    if len(set(members)) != len(members):
        raise InvalidRequestError("a model has one slice per member: duplicate members "
                                  f"{sorted({m for m in members if members.count(m) > 1})}")
    for piece in draft.slices:
        _text(piece.member_id, "a slice's member_id")
        if piece.role not in ("guest", "host"):
            raise InvalidRequestError(f"{piece.member_id}'s slice role must be guest or host")
        if not isinstance(piece.sha256, str) or not _DIGEST.fullmatch(piece.sha256):
            raise InvalidRequestError(f"{piece.member_id}'s slice sha256 must be 64 lowercase "
                                      "hex digits")
        if len(piece.features) > MAX_FEATURES:
            raise InvalidRequestError(f"{piece.member_id}'s slice lists too many features")
        for name in piece.features:
            _text(name, f"a feature name of {piece.member_id}")
    guests = [s.member_id for s in draft.slices if s.role == "guest"]
    if guests != [draft.requester_id]:
        raise InvalidRequestError(f"the requester {draft.requester_id} must be the model's one "
                                  f"guest (the label holder); guests: {guests}")
    if len(draft.metrics) > MAX_METRICS:
        raise InvalidRequestError(f"at most {MAX_METRICS} metrics")
    for name, value in draft.metrics.items():
        _text(name, "a metric name")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value):
            raise InvalidRequestError(f"metric {name} must be a finite number")
    for member, digest in draft.fingerprints.items():
        if member not in members:
            raise InvalidRequestError(f"a training data fingerprint names {member!r}, which "
                                      "holds no slice")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise InvalidRequestError(f"{member}'s training data fingerprint must be 64 "
                                      "lowercase hex digits")


def _record(row: tuple[Any, ...]) -> ModelRecord:
    slices = tuple(SliceRecord(s["member_id"], s["role"], s["sha256"], tuple(s["features"]))
                   for s in json.loads(row[4]))
    return ModelRecord(
        version=row[0], requester_id=row[1], engine=row[2], session_id=row[3], slices=slices,
        metrics=json.loads(row[5]), fingerprints=json.loads(row[6]), created_ms=row[7],
        registered_by=row[8], status=ModelStatus(row[9]), promoted_ms=row[10])


def features_sha256(features: tuple[str, ...]) -> str:
    """The digest of a slice's feature list the ledger records (names joined by newlines)."""
    return hashlib.sha256("\n".join(features).encode()).hexdigest()


def _ledger_body(draft: ModelDraft) -> dict[str, DraftValue]:
    """What the ledger records: metadata and digests. Each feature list as its count and
    digest (hundreds of names would outgrow an entry); metrics as decimal strings (the ledger
    refuses floats, whose text forms canonical JSON encoders disagree on)."""
    return {
        "version": draft.version, "requester_id": draft.requester_id, "engine": draft.engine,
        "session_id": draft.session_id,
        "slices": [{"member_id": s.member_id, "role": s.role, "sha256": s.sha256,
                    "feature_count": len(s.features),
                    "features_sha256": features_sha256(s.features)} for s in draft.slices],
        "metrics": {name: repr(float(value)) for name, value in draft.metrics.items()},
        "fingerprints": dict(draft.fingerprints),
    }


class ModelRegistry:
    def __init__(self, db: SqliteDatabase, ledger: AuditLedger) -> None:
        self._db = db
        self._ledger = ledger

    # -- training ----------------------------------------------------------------------------
    def register(self, draft: ModelDraft, actor: str, now_ms: int) -> ModelRecord:
        """A new candidate version; ``actor`` names who registers it (ledger)."""
        check_draft(draft)
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM models WHERE version=?",
                            (draft.version,)).fetchone() is not None:
                raise ConflictError(f"model version {draft.version} is already registered; "
                                    "versions are never reused")
            conn.execute(
                f"INSERT INTO models ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (draft.version, draft.requester_id, draft.engine, draft.session_id,
                 json.dumps([{"member_id": s.member_id, "role": s.role, "sha256": s.sha256,
                              "features": list(s.features)} for s in draft.slices]),
                 json.dumps({k: float(v) for k, v in draft.metrics.items()}),
                 json.dumps(dict(draft.fingerprints)), now_ms, actor,
                 ModelStatus.CANDIDATE.value))
            self._ledger.append(EntryDraft(EntryKind.MODEL_REGISTERED, actor,
                                           _ledger_body(draft)), now_ms=now_ms, conn=conn)
            return self._load(conn, draft.version)

    # -- admins ------------------------------------------------------------------------------
    def promote(self, version: str, actor: str, now_ms: int) -> ModelRecord:
        """Make ``version`` its requester's active model; the active one is retired."""
        with self._db.transaction() as conn:
            record = self._load(conn, version)
            previous = self._top(conn, record.requester_id)
            if previous is not None and previous[1] == version:
                raise ConflictError(f"model {version} is already the active model for "
                                    f"{record.requester_id}")
            depth = 0 if previous is None else previous[0] + 1
            conn.execute("INSERT INTO model_activations VALUES (?, ?, ?)",
                         (record.requester_id, depth, version))
            self._switch(conn, previous[1] if previous else None, version, now_ms)
            self._ledger.append(EntryDraft(EntryKind.MODEL_PROMOTED, actor, {
                "version": version, "requester_id": record.requester_id,
                "previous_version": previous[1] if previous else None,
            }), now_ms=now_ms, conn=conn)
            return self._load(conn, version)

    def rollback(self, requester_id: str, actor: str, now_ms: int) -> ModelRecord:
        """Re-activate the version that was active before the current one (the current one is
        retired). Repeated rollbacks walk further back through the promotions."""
        with self._db.transaction() as conn:
            current = self._top(conn, requester_id)
            if current is None or current[0] == 0:
                raise ConflictError(
                    f"nothing to roll back to for {requester_id}: "
                    + ("no model has been promoted" if current is None else
                       f"{current[1]} is the first model it was promoted to"))
            conn.execute("DELETE FROM model_activations WHERE requester_id=? AND depth=?",
                         (requester_id, current[0]))
            restored = self._top(conn, requester_id)
            assert restored is not None
            self._switch(conn, current[1], restored[1], now_ms)
            self._ledger.append(EntryDraft(EntryKind.MODEL_ROLLED_BACK, actor, {
                "version": restored[1], "requester_id": requester_id,
                "previous_version": current[1],
            }), now_ms=now_ms, conn=conn)
            return self._load(conn, restored[1])

    # -- plans -------------------------------------------------------------------------------
    def resolve(self, requester_id: str, requested_version: str) -> str:
        """The version a plan for ``requester_id`` carries.

        Empty: the requester's active model. Explicit and registered: it must be this
        requester's; a candidate is allowed (a shadow test before promotion), and so is a
        retired version (pinning). Explicit and not registered: planned as-is — slices
        installed by hand (the demo's seed model ``v1``) never pass through the registry;
        every node still checks that it holds the slice.
        """
        if not requested_version:
            active = self.active(requester_id)
            if active is None:
                raise ModelUnavailableError(
                    f"no model has been promoted for {requester_id}; {PROMOTE_HINT}")
            return active.version
        check_version(requested_version)
        row = self._db.one("SELECT requester_id FROM models WHERE version=?",
                           (requested_version,))
        if row is not None and row[0] != requester_id:
            raise ModelUnavailableError(
                f"model {requested_version} was trained for another member: only its requester "
                "holds the intercept")
        return requested_version

    # -- reads -------------------------------------------------------------------------------
    def get(self, version: str) -> ModelRecord:
        with self._db.transaction() as conn:
            return self._load(conn, version)

    def active(self, requester_id: str) -> ModelRecord | None:
        row = self._db.one(f"SELECT {COLUMNS} FROM models WHERE requester_id=? AND status=?",
                           (requester_id, ModelStatus.ACTIVE.value))
        return None if row is None else _record(row)

    def list(self, requester_id: str | None = None) -> builtins.list[ModelRecord]:
        """Oldest first."""
        sql = f"SELECT {COLUMNS} FROM models"
        rows = (self._db.all(sql + " WHERE requester_id=? ORDER BY created_ms, version",
                             (requester_id,)) if requester_id is not None
                else self._db.all(sql + " ORDER BY created_ms, version"))
        return [_record(row) for row in rows]

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _load(conn: sqlite3.Connection, version: str) -> ModelRecord:
        row = conn.execute(f"SELECT {COLUMNS} FROM models WHERE version=?",
                           (version,)).fetchone()
        if row is None:
            raise ResourceNotFoundError(f"no model version {version!r} is registered")
        return _record(row)

    @staticmethod
    def _top(conn: sqlite3.Connection, requester_id: str) -> tuple[int, str] | None:
        row = conn.execute("SELECT depth, version FROM model_activations WHERE requester_id=? "
                           "ORDER BY depth DESC LIMIT 1", (requester_id,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    @staticmethod
    def _switch(conn: sqlite3.Connection, retired: str | None, active: str,
                now_ms: int) -> None:
        if retired is not None:
            conn.execute("UPDATE models SET status=? WHERE version=?",
                         (ModelStatus.RETIRED.value, retired))
        conn.execute("UPDATE models SET status=?, promoted_ms=? WHERE version=?",
                     (ModelStatus.ACTIVE.value, now_ms, active))
