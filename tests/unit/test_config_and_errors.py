from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from coordinator.settings import CoordinatorSettings
from fedcredit.error_catalog import CATALOG
from fedcredit.errors import ErrorCode
from node.settings import NodeSettings

pytestmark = pytest.mark.unit
STRONG = "a-real-secret-of-sufficient-length"


def test_every_error_code_has_one_catalog_entry() -> None:
    assert set(CATALOG) == set(ErrorCode)
    assert all(400 <= e.http_status < 600 for e in CATALOG.values())


def test_coordinator_settings_refuse_unsafe_coverage_outside_dev() -> None:
    with pytest.raises(ValidationError, match="min_answered"):
        CoordinatorSettings(environment="prod", min_answered=1)
    assert CoordinatorSettings(environment="dev", min_answered=1).min_answered == 1


def node_settings(**overrides: object) -> NodeSettings:
    base: dict[str, Any] = {
        "environment": "prod",
        "member_id": "bank",
        "subject_key": bytes(range(100, 132)).hex(),
    }
    return NodeSettings(**{**base, **overrides})


def test_node_settings_refuse_unknown_fields_and_bad_subject_keys() -> None:
    assert node_settings().member_id == "bank"
    with pytest.raises(ValidationError, match="api_keys"):  # lender keys live in the hashed store
        node_settings(api_keys=[STRONG])
    with pytest.raises(ValidationError, match="transcript_file"):
        node_settings(transcript_file="t.bin")
    assert node_settings(environment="dev", transcript_file="t.bin").transcript_file
    with pytest.raises(ValidationError, match="subject key"):
        node_settings(subject_key="not-hex")
    with pytest.raises(ValidationError, match="subject key"):
        node_settings(subject_key="00" * 8)


def test_node_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDCREDIT_NODE_MEMBER_ID", "finco")
    settings = NodeSettings(environment="prod", subject_key=bytes(range(32)).hex())
    assert settings.member_id == "finco"


def test_the_outbox_sync_setting_takes_batch_or_entry_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert node_settings().audit_outbox_sync == "batch"
    monkeypatch.setenv("FEDCREDIT_NODE_AUDIT_OUTBOX_SYNC", "entry")
    assert node_settings().audit_outbox_sync == "entry"
    monkeypatch.setenv("FEDCREDIT_NODE_AUDIT_OUTBOX_SYNC", "sometimes")
    with pytest.raises(ValidationError, match="audit_outbox_sync"):
        node_settings()


def test_misspelled_settings_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDCREDIT_COORDINATOR_MIN_ANSWERD", "1")
    with pytest.raises(ValidationError, match="FEDCREDIT_COORDINATOR_MIN_ANSWERD"):
        CoordinatorSettings(environment="dev")


def test_patterned_subject_keys_are_refused_in_prod() -> None:
    compose_default = "0123456789abcdef" * 4
    with pytest.raises(ValidationError, match="subject_key looks hand-made"):
        node_settings(subject_key=compose_default)
    with pytest.raises(ValidationError, match="hand-made"):
        node_settings(subject_key="00" * 32)
    assert node_settings(environment="dev", subject_key=compose_default)
