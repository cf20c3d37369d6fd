"""A real, throwaway PostgreSQL server for the tests (see :mod:`node.store.pg_local`).

``postgres_url`` (session scope) starts one server for the whole run and yields the URL of an
empty database; tests that need isolation use their own schema (``?schema=``, see
:func:`schema_url`). Without the server binaries the tests that use it are skipped — or fail
when ``CI`` is set, so a CI machine cannot silently lose its PostgreSQL coverage.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from node.store.pg_local import INSTALL_HINT, find_server_binaries, start_local_postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if find_server_binaries() is None:
        message = f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = start_local_postgres(durable=False)
    try:
        yield server.url()
    finally:
        server.stop()


def schema_url(base: str, prefix: str = "t") -> str:
    """``base`` in a schema of its own (a fresh, empty store)."""
    return f"{base}?schema={prefix}_{secrets.token_hex(6)}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh, empty feature store, once per backend."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path_factory.mktemp('store') / 'features.sqlite3'}"
    return schema_url(request.getfixturevalue("postgres_url"))
