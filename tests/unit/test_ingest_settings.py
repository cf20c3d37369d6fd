"""Ingest settings: where the subject key comes from, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mpc.pseudonym import SubjectKey
from node.ingest.settings import IngestSettings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("FEDCREDIT_INGEST_"):
            monkeypatch.delenv(name)


def test_key_from_the_environment_or_a_file(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    key = SubjectKey.generate()
    monkeypatch.setenv("FEDCREDIT_INGEST_SUBJECT_KEY", key.secret.hex())
    assert IngestSettings().load_subject_key() == key
    monkeypatch.delenv("FEDCREDIT_INGEST_SUBJECT_KEY")
    (tmp_path / "key").write_text(key.secret.hex() + "\n")
    monkeypatch.setenv("FEDCREDIT_INGEST_SUBJECT_KEY_FILE", str(tmp_path / "key"))
    assert IngestSettings().load_subject_key() == key


def test_no_key_unreadable_key_and_patterned_key_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="no subject key"):
        IngestSettings().load_subject_key()
    monkeypatch.setenv("FEDCREDIT_INGEST_SUBJECT_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="cannot read subject_key_file"):
        IngestSettings().load_subject_key()
    monkeypatch.delenv("FEDCREDIT_INGEST_SUBJECT_KEY_FILE")
    monkeypatch.setenv("FEDCREDIT_INGEST_SUBJECT_KEY", "ab" * 32)
    with pytest.raises(ValueError, match="hand-made"):
        IngestSettings().load_subject_key()
    monkeypatch.setenv("FEDCREDIT_INGEST_SUBJECT_KEY", "not-hex")
    with pytest.raises(ValidationError):
        IngestSettings()


def test_misspelled_ingest_settings_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDCREDIT_INGEST_SPARK_MASTR", "local[2]")
    with pytest.raises(ValidationError, match="FEDCREDIT_INGEST_SPARK_MASTR"):
        IngestSettings()
