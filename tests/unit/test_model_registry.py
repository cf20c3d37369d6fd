"""The model registry over a real SQLite database with its audit ledger: registration rules,
promotion, rollback, and what a plan's model version resolves to."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.ledger import AuditLedger
from coordinator.model_registry import SCHEMA, ModelDraft, ModelRegistry, ModelStatus
from fedcredit.audit import EntryKind, LedgerEntry
from fedcredit.errors import (
    ConflictError,
    ErrorCode,
    InvalidRequestError,
    ModelUnavailableError,
    ResourceNotFoundError,
)
from fedcredit.sqlite import SqliteDatabase
from mpc.signing import Signer
from tests.support.model_drafts import digest, model_draft

pytestmark = pytest.mark.unit
T0 = 1_790_000_000_000
SIGNER = Signer.generate()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "coordinator.sqlite3", SCHEMA)
    yield database
    database.close()


@pytest.fixture
def ledger(db: SqliteDatabase) -> AuditLedger:
    return AuditLedger(db, SIGNER)


@pytest.fixture
def registry(db: SqliteDatabase, ledger: AuditLedger) -> ModelRegistry:
    return ModelRegistry(db, ledger)


def last(ledger: AuditLedger) -> LedgerEntry:
    return ledger.entry(ledger.size() - 1)


def statuses(registry: ModelRegistry, requester: str) -> dict[str, str]:
    return {r.version: r.status.value for r in registry.list(requester)}


def test_registration_records_metadata_and_digests_never_weights(
        registry: ModelRegistry, ledger: AuditLedger) -> None:
    draft = model_draft("bank-2026.05", "bank")
    record = registry.register(draft, "coordinator", T0)
    assert (record.status, record.promoted_ms, record.created_ms) == (
        ModelStatus.CANDIDATE, None, T0)
    assert record.registered_by == "coordinator"
    assert registry.get("bank-2026.05") == record
    assert (record.slices, dict(record.metrics), dict(record.fingerprints)) == (
        draft.slices, dict(draft.metrics), dict(draft.fingerprints))
    entry = last(ledger)
    assert (entry.kind, entry.actor) == (EntryKind.MODEL_REGISTERED, "coordinator")
    assert entry.body == {
        "version": "bank-2026.05", "requester_id": "bank", "engine": "paillier",
        "session_id": "session-bank-2026.05",
        "slices": [{"member_id": s.member_id, "role": s.role, "sha256": s.sha256,
                    "feature_count": 2,
                    "features_sha256": hashlib.sha256("\n".join(s.features).encode()).hexdigest()}
                   for s in draft.slices],
        "metrics": {"auc": "0.78125", "ks": "0.4375", "rows": "2400.0"},
        "fingerprints": dict(draft.fingerprints)}


def test_a_wide_model_fits_in_its_ledger_entry(registry: ModelRegistry) -> None:
    draft = model_draft("wide", "bank", hosts=tuple(f"host-{i}" for i in range(9)))
    wide = tuple(f"feature_with_a_long_descriptive_name_{j:04d}" for j in range(600))
    draft = dataclasses.replace(draft, slices=tuple(
        dataclasses.replace(s, features=wide) for s in draft.slices))
    assert registry.register(draft, "coordinator", T0).slices[3].features == wide


def test_a_version_is_registered_once(registry: ModelRegistry, ledger: AuditLedger) -> None:
    registry.register(model_draft("v2", "bank"), "coordinator", T0)
    size = ledger.size()
    with pytest.raises(ConflictError, match="already registered"):
        registry.register(model_draft("v2", "shop"), "coordinator", T0 + 1)
    assert ledger.size() == size and registry.get("v2").requester_id == "bank"


def _replace_slice(draft_version: str, **changes: Any) -> ModelDraft:
    draft = model_draft(draft_version, "bank")
    return dataclasses.replace(draft, slices=(dataclasses.replace(draft.slices[0], **changes),
                                              *draft.slices[1:]))


@pytest.mark.parametrize(("draft", "why"), [
    *[(model_draft(name, "bank"), "must be 1-64") for name in
      ("", "../v2", "-v2", "v 2", "v2/x", "v" * 65, "v2\n")],
    (dataclasses.replace(model_draft("m1", "bank"), requester_id="shop"), "one guest"),
    (_replace_slice("m2", role="host"), "one guest"),
    (_replace_slice("m3", role="arbiter"), "guest or host"),
    (model_draft("m4", "bank", hosts=("shop", "shop")), "duplicate"),
    (model_draft("m5", "bank", hosts=("bank",)), "duplicate"),
    (_replace_slice("m6", sha256="ab" * 31), "sha256"),
    (_replace_slice("m7", sha256=digest("x").upper()), "sha256"),
    (dataclasses.replace(model_draft("m8", "bank"), slices=()), "at least one slice"),
    (dataclasses.replace(model_draft("m9", "bank"), metrics={"auc": float("nan")}), "finite"),
    (dataclasses.replace(model_draft("m10", "bank"), fingerprints={"telco": digest("d")}),
     "holds no slice"),
    (dataclasses.replace(model_draft("m11", "bank"), engine=""), "engine"),
])
def test_malformed_drafts_are_refused_and_record_nothing(
        registry: ModelRegistry, ledger: AuditLedger, draft: ModelDraft, why: str) -> None:
    with pytest.raises(InvalidRequestError, match=why):
        registry.register(draft, "coordinator", T0)
    assert ledger.size() == 0 and registry.list() == []


def test_promotion_activates_and_retires_and_is_recorded(
        registry: ModelRegistry, ledger: AuditLedger) -> None:
    for version in ("a", "b"):
        registry.register(model_draft(version, "bank"), "coordinator", T0)
    registry.register(model_draft("s1", "shop"), "coordinator", T0)
    assert registry.active("bank") is None
    promoted = registry.promote("a", "admin:1", T0 + 10)
    assert (promoted.status, promoted.promoted_ms) == (ModelStatus.ACTIVE, T0 + 10)
    assert (last(ledger).kind, last(ledger).actor, last(ledger).body) == (
        EntryKind.MODEL_PROMOTED, "admin:1",
        {"version": "a", "requester_id": "bank", "previous_version": None})
    registry.promote("b", "admin:1", T0 + 20)
    assert last(ledger).body["previous_version"] == "a"
    assert statuses(registry, "bank") == {"a": "retired", "b": "active"}
    assert registry.get("s1").status is ModelStatus.CANDIDATE  # other requesters untouched
    size = ledger.size()
    with pytest.raises(ConflictError, match="already the active model"):
        registry.promote("b", "admin:1", T0 + 30)
    with pytest.raises(ResourceNotFoundError):
        registry.promote("zzz", "admin:1", T0 + 30)
    assert ledger.size() == size


def test_rollback_walks_back_through_the_promotions(
        registry: ModelRegistry, ledger: AuditLedger) -> None:
    for version in ("a", "b", "c", "d"):
        registry.register(model_draft(version, "bank"), "coordinator", T0)
    with pytest.raises(ConflictError, match="no model has been promoted"):
        registry.rollback("bank", "admin:1", T0)
    for i, version in enumerate("abc"):
        registry.promote(version, "admin:1", T0 + i)
    restored = registry.rollback("bank", "admin:2", T0 + 100)
    assert (restored.version, restored.status, restored.promoted_ms) == (
        "b", ModelStatus.ACTIVE, T0 + 100)
    assert (last(ledger).kind, last(ledger).actor, last(ledger).body) == (
        EntryKind.MODEL_ROLLED_BACK, "admin:2",
        {"version": "b", "requester_id": "bank", "previous_version": "c"})
    assert statuses(registry, "bank") == {"a": "retired", "b": "active", "c": "retired",
                                          "d": "candidate"}
    registry.promote("d", "admin:1", T0 + 200)  # d replaces b; c stays rolled back
    assert registry.rollback("bank", "admin:1", T0 + 300).version == "b"
    assert registry.rollback("bank", "admin:1", T0 + 400).version == "a"
    size = ledger.size()
    with pytest.raises(ConflictError, match="a is the first model"):
        registry.rollback("bank", "admin:1", T0 + 500)
    assert ledger.size() == size and registry.active("bank").version == "a"  # type: ignore[union-attr]


def test_a_change_whose_ledger_entry_fails_is_not_made(
        registry: ModelRegistry, ledger: AuditLedger) -> None:
    registry.register(model_draft("a", "bank"), "coordinator", T0)
    with pytest.raises(InvalidRequestError, match="actor"):
        registry.promote("a", "x" * 300, T0)  # the entry is refused inside the transaction
    assert registry.active("bank") is None and registry.get("a").status is ModelStatus.CANDIDATE
    with pytest.raises(InvalidRequestError):
        registry.register(model_draft("b", "bank"), "", T0)
    with pytest.raises(ResourceNotFoundError):
        registry.get("b")


def test_an_empty_version_resolves_to_the_requester_s_active_model(
        registry: ModelRegistry) -> None:
    with pytest.raises(ModelUnavailableError) as refused:
        registry.resolve("bank", "")
    assert refused.value.code is ErrorCode.MODEL_VERSION_UNAVAILABLE
    assert refused.value.detail == (
        "no model has been promoted for bank; an admin promotes one with "
        "`fedcredit admin models promote VERSION`")
    registry.register(model_draft("a", "bank"), "coordinator", T0)
    with pytest.raises(ModelUnavailableError):
        registry.resolve("bank", "")  # a candidate is not active
    registry.promote("a", "admin:1", T0)
    assert registry.resolve("bank", "") == "a"
    with pytest.raises(ModelUnavailableError):
        registry.resolve("shop", "")


def test_an_explicit_version_must_be_the_requester_s_if_registered(
        registry: ModelRegistry) -> None:
    registry.register(model_draft("a", "bank"), "coordinator", T0)
    registry.register(model_draft("shadow", "bank"), "coordinator", T0)
    registry.promote("a", "admin:1", T0)
    assert registry.resolve("bank", "a") == "a"
    assert registry.resolve("bank", "shadow") == "shadow"  # a candidate, for a shadow test
    assert registry.resolve("bank", "v1") == "v1"  # hand-installed slices: planned as-is
    with pytest.raises(ModelUnavailableError, match="another member"):
        registry.resolve("shop", "a")
    with pytest.raises(InvalidRequestError):
        registry.resolve("bank", "../a")


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.sqlite3"
    db = SqliteDatabase(path, SCHEMA)
    registry = ModelRegistry(db, AuditLedger(db, SIGNER))
    for version in ("a", "b"):
        registry.register(model_draft(version, "bank"), "coordinator", T0)
        registry.promote(version, "admin:1", T0)
    db.close()
    db = SqliteDatabase(path, SCHEMA)
    try:
        again = ModelRegistry(db, AuditLedger(db, SIGNER))
        assert again.resolve("bank", "") == "b"
        assert again.rollback("bank", "admin:1", T0).version == "a"
        assert [r.version for r in again.list()] == ["a", "b"]
    finally:
        db.close()

