"""API keys over real HTTP (uvicorn on port 0, httpx) and through ``fedcredit node api-keys``.

The app here has only the lender API's dependencies and error envelope, so these tests need no
alliance: what they pin is how a key's scopes and state become ``401``/``403``/``200``.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from typer.testing import CliRunner

from fedcredit.error_catalog import entry, http_status
from fedcredit.errors import ErrorCode, FedCreditError
from node.api.deps import (
    ApiContext,
    CanCreateEvaluations,
    CanReadEvaluations,
    CanReadInquiries,
    HealthProbe,
)
from node.api.metrics import ApiMetrics
from node.api_keys import UNKNOWN_KEY_DETAIL, ApiKeyStore, ApiScope
from node.api_keys_cli import api_keys_app
from node.evaluation import EvaluationService
from node.portfolio import PortfolioService
from node.settings import NodeSettings

pytestmark = pytest.mark.integration
CREATE, READ, INQUIRIES = (ApiScope.EVALUATIONS_CREATE, ApiScope.EVALUATIONS_READ,
                           ApiScope.INQUIRIES_READ)
T0 = 1_800_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def probe_app(context: ApiContext) -> FastAPI:
    """Routes guarded like the lender API's, answering with the key that got through."""
    app = FastAPI()
    app.state.context = context

    @app.exception_handler(FedCreditError)
    async def _typed_error(request: Request, exc: FedCreditError) -> JSONResponse:
        body = {"error": {"code": exc.code.value, "message": entry(exc.code).message,
                          "detail": exc.detail}}
        return JSONResponse(body, status_code=http_status(exc))

    @app.post("/v1/evaluations")
    def create(key: CanCreateEvaluations) -> dict[str, str]:
        return {"key_id": key.key_id}

    @app.get("/v1/evaluations/{query_id}")
    def read(key: CanReadEvaluations, query_id: str) -> dict[str, str]:
        return {"key_id": key.key_id}

    @app.get("/v1/inquiries")
    def inquiries(key: CanReadInquiries) -> dict[str, str]:
        return {"key_id": key.key_id}

    return app


@dataclass
class Served:
    url: str
    keys: ApiKeyStore
    clock: FakeClock
    db_path: Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    clock = FakeClock()
    db_path = tmp_path / "api-keys.sqlite3"
    keys = ApiKeyStore(db_path, clock)
    context = ApiContext(
        evaluations=cast(EvaluationService, None),  # these routes never evaluate
        portfolios=cast(PortfolioService, None),
        api_keys=keys,
        metrics=ApiMetrics(),
        health=HealthProbe(member_id="bank", registered=lambda: True, subjects=lambda: 0),
        clock=clock,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(probe_app(context), log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}", keys, clock, db_path)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        keys.close()


def call(served: Served, method: str, path: str, key: str | None) -> httpx.Response:
    headers = {"X-API-Key": key} if key is not None else {}
    return httpx.request(method, served.url + path, headers=headers, timeout=10)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}
    return cast(dict[str, Any], body["error"])


def test_a_key_with_the_scope_gets_through(served: Served) -> None:
    record, token = served.keys.create("origination", [CREATE, READ])
    for method, path in (("POST", "/v1/evaluations"), ("GET", "/v1/evaluations/q1")):
        response = call(served, method, path, token)
        assert response.status_code == 200, response.text
        assert response.json() == {"key_id": record.key_id}


def test_no_wrong_or_revoked_key_is_401_and_all_read_the_same(served: Served) -> None:
    record, token = served.keys.create("origination", [CREATE])
    revoked, revoked_token = served.keys.create("old-app", [CREATE])
    served.keys.revoke(revoked.key_id)
    wrong = f"fck_{record.key_id}_{'A' * 43}"
    bodies = []
    for key in (None, "", wrong, "not-a-key", revoked_token):
        response = call(served, "POST", "/v1/evaluations", key)
        assert response.status_code == 401, key
        error = error_of(response)
        assert error["code"] == ErrorCode.UNKNOWN_API_KEY.value
        bodies.append(response.json())
    assert all(b == bodies[0] for b in bodies), "no oracle: one body for every failure"
    assert bodies[0]["error"]["detail"] == UNKNOWN_KEY_DETAIL
    assert call(served, "POST", "/v1/evaluations", token).status_code == 200


def test_a_genuine_key_without_the_scope_is_403(served: Served) -> None:
    _, reader = served.keys.create("reporting", [READ])
    _, creator = served.keys.create("origination", [CREATE])
    for key, method, path in ((reader, "POST", "/v1/evaluations"),
                              (creator, "GET", "/v1/evaluations/q1"),
                              (reader, "GET", "/v1/inquiries")):
        response = call(served, method, path, key)
        assert response.status_code == 403, (method, path)
        assert error_of(response)["code"] == ErrorCode.PERMISSION_DENIED.value
    _, inquirer = served.keys.create("inquiries", [INQUIRIES])
    assert call(served, "GET", "/v1/inquiries", inquirer).status_code == 200


def test_the_apis_clock_decides_expiry_and_grace(served: Served) -> None:
    record, old = served.keys.create("origination", [CREATE], expires_ms=T0 + 3_600_000)
    new = served.keys.rotate(record.key_id, grace_ms=60_000)
    assert call(served, "POST", "/v1/evaluations", old).status_code == 200
    served.clock.now = T0 + 60_000
    assert call(served, "POST", "/v1/evaluations", old).status_code == 401
    assert call(served, "POST", "/v1/evaluations", new).status_code == 200
    served.clock.now = T0 + 3_600_000
    assert call(served, "POST", "/v1/evaluations", new).status_code == 401


def test_the_openapi_document_declares_the_key_header(served: Served) -> None:
    doc = httpx.get(served.url + "/openapi.json", timeout=10).json()
    scheme = doc["components"]["securitySchemes"]["APIKeyHeader"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "X-API-Key",
                      "description": scheme["description"]}
    assert doc["paths"]["/v1/evaluations"]["post"]["security"] == [{"APIKeyHeader": []}]


# -- fedcredit node api-keys -------------------------------------------------------------------
@pytest.fixture
def node_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A node's environment pointing at a fresh data directory; returns the key store."""
    for name in list(os.environ):
        if name.upper().startswith("FEDCREDIT_NODE_"):
            monkeypatch.delenv(name)
    env = {
        "FEDCREDIT_NODE_ENVIRONMENT": "dev",
        "FEDCREDIT_NODE_MEMBER_ID": "bank",
        "FEDCREDIT_NODE_SUBJECT_KEY": bytes(range(32)).hex(),
        "FEDCREDIT_NODE_DATA_DIR": str(tmp_path / "bank"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return NodeSettings().api_key_store_path


def cli(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(api_keys_app, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def authenticates(db_path: Path, token: str, scope: ApiScope) -> bool:
    keys = ApiKeyStore(db_path)
    try:
        keys.authenticate(token, scope, int(time.time() * 1000))
        return True
    except FedCreditError:
        return False
    finally:
        keys.close()


def test_the_cli_creates_lists_rotates_and_revokes(node_env: Path, tmp_path: Path) -> None:
    code, out, err = cli("create", "--name", "origination", "--scope", "evaluations:create",
                         "--scope", "evaluations:read", "--expires-days", "30")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("fck_") and "shown once" in err
    key_id = token.split("_")[1]
    assert authenticates(node_env, token, CREATE) and authenticates(node_env, token, READ)
    assert not authenticates(node_env, token, INQUIRIES)

    code, out, _ = cli("list")
    assert code == 0 and key_id in out and "origination" in out
    assert "evaluations:create" in out and "evaluations:read" in out
    secret = token.split("_", 2)[2]
    assert secret not in out and secret[:8] not in out

    token_file = tmp_path / "secrets" / "origination.key"
    code, out, err = cli("rotate", key_id, "--grace-minutes", "5", "--token-file",
                         str(token_file))
    assert code == 0, err
    assert out == "" and "the old token works until" in err
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    new = token_file.read_text().strip()
    assert new.startswith(f"fck_{key_id}_") and new != token
    assert authenticates(node_env, new, CREATE) and authenticates(node_env, token, CREATE)

    code, _, err = cli("revoke", key_id)
    assert code == 0 and key_id in err
    assert not authenticates(node_env, new, CREATE)
    assert not authenticates(node_env, token, CREATE)
    code, _, err = cli("revoke", key_id)
    assert code == 1 and "RESOURCE_CONFLICT" in err

    code, out, _ = cli("list")
    row = next(line for line in out.splitlines() if key_id in line)
    # created, expires, last used (by the checks above), revoked
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d", row)) == 4


def test_the_cli_imports_a_key_from_stdin(node_env: Path) -> None:
    legacy = "Zx8-legacy-lender-key-41c9f2"
    code, out, err = cli("import", "--name", "legacy-app", "--scope", "evaluations:read",
                         stdin=legacy + "\n")
    assert code == 0, err
    assert legacy not in out + err
    assert authenticates(node_env, legacy, READ) and not authenticates(node_env, legacy, CREATE)
    code, out, _ = cli("list")
    assert "legacy-app (imported)" in out

    code, _, err = cli("import", "--name", "weak", "--scope", "evaluations:read",
                       stdin="changeme\n")
    assert code == 1 and "INVALID_REQUEST" in err


def test_the_cli_refuses_unknown_scopes_and_ids(node_env: Path) -> None:
    code, _, _ = cli("create", "--name", "x", "--scope", "admin")
    assert code == 2
    code, _, err = cli("rotate", "0123456789abcdef")
    assert code == 1 and "RESOURCE_NOT_FOUND" in err
