"""Feature store URLs: which store, where; and what of them may be shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcredit.errors import ConfigurationError
from node.store.location import (
    PostgresLocation,
    SqliteLocation,
    parse_store_url,
    redact_url,
    url_passwords,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/fedcredit/features.db", "/var/lib/fedcredit/features.db"),
        ("sqlite:////var/lib/features.db", "/var/lib/features.db"),
        ("sqlite:node-data/features.db", "node-data/features.db"),
        ("node-data/features.sqlite3", "node-data/features.sqlite3"),
        ("/abs/features.sqlite3", "/abs/features.sqlite3"),
    ],
)
def test_sqlite_urls_and_bare_paths(url: str, path: str) -> None:
    assert parse_store_url(url) == SqliteLocation(Path(path))


def test_postgres_urls_name_a_schema_and_keep_other_parameters() -> None:
    assert parse_store_url("postgresql://u:p@db:5432/credit?schema=bank&sslmode=require") == (
        PostgresLocation("postgresql://u:p@db:5432/credit?sslmode=require", "bank"))
    assert parse_store_url("postgres://u@db/credit") == PostgresLocation(
        "postgres://u@db/credit", "fedcredit_features")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("sqlite:", "names no file"),
        ("sqlite://host/x.db", "sqlite:///absolute/path"),
        ("mysql://u:p@h/db", "unsupported feature store URL scheme 'mysql'"),
        ("postgresql://u:p@h/db?schema=Bank;drop", "lower-case SQL name"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_store_url(url)


def test_passwords_are_redacted_in_every_spelling() -> None:
    url = "postgresql://fc:p%40ss%2Fw@db:5432/credit?schema=bank"
    assert redact_url(url) == "postgresql://fc:***@db:5432/credit?schema=bank"
    assert set(url_passwords(url)) == {"p%40ss%2Fw", "p@ss/w"}
    assert redact_url("postgresql://db/credit?user=fc&password=hunter2") == (
        "postgresql://db/credit?user=fc&password=***")
    assert url_passwords("postgresql://db/credit?password=hunter2") == ("hunter2",)
    assert url_passwords("postgresql://fc@db/credit") == ()
