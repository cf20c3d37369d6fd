"""The coordinator's admin API over real HTTPS (uvicorn in a thread, the coordinator's alliance
certificate): every cell of the permission matrix, checked against docs/security.md; tokens;
bad input; judicial cases; propagation; a restart mid-approval; the ``fedcredit admin`` CLI."""

from __future__ import annotations

import functools
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from coordinator.admission import JoinRequestRecord
from coordinator.api import AdminContext, create_admin_app
from coordinator.api.training_runs import TrainingRunIn
from coordinator.authority import AuthorityPaths, init_alliance
from coordinator.grants import GrantScope
from coordinator.principals import Principal, Role
from coordinator.product_catalog import make_product
from coordinator.registry import MemberRegistry, Membership
from coordinator.server import CoordinatorCore, open_core
from coordinator.settings import CoordinatorSettings
from fedcredit.audit import EntryDraft, EntryKind
from mpc.paillier import PaillierKeyPair, PaillierPublicKey
from mpc.pki import (
    CertRole,
    certificate_to_pem,
    create_csr,
    issue_certificate,
    load_ca,
    verify_certificate,
)
from mpc.signing import Signer
from tests.support.model_drafts import model_draft

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERVER_NAME = "coordinator.coordinator.fedcredit"
DAY_MS = 86_400_000
COLUMNS = ("admin", "regulator", "judicial", "no credentials")
A, D, OWN = "allowed", "denied", "own-case-only"
#: THE permission matrix. docs/security.md must show exactly this table (first test below);
#: every cell is then called over HTTPS.
MATRIX: tuple[tuple[str, str, str, str, str], ...] = (
    ("GET /healthz", A, A, A, A),
    ("GET /v1/me", A, A, A, D),
    ("GET /v1/join-requests", A, D, D, D),
    ("GET /v1/join-requests/{request_id}", A, D, D, D),
    ("POST /v1/join-requests/{request_id}/approve", A, D, D, D),
    ("POST /v1/join-requests/{request_id}/reject", A, D, D, D),
    ("GET /v1/members", A, D, D, D),
    ("GET /v1/members/{member_id}", A, D, D, D),
    ("POST /v1/members/{member_id}/suspend", A, D, D, D),
    ("POST /v1/members/{member_id}/reinstate", A, D, D, D),
    ("POST /v1/members/{member_id}/revoke", A, D, D, D),
    ("POST /v1/certificates/{serial}/revoke", A, D, D, D),
    ("GET /v1/policy", A, A, D, D),
    ("PUT /v1/policy", A, D, D, D),
    ("GET /v1/principals", A, A, D, D),
    ("POST /v1/principals", A, D, D, D),
    ("GET /v1/principals/{principal_id}", A, A, D, D),
    ("POST /v1/principals/{principal_id}/rotate", A, D, D, D),
    ("POST /v1/principals/{principal_id}/revoke", A, D, D, D),
    ("GET /v1/models", A, A, D, D),
    ("GET /v1/models/{version}", A, A, D, D),
    ("POST /v1/models/{version}/promote", A, D, D, D),
    ("POST /v1/models/requesters/{member_id}/rollback", A, D, D, D),
    ("GET /v1/training-runs", A, A, D, D),
    ("POST /v1/training-runs", A, D, D, D),
    ("GET /v1/training-runs/{run_id}", A, A, D, D),
    ("GET /v1/products", A, A, D, D),
    ("GET /v1/products/{product_id}", A, A, D, D),
    ("PUT /v1/products/{product_id}", A, D, D, D),
    ("DELETE /v1/products/{product_id}", A, D, D, D),
    ("GET /v1/ledger/head", A, A, A, D),
    ("GET /v1/ledger/entries", D, A, D, D),
    ("GET /v1/ledger/proofs/inclusion", A, A, D, D),
    ("GET /v1/ledger/proofs/consistency", A, A, A, D),
    ("POST /v1/grants", D, A, D, D),
    ("GET /v1/grants", D, A, OWN, D),
    ("POST /v1/grants/{grant_id}/revoke", D, A, D, D),
    ("GET /v1/cases/{case_id}/entries", D, A, OWN, D),
)


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        return self.now


@dataclass
class World:
    """A coordinator core with its admin API served over HTTPS, and one token per role."""

    settings: CoordinatorSettings
    clock: FakeClock
    core: CoordinatorCore
    context: AdminContext
    server: uvicorn.Server
    thread: threading.Thread
    http: httpx.Client
    principals: dict[str, Principal] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    counter: int = 0

    def call(self, who: str | None, method: str, path: str, body: Any = None,
             params: dict[str, Any] | None = None, token: str | None = None) -> httpx.Response:
        token = token or (self.tokens[who] if who in self.tokens else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, path, json=body, params=params, headers=headers,
                                 extensions={"sni_hostname": SERVER_NAME})

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.core.close()


def serve(data_dir: Path, clock: FakeClock, **overrides: Any) -> World:
    settings = CoordinatorSettings(**{"environment": "dev", "data_dir": data_dir,
                                      "bind": "127.0.0.1:0", "enroll_bind": "127.0.0.1:0",
                                      **overrides})
    core = open_core(settings, clock)
    context = AdminContext.from_core(core, settings, clock)
    identity = AuthorityPaths(data_dir).identity
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(
        create_admin_app(context), log_level="warning", access_log=False,
        timeout_graceful_shutdown=2,
        ssl_keyfile=str(identity.key), ssl_certfile=str(identity.certificate)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the admin API did not start"
        time.sleep(0.01)
    verify = ssl.create_default_context(cafile=str(data_dir / "ca.crt"))
    http = httpx.Client(base_url=f"https://127.0.0.1:{sock.getsockname()[1]}", verify=verify,
                        timeout=20)
    return World(settings, clock, core, context, server, thread, http)


def new_world(data_dir: Path, **overrides: Any) -> World:
    clock = FakeClock()
    init_alliance(data_dir, "test", clock())
    world = serve(data_dir, clock, **overrides)
    admin_token = world.context.principals.bootstrap_admin("first admin")
    world.tokens["admin"] = admin_token
    world.principals["admin"] = world.context.principals.authenticate(admin_token)
    for role in (Role.REGULATOR, Role.JUDICIAL):
        issued = world.context.principals.create(f"the {role.value}", role,
                                                 world.principals["admin"].actor)
        world.tokens[role.value], world.principals[role.value] = issued.token, issued.principal
    return world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    running = new_world(tmp_path_factory.mktemp("admin-api"), propagation_timeout_ms=0)
    yield running
    running.stop()


# -- fresh targets, so every allowed call changes something real --------------------------------
def add_member(world: World, membership: Membership = Membership.ACTIVE,
               heartbeat_version: int | None = None) -> str:
    member_id = world.fresh("member")
    with world.core.db.transaction() as conn:
        MemberRegistry.add_member(conn, member_id, member_id.title(), world.clock())
        if membership is not Membership.ACTIVE:
            MemberRegistry.set_membership(conn, member_id, membership)
    if heartbeat_version is not None:
        world.core.registry.heartbeat(member_id, heartbeat_version, world.clock())
    return member_id


def add_certificate(world: World) -> str:
    member_id = add_member(world)
    paths = AuthorityPaths(world.settings.data_dir)
    ca = load_ca(paths.ca_key.read_bytes(), paths.ca_certificate.read_bytes())
    cert = issue_certificate(ca, member_id, CertRole.MEMBER,
                             Signer.generate().private_key.public_key(), world.clock(), 30)
    identity = verify_certificate(cert, ca.certificate, world.clock())
    with world.core.db.transaction() as conn:
        MemberRegistry.add_certificate(conn, identity, certificate_to_pem(cert), world.clock())
    return identity.serial


def join_request(world: World, member_id: str | None = None) -> JoinRequestRecord:
    csr = create_csr(member_id or world.fresh("applicant"), Signer.generate())
    return world.core.admission.request_to_join(csr, "Applicant Bank", "ops@applicant.example")


def grant(world: World, grantee: Principal, scope: GrantScope | None = None,
          case_id: str | None = None, days: int = 7) -> Any:
    return world.context.grants.create(
        case_id or world.fresh("case"), grantee.principal_id,
        scope or GrantScope(query_ids=("q-none",)), world.clock() + days * DAY_MS,
        "court order 17", world.principals["regulator"].actor)


def add_model(world: World, requester: str | None = None, promote: bool = False) -> str:
    """A model as training registers it (in-process), for a fresh requester by default."""
    version = world.fresh("model")
    models = world.core.models
    models.register(model_draft(version, requester or world.fresh("requester")), "training:t",
                    world.clock())
    if promote:
        models.promote(version, "admin:setup", world.clock())
    return version


def promoted_twice(world: World) -> str:
    """A requester with two promotions behind it: something to roll back to."""
    requester = world.fresh("requester")
    for _ in range(2):
        add_model(world, requester, promote=True)
    return requester


@functools.cache
def _member_key() -> PaillierPublicKey:
    return PaillierKeyPair.generate(2048).public


def training_parties(world: World) -> dict[str, Any]:
    """A run between two fresh plannable members whose nodes are not listening: it starts
    (202) and then fails in the background (NODE_UNAVAILABLE). One run at a time: earlier ones
    are waited for."""
    for run_id in list(world.core.training.threads):
        world.core.training.wait(run_id, 30)
    members = [add_member(world) for _ in range(2)]
    for member in members:
        world.core.registry.announce(member, member, "127.0.0.1:9", _member_key(),
                                     world.clock())
    return {"guest": members[0], "hosts": members[1:], "binning": {"engine": "exact"}}


def finished_run(world: World) -> str:
    body = training_parties(world)
    run = world.core.training.start(TrainingRunIn.model_validate(body).to_config(),
                                    "admin:setup")
    return world.core.training.wait(run.run_id, 30).run_id


def product_body(member_id: str) -> dict[str, Any]:
    return {"member_id": member_id, "name": "Quick cash", "min_amount": "1000",
            "max_amount": "20000.00", "terms_months": [6, 12], "apr": "0.129",
            "disbursement_days": 1, "eligible_grades": ["A", "B"]}


def add_product(world: World) -> str:
    """A product in the catalog, for a fresh member."""
    product_id = world.fresh("product")
    product = make_product(product_id, add_member(world), "Quick cash", Decimal(1000),
                           Decimal(20000), [6, 12], Decimal("0.129"), 1, ["A", "B"])
    world.core.products.publish(product, "admin:setup", world.clock())
    return product_id


def judge(world: World) -> Principal:
    return world.context.principals.create(world.fresh("judge"), Role.JUDICIAL,
                                           world.principals["admin"].actor).principal


Call = tuple[str, str, Any, dict[str, Any] | None]
REASON = {"reason": "matrix test"}


def _policy_change(world: World) -> Call:
    version_doc = world.context.policies.current()[1].model_dump(mode="json")
    version_doc["hop_timeout_ms"] = 1_000 + world.counter
    world.counter += 1
    return "PUT", "/v1/policy", version_doc, None


#: How to make each matrix row's call valid (so "allowed" means a 2xx, not a 404).
CALLS: dict[str, Callable[[World], Call]] = {
    "GET /healthz": lambda w: ("GET", "/healthz", None, None),
    "GET /v1/me": lambda w: ("GET", "/v1/me", None, None),
    "GET /v1/join-requests": lambda w: ("GET", "/v1/join-requests", None, None),
    "GET /v1/join-requests/{request_id}": lambda w: (
        "GET", f"/v1/join-requests/{join_request(w).request_id}", None, None),
    "POST /v1/join-requests/{request_id}/approve": lambda w: (lambda r: (
        "POST", f"/v1/join-requests/{r.request_id}/approve", {"fingerprint": r.fingerprint},
        None))(join_request(w)),
    "POST /v1/join-requests/{request_id}/reject": lambda w: (
        "POST", f"/v1/join-requests/{join_request(w).request_id}/reject", REASON, None),
    "GET /v1/members": lambda w: ("GET", "/v1/members", None, None),
    "GET /v1/members/{member_id}": lambda w: ("GET", f"/v1/members/{add_member(w)}", None,
                                              None),
    "POST /v1/members/{member_id}/suspend": lambda w: (
        "POST", f"/v1/members/{add_member(w)}/suspend", REASON, None),
    "POST /v1/members/{member_id}/reinstate": lambda w: (
        "POST", f"/v1/members/{add_member(w, Membership.SUSPENDED)}/reinstate", REASON, None),
    "POST /v1/members/{member_id}/revoke": lambda w: (
        "POST", f"/v1/members/{add_member(w)}/revoke", REASON, None),
    "POST /v1/certificates/{serial}/revoke": lambda w: (
        "POST", f"/v1/certificates/{add_certificate(w)}/revoke", REASON, None),
    "GET /v1/policy": lambda w: ("GET", "/v1/policy", None, None),
    "PUT /v1/policy": _policy_change,
    "GET /v1/principals": lambda w: ("GET", "/v1/principals", None, None),
    "POST /v1/principals": lambda w: (
        "POST", "/v1/principals", {"name": w.fresh("auditor"), "role": "regulator"}, None),
    "GET /v1/principals/{principal_id}": lambda w: (
        "GET", f"/v1/principals/{judge(w).principal_id}", None, None),
    "POST /v1/principals/{principal_id}/rotate": lambda w: (
        "POST", f"/v1/principals/{judge(w).principal_id}/rotate", None, None),
    "POST /v1/principals/{principal_id}/revoke": lambda w: (
        "POST", f"/v1/principals/{judge(w).principal_id}/revoke", REASON, None),
    "GET /v1/models": lambda w: ("GET", "/v1/models", None, None),
    "GET /v1/models/{version}": lambda w: ("GET", f"/v1/models/{add_model(w)}", None, None),
    "POST /v1/models/{version}/promote": lambda w: (
        "POST", f"/v1/models/{add_model(w)}/promote", None, None),
    "POST /v1/models/requesters/{member_id}/rollback": lambda w: (
        "POST", f"/v1/models/requesters/{promoted_twice(w)}/rollback", None, None),
    "GET /v1/training-runs": lambda w: ("GET", "/v1/training-runs", None, None),
    "POST /v1/training-runs": lambda w: ("POST", "/v1/training-runs", training_parties(w),
                                         None),
    "GET /v1/training-runs/{run_id}": lambda w: (
        "GET", f"/v1/training-runs/{finished_run(w)}", None, None),
    "GET /v1/products": lambda w: ("GET", "/v1/products", None, None),
    "GET /v1/products/{product_id}": lambda w: (
        "GET", f"/v1/products/{add_product(w)}", None, None),
    "PUT /v1/products/{product_id}": lambda w: (
        "PUT", f"/v1/products/{w.fresh('product')}", product_body(add_member(w)), None),
    "DELETE /v1/products/{product_id}": lambda w: (
        "DELETE", f"/v1/products/{add_product(w)}", None, None),
    "GET /v1/ledger/head": lambda w: ("GET", "/v1/ledger/head", None, None),
    "GET /v1/ledger/entries": lambda w: ("GET", "/v1/ledger/entries", None, {"start": 0}),
    "GET /v1/ledger/proofs/inclusion": lambda w: (
        "GET", "/v1/ledger/proofs/inclusion", None, {"index": 0}),
    "GET /v1/ledger/proofs/consistency": lambda w: (
        "GET", "/v1/ledger/proofs/consistency", None, {"old_size": 1}),
    "POST /v1/grants": lambda w: ("POST", "/v1/grants", {
        "case_id": w.fresh("case"), "grantee": w.principals["judicial"].principal_id,
        "legal_basis": "order 1", "query_ids": ["q-1"], "expires_ms": w.clock() + DAY_MS},
        None),
    "GET /v1/grants": lambda w: ("GET", "/v1/grants", None, None),
    "POST /v1/grants/{grant_id}/revoke": lambda w: (
        "POST", f"/v1/grants/{grant(w, w.principals['judicial']).grant_id}/revoke", None,
        None),
    "GET /v1/cases/{case_id}/entries": lambda w: (
        "GET", f"/v1/cases/{grant(w, w.principals['judicial']).case_id}/entries", None, None),
}
#: Rows whose successful call appends to the audit ledger (a case read is recorded too).
RECORDED = {row for row in CALLS if row.startswith(("POST", "PUT", "DELETE"))} | {
    "GET /v1/cases/{case_id}/entries"}


def docs_matrix() -> list[tuple[str, ...]]:
    text = (ROOT / "docs" / "security.md").read_text()
    section = text.split("\n## Roles and permissions\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = tuple(c.strip() for c in lines[0].strip("|").split("|"))
    assert header == ("action", *COLUMNS)
    return [tuple(c.strip().strip("`") for c in line.strip("|").split("|"))
            for line in lines[2:]]


def test_security_md_shows_exactly_the_tested_permission_matrix() -> None:
    assert docs_matrix() == [tuple(row) for row in MATRIX]
    assert set(CALLS) == {row[0] for row in MATRIX}


def test_every_route_is_in_the_matrix(world: World) -> None:
    spec = world.call(None, "GET", "/openapi.json").json()
    routes = {f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops}
    assert routes == {row[0] for row in MATRIX}
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert "500" in op["responses"], path
            assert "HTTPValidationError" not in json.dumps(op), path  # 422s are our envelope
            if path != "/healthz":
                assert "UNKNOWN_API_KEY" in op["responses"]["401"]["description"], path
    models = spec["components"]["schemas"]
    assert [name for name, schema in models.items() if name.endswith(("Out", "In", "Create"))
            and "examples" not in schema] == []


@pytest.mark.parametrize(("row", "column"), [
    (row[0], column) for row in MATRIX for column in COLUMNS], ids=lambda v: str(v))
def test_permission_matrix_cell(world: World, row: str, column: str) -> None:
    expected = dict(zip(COLUMNS, next(r for r in MATRIX if r[0] == row)[1:], strict=True))[column]
    method, path, body, params = CALLS[row](world)
    who = None if column == "no credentials" else column
    size = world.core.ledger.size()
    response = world.call(who, method, path, body, params)
    if expected == D:
        want = (401, "UNKNOWN_API_KEY") if who is None else (403, "PERMISSION_DENIED")
        assert (response.status_code, response.json()["error"]["code"]) == want, response.text
        assert world.core.ledger.size() == size, "a refused call wrote to the ledger"
        return
    assert response.status_code in (200, 201, 202), response.text
    if row in RECORDED:
        entries = world.core.ledger.entries(size, world.core.ledger.size())
        assert entries and {e.actor for e in entries} == {world.principals[column].actor}
    if expected == OWN:  # the same call about someone else's case is refused
        other = grant(world, judge(world))
        if row == "GET /v1/grants":
            assert {g["grantee"] for g in response.json()} == {
                world.principals["judicial"].principal_id}
            assert other.grant_id not in {g["grant_id"] for g in world.call(
                "judicial", "GET", "/v1/grants").json()}
        else:
            refused = world.call("judicial", "GET", f"/v1/cases/{other.case_id}/entries")
            assert refused.status_code == 403, refused.text


# -- tokens ---------------------------------------------------------------------------------------
def error_of(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["detail"]


def test_bad_tokens_are_all_401_alike(world: World) -> None:
    real = world.tokens["admin"]
    principal_id = world.principals["admin"].principal_id
    for token in (f"fca_{principal_id}_{'A' * 43}", f"fca_{'0' * 16}_{'A' * 43}", real + "x",
                  real.upper(), "fca_not_hex", real.replace("fca_", "xyz_"), "x" * 5000):
        response = world.call(None, "GET", "/v1/me", token=token)
        assert error_of(response)[:2] == (401, "UNKNOWN_API_KEY"), token
        assert response.headers["www-authenticate"] == "Bearer"
    basic = world.http.get("/v1/me", headers={"Authorization": f"Basic {real}"},
                           extensions={"sni_hostname": SERVER_NAME})
    assert basic.status_code == 401


def test_rotated_and_revoked_tokens_stop_working_and_never_reach_the_ledger(
        world: World) -> None:
    created = world.call("admin", "POST", "/v1/principals",
                         {"name": world.fresh("examiner"), "role": "regulator"}).json()
    old, principal_id = created["token"], created["principal"]["principal_id"]
    assert old.startswith(f"fca_{principal_id}_")
    assert world.call(None, "GET", "/v1/me", token=old).json()["principal_id"] == principal_id
    new = world.call("admin", "POST", f"/v1/principals/{principal_id}/rotate").json()["token"]
    assert error_of(world.call(None, "GET", "/v1/me", token=old))[1] == "UNKNOWN_API_KEY"
    assert world.call(None, "GET", "/v1/me", token=new).status_code == 200
    revoked = world.call("admin", "POST", f"/v1/principals/{principal_id}/revoke", REASON)
    assert revoked.json()["active"] is False
    assert error_of(world.call(None, "GET", "/v1/me", token=new))[1] == "UNKNOWN_API_KEY"
    assert error_of(world.call("admin", "POST", f"/v1/principals/{principal_id}/rotate"))[
        :2] == (409, "RESOURCE_CONFLICT")
    stored = world.core.db.all("SELECT token_sha256 FROM admin_principals")
    ledger = world.core.ledger.entries(0, world.core.ledger.size())
    changes = [e for e in ledger if e.kind is EntryKind.PRINCIPAL_CHANGE
               and e.body["principal_id"] == principal_id]
    assert [e.body["action"] for e in changes] == ["create", "rotate", "revoke"]
    dump = repr([e.body for e in ledger])
    for secret in (old, new, old.rsplit("_", 1)[1], *(bytes(h[0]).hex() for h in stored)):
        assert secret not in dump
        assert all(secret.encode() not in bytes(h[0]) for h in stored)


def test_bootstrap_refuses_while_an_admin_exists_and_the_last_admin_stays(world: World) -> None:
    from fedcredit.errors import ConflictError

    with pytest.raises(ConflictError):
        world.context.principals.bootstrap_admin("second first admin")
    me = world.principals["admin"].principal_id
    refused = world.call("admin", "POST", f"/v1/principals/{me}/revoke", REASON)
    assert error_of(refused)[:2] == (409, "RESOURCE_CONFLICT")
    assert world.call("admin", "GET", "/v1/me").status_code == 200


# -- bad input --------------------------------------------------------------------------------
def test_approval_with_the_wrong_fingerprint_changes_nothing(world: World) -> None:
    request = join_request(world)
    impostor = join_request(world)  # another key's fingerprint
    size = world.core.ledger.size()
    response = world.call("admin", "POST", f"/v1/join-requests/{request.request_id}/approve",
                          {"fingerprint": impostor.fingerprint})
    status, code, detail = error_of(response)
    assert (status, code) == (403, "PERMISSION_DENIED") and "fingerprint" in detail
    assert world.core.ledger.size() == size
    after = world.call("admin", "GET", f"/v1/join-requests/{request.request_id}").json()
    assert (after["state"], after["admin_approved_by"]) == ("PENDING", None)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/v1/members/no-such-member", None),
    ("POST", "/v1/members/no-such-member/suspend", REASON),
    ("POST", "/v1/certificates/00ff/revoke", REASON),
    ("GET", "/v1/join-requests/no-such-request", None),
    ("POST", "/v1/join-requests/no-such-request/approve", {"fingerprint": "ab" * 32}),
    ("POST", "/v1/join-requests/no-such-request/reject", REASON),
    ("GET", "/v1/principals/0123456789abcdef", None),
    ("GET", "/v1/models/no-such-model", None),
    ("POST", "/v1/models/no-such-model/promote", None),
    ("GET", "/v1/products/no-such-product", None),
    ("DELETE", "/v1/products/no-such-product", None),
])
def test_unknown_targets_are_not_found(world: World, method: str, path: str, body: Any) -> None:
    assert error_of(world.call("admin", method, path, body))[:2] == (404, "RESOURCE_NOT_FOUND")


def test_a_missing_reason_is_an_invalid_request(world: World) -> None:
    response = world.call("admin", "POST", f"/v1/members/{add_member(world)}/suspend", {})
    assert error_of(response)[:2] == (422, "INVALID_REQUEST")


@pytest.mark.parametrize(("change", "field_named"), [
    ({"hop_timeout_ms": 5}, "hop_timeout_ms"),
    ({"plan_ttl_ms": 90_000, "max_plan_ttl_ms": 60_000}, "max_plan_ttl_ms"),
    ({"allowed_purposes": ["origination", "marketing"]}, "allowed_purposes"),
    ({"colour": "blue"}, "colour"),
])
def test_an_invalid_policy_names_the_field_and_changes_nothing(
        world: World, change: dict[str, Any], field_named: str) -> None:
    before = world.call("admin", "GET", "/v1/policy").json()
    size = world.core.ledger.size()
    response = world.call("admin", "PUT", "/v1/policy", before["policy"] | change)
    status, code, detail = error_of(response)
    assert (status, code) == (422, "POLICY_INVALID") and field_named in detail, detail
    assert world.call("admin", "GET", "/v1/policy").json() == before
    assert world.core.ledger.size() == size


def test_min_answered_below_two_is_refused_outside_dev(tmp_path: Path) -> None:
    prod = new_world(tmp_path, environment="prod")
    dev_world_policy = prod.call("admin", "GET", "/v1/policy").json()["policy"]
    try:
        response = prod.call("admin", "PUT", "/v1/policy", dev_world_policy | {"min_answered": 1})
        status, code, detail = error_of(response)
        assert (status, code) == (422, "POLICY_INVALID") and "min_answered" in detail
        assert prod.context.policies.current()[0] == 1
    finally:
        prod.stop()


def test_a_policy_change_is_a_new_version_recorded_with_its_fields(world: World) -> None:
    version, policy = world.context.policies.current()
    doc = policy.model_dump(mode="json") | {"min_answered": 1, "admission_quorum": 3}
    stale = world.call("admin", "PUT", "/v1/policy", doc, {"expected_version": version + 5})
    assert error_of(stale)[:2] == (409, "RESOURCE_CONFLICT")
    changed = world.call("admin", "PUT", "/v1/policy", doc, {"expected_version": version})
    assert changed.json()["changed"] == ["admission_quorum", "min_answered"]  # dev allows 1
    assert changed.json()["version"] == version + 1
    entry = world.core.ledger.entry(world.core.ledger.size() - 1)
    assert (entry.kind, entry.actor) == (EntryKind.POLICY_CHANGE,
                                         world.principals["admin"].actor)
    assert entry.body == {"old_version": version, "new_version": version + 1, "changed": {
        "admission_quorum": {"old": policy.admission_quorum, "new": 3},
        "min_answered": {"old": policy.min_answered, "new": 1}}}
    again = world.call("admin", "PUT", "/v1/policy", doc)  # the same document: no new version
    assert again.json()["version"] == version + 1 and again.json()["changed"] == []
    restore = policy.model_dump(mode="json")
    assert world.call("admin", "PUT", "/v1/policy", restore).json()["version"] == version + 2


# -- models ----------------------------------------------------------------------------------------
def test_models_are_listed_promoted_and_rolled_back_per_requester(world: World) -> None:
    requester = world.fresh("requester")
    first, second = (add_model(world, requester) for _ in range(2))
    other = add_model(world)
    listed = world.call("regulator", "GET", "/v1/models", params={"requester": requester})
    assert [(m["version"], m["status"]) for m in listed.json()] == [
        (first, "candidate"), (second, "candidate")]
    shown = world.call("regulator", "GET", f"/v1/models/{first}").json()
    registered = world.core.models.get(first)
    assert shown["slices"][0] == {"member_id": requester, "role": "guest",
                                  "sha256": registered.slices[0].sha256,
                                  "features": list(registered.slices[0].features)}
    assert shown["metrics"] == dict(registered.metrics) and shown["promoted_ms"] is None
    assert "weight" not in json.dumps(listed.json())
    assert other in {m["version"] for m in world.call("admin", "GET", "/v1/models").json()}

    promoted = world.call("admin", "POST", f"/v1/models/{first}/promote").json()
    assert (promoted["status"], promoted["promoted_ms"]) == ("active", world.clock())
    entry = world.core.ledger.entry(world.core.ledger.size() - 1)
    assert (entry.kind, entry.actor, entry.body) == (
        EntryKind.MODEL_PROMOTED, world.principals["admin"].actor,
        {"version": first, "requester_id": requester, "previous_version": None})
    world.call("admin", "POST", f"/v1/models/{second}/promote")
    assert world.core.models.resolve(requester, "") == second
    assert world.call("admin", "GET", f"/v1/models/{first}").json()["status"] == "retired"
    again = world.call("admin", "POST", f"/v1/models/{second}/promote")
    assert error_of(again)[:2] == (409, "RESOURCE_CONFLICT")

    rolled = world.call("admin", "POST", f"/v1/models/requesters/{requester}/rollback")
    assert (rolled.json()["version"], rolled.json()["status"]) == (first, "active")
    assert world.core.ledger.entry(world.core.ledger.size() - 1).kind is (
        EntryKind.MODEL_ROLLED_BACK)
    assert world.core.models.resolve(requester, "") == first
    size = world.core.ledger.size()
    status, code, detail = error_of(
        world.call("admin", "POST", f"/v1/models/requesters/{requester}/rollback"))
    assert (status, code) == (409, "RESOURCE_CONFLICT") and "nothing to roll back to" in detail
    assert world.core.ledger.size() == size


# -- judicial cases ------------------------------------------------------------------------------
def test_a_judicial_authority_reads_only_its_granted_case_and_every_read_is_recorded(
        world: World) -> None:
    from fedcredit.audit import verify_tree_head
    from mpc.merkle import verify_inclusion

    ledger, hour = world.core.ledger, 3_600_000
    world.clock.now += DAY_MS
    t0 = world.clock.now
    drafts = [  # (time, draft, in case-a?)
        (t0, EntryDraft(EntryKind.PLAN, "bank-x", {"requester_id": "bank-x", "route": ["bank-y"]},
                        "q-1"), True),
        (t0, EntryDraft(EntryKind.CONTRIBUTION, "bank-y", {"digest": "00"}, "q-1"), True),
        (t0, EntryDraft(EntryKind.PLAN, "bank-z", {"requester_id": "bank-z"}, "q-2"), False),
        (t0 + 600_000, EntryDraft(EntryKind.SUSPENSION, "admin:x", {"member_id": "bank-w"}), True),
        (t0 + 1_200_000, EntryDraft(EntryKind.PLAN, "bank-q", {"route": ["bank-w"]}, "q-3"), True),
        (t0 + 1_300_000, EntryDraft(EntryKind.POLICY_CHANGE, "bank-w", {"member_id": "bank-w"}),
         False),
        (t0 + 2 * hour, EntryDraft(EntryKind.REINSTATEMENT, "admin:x", {"member_id": "bank-w"}),
         False),
    ]
    expected = [ledger.append(d, now_ms=when).index for when, d, wanted in drafts if wanted]
    world.clock.now = t0 + 3 * hour
    judges = [world.context.principals.create(world.fresh("court"), Role.JUDICIAL,
                                              world.principals["admin"].actor) for _ in "ab"]
    mine, theirs = (j.token for j in judges)
    created = world.call("regulator", "POST", "/v1/grants", {
        "case_id": "case-a", "grantee": judges[0].principal.principal_id,
        "legal_basis": "order 4", "query_ids": ["q-1"], "member_id": "bank-w",
        "since_ms": t0, "until_ms": t0 + hour, "expires_ms": world.clock() + 7 * DAY_MS})
    assert created.status_code == 201, created.text

    read = world.call(None, "GET", "/v1/cases/case-a/entries", token=mine).json()
    assert [e["entry"]["index"] for e in read["entries"]] == expected and read["complete"]
    head = read["tree_head"]
    signer = world.core.identity.current.signer
    verify_tree_head(ledger.tree_head(head["size"]), signer.verifier)
    for item in read["entries"]:
        assert verify_inclusion(bytes.fromhex(item["entry"]["leaf_hash"]),
                                item["entry"]["index"], head["size"],
                                [bytes.fromhex(h) for h in item["inclusion"]],
                                bytes.fromhex(head["root"]))
    record = ledger.entry(ledger.size() - 1)
    assert (record.kind, record.actor) == (EntryKind.GRANT, judges[0].principal.actor)
    assert record.body["action"] == "case_read" and record.body["indices"] == expected

    paged = world.call(None, "GET", "/v1/cases/case-a/entries", params={"limit": 2},
                       token=mine).json()
    assert not paged["complete"] and len(paged["entries"]) == 2
    rest = world.call(None, "GET", "/v1/cases/case-a/entries", token=mine,
                      params={"start": paged["next_start"]}).json()
    assert [e["entry"]["index"] for e in paged["entries"] + rest["entries"]] == expected

    for token, case in ((theirs, "case-a"), (mine, "case-zzz"), (theirs, "case-zzz")):
        refused = world.call(None, "GET", f"/v1/cases/{case}/entries", token=token)
        assert error_of(refused)[:2] == (403, "PERMISSION_DENIED")
    revoked = grant(world, judges[0].principal)
    world.call("regulator", "POST", f"/v1/grants/{revoked.grant_id}/revoke")
    assert world.call(None, "GET", f"/v1/cases/{revoked.case_id}/entries",
                      token=mine).status_code == 403
    world.clock.now += 8 * DAY_MS  # the grant expired
    assert world.call(None, "GET", "/v1/cases/case-a/entries", token=mine).status_code == 403
    assert error_of(world.call("regulator", "GET", "/v1/cases/case-a/entries"))[:2] == (
        404, "RESOURCE_NOT_FOUND")


@pytest.mark.parametrize("body", [
    {"query_ids": []},
    {"query_ids": [], "member_id": "bank-w"},
    {"query_ids": ["q"], "since_ms": 1, "until_ms": 2},
    {"query_ids": ["q"], "case_id": "has/slash"},
    {"query_ids": ["q"], "expires_ms": 1},
])
def test_malformed_grants_are_refused(world: World, body: dict[str, Any]) -> None:
    doc = {"case_id": "case-m", "grantee": world.principals["judicial"].principal_id,
           "legal_basis": "order", "expires_ms": world.clock() + DAY_MS} | body
    assert error_of(world.call("regulator", "POST", "/v1/grants", doc))[:2] == (
        422, "INVALID_REQUEST")


def test_a_grant_for_a_non_judicial_principal_is_refused(world: World) -> None:
    doc = {"case_id": "case-r", "grantee": world.principals["regulator"].principal_id,
           "legal_basis": "order", "query_ids": ["q"], "expires_ms": world.clock() + DAY_MS}
    assert error_of(world.call("regulator", "POST", "/v1/grants", doc))[:2] == (
        409, "RESOURCE_CONFLICT")


# -- propagation and restarts --------------------------------------------------------------------
def test_suspension_waits_for_online_members_to_enforce_it(tmp_path: Path) -> None:
    world = new_world(tmp_path, propagation_timeout_ms=1_500)
    try:
        observer = add_member(world, heartbeat_version=world.core.registry.version())
        target = add_member(world)
        started = time.monotonic()
        lagging = world.call("admin", "POST", f"/v1/members/{target}/suspend", REASON).json()
        assert time.monotonic() - started >= 1.4
        assert lagging["unconfirmed"] == [observer]
        assert lagging["directory_version"] == world.core.registry.version()

        def catch_up() -> None:
            while world.core.registry.version() <= lagging["directory_version"]:
                time.sleep(0.02)
            world.core.registry.heartbeat(observer, world.core.registry.version(), world.clock())

        helper = threading.Thread(target=catch_up)
        helper.start()
        started = time.monotonic()
        confirmed = world.call("admin", "POST", f"/v1/members/{target}/reinstate", REASON)
        helper.join()
        assert confirmed.json()["unconfirmed"] == [] and time.monotonic() - started < 1.0
    finally:
        world.stop()


def test_a_restart_between_approval_and_the_member_vote_loses_nothing(tmp_path: Path) -> None:
    world = new_world(tmp_path)
    voter = add_member(world)
    policy = world.context.policies.current()[1].model_dump(mode="json")
    world.call("admin", "PUT", "/v1/policy", policy | {"admission_quorum": 1})
    request = join_request(world, "bank-new")
    approved = world.call("admin", "POST", f"/v1/join-requests/{request.request_id}/approve",
                          {"fingerprint": request.fingerprint}).json()
    assert (approved["state"], approved["approvals_required"]) == ("PENDING", 1)
    world.stop()  # the coordinator goes down between the admin's approval and the vote

    again = serve(tmp_path, world.clock)
    again.tokens = world.tokens
    try:
        again.core.admission.vote(request.request_id, voter, True)
        after = again.call("admin", "GET", f"/v1/join-requests/{request.request_id}").json()
        assert after["state"] == "APPROVED" and after["certificate_pem"]
        assert after["admin_approved_by"] == world.principals["admin"].actor
        member = again.call("admin", "GET", "/v1/members/bank-new").json()
        assert member["membership"] == "ACTIVE" and len(member["certificates"]) == 1
        kinds = [e.kind for e in again.core.ledger.entries(0, again.core.ledger.size())]
        assert kinds[-3:] == [EntryKind.VOTE, EntryKind.VOTE, EntryKind.ADMISSION]
    finally:
        again.stop()


# -- the CLI --------------------------------------------------------------------------------------
def cli(world: World, role: str | None, *args: str, **env: str) -> Any:
    from typer.testing import CliRunner

    from fedcredit.admin_cli import admin_app

    defaults = {"FEDCREDIT_ADMIN_URL": str(world.http.base_url).rstrip("/"),
                "FEDCREDIT_ADMIN_CA_CERT": str(world.settings.data_dir / "ca.crt"),
                "FEDCREDIT_ADMIN_TOKEN": world.tokens[role] if role else ""}
    return CliRunner().invoke(admin_app, list(args), env=defaults | env)


def test_the_cli_configures_and_audits_over_https(world: World, tmp_path: Path) -> None:
    import re

    member = add_member(world)
    listed = cli(world, "admin", "members", "list")
    assert listed.exit_code == 0 and member in listed.stdout, listed.output
    policy = world.context.policies.current()[1].model_dump(mode="json")
    (tmp_path / "policy.yaml").write_text(
        "\n".join(f"{k}: {json.dumps(v)}" for k, v in (policy | {"hop_timeout_ms": 777}).items()))
    changed = cli(world, "admin", "policy", "set", str(tmp_path / "policy.yaml"))
    assert "changed: hop_timeout_ms" in changed.stdout, changed.output
    assert world.context.policies.current()[1].hop_timeout_ms == 777
    for actor in ("bank-p", "bank-q"):
        world.core.ledger.append(EntryDraft(EntryKind.CONTRIBUTION, actor, {"n": 1}, "q-cli"),
                                 now_ms=world.clock())
    created = cli(world, "admin", "principals", "create", "court-cli", "--role", "judicial")
    token = re.search(r"fca_([0-9a-f]{16})_\S+", created.stdout)
    assert token is not None, created.output
    granted = cli(world, "regulator", "grants", "create", "--case", "case-cli", "--grantee",
                  token.group(1), "--legal-basis", "order 9", "--query-id", "q-cli")
    assert granted.exit_code == 0, granted.output
    read = cli(world, None, "cases", "entries", "case-cli", FEDCREDIT_ADMIN_TOKEN=token.group(0))
    assert read.exit_code == 0 and "2 entries, each proved" in read.stdout, read.output
    for role, args in (("regulator", ("--index", "0")), ("admin", ("--old-size", "1"))):
        proved = cli(world, role, "ledger", "prove", *args)
        assert proved.exit_code == 0 and proved.stdout.startswith("verified"), proved.output


def test_cli_failures_are_one_line_code_and_detail(world: World, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("hop_timeout_ms: 5\n")
    (tmp_path / "broken.yaml").write_text("a: 1\n  b: [\n")
    other = tmp_path / "other-alliance"
    init_alliance(other, "other", world.clock())
    request = join_request(world)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    cases = [
        ("regulator", ("members", "list"), {}, "PERMISSION_DENIED: this action is for the admin"),
        (None, ("members", "list"), {}, "UNKNOWN_API_KEY: missing admin token"),
        ("admin", ("policy", "set", str(tmp_path / "bad.yaml")), {},
         "POLICY_INVALID: hop_timeout_ms"),
        ("admin", ("policy", "set", str(tmp_path / "broken.yaml")), {},
         f"POLICY_INVALID: {tmp_path / 'broken.yaml'}:2"),
        ("admin", ("members", "approve", request.request_id, "--fingerprint", "ab" * 32), {},
         "PERMISSION_DENIED: the fingerprint does not match"),
        ("admin", ("members", "show", "nobody"), {}, "RESOURCE_NOT_FOUND: no member"),
        ("admin", ("members", "list"), {"FEDCREDIT_ADMIN_CA_CERT": str(other / "ca.crt")},
         "CERTIFICATE_INVALID: the server's certificate"),
        ("admin", ("members", "list"), {"FEDCREDIT_ADMIN_URL": "http://127.0.0.1:1"},
         "INSECURE_TRANSPORT_REFUSED"),
        ("admin", ("members", "list"),
         {"FEDCREDIT_ADMIN_URL": f"https://127.0.0.1:{closed.getsockname()[1]}"},
         "COORDINATOR_UNAVAILABLE: cannot reach"),
    ]
    for role, args, env, message in cases:
        result = cli(world, role, *args, **env)
        assert result.exit_code == 1 and result.stderr.startswith(message), result.output
        assert "Traceback" not in result.output and len(result.stderr.splitlines()) == 1
    closed.close()


def test_the_cli_shows_promotes_and_rolls_back_models(world: World) -> None:
    requester = world.fresh("requester")
    first, second = (add_model(world, requester) for _ in range(2))
    for version in (first, second):
        promoted = cli(world, "admin", "models", "promote", version)
        assert promoted.exit_code == 0, promoted.output
        assert f"{requester} now evaluates with model {version}" in promoted.stdout
    listed = cli(world, "regulator", "models", "list", "--requester", requester)
    assert listed.exit_code == 0, listed.output
    assert [line.split()[1] for line in listed.stdout.splitlines() if requester in line] == [
        first, second]
    shown = cli(world, "admin", "models", "show", first)
    assert shown.exit_code == 0 and "retired" in shown.stdout and "0.78125" in shown.stdout
    host = world.core.models.get(first).slices[1]
    assert f"{host.member_id}: slice {host.sha256}, training data" in shown.stdout
    rolled = cli(world, "admin", "models", "rollback", requester)
    assert f"{requester} now evaluates with model {first}" in rolled.stdout, rolled.output
    refused = cli(world, "admin", "models", "rollback", requester)
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.startswith(f"RESOURCE_CONFLICT: nothing to roll back to for {requester}")
    denied = cli(world, "regulator", "models", "promote", first)
    assert denied.stderr.startswith("PERMISSION_DENIED"), denied.output
