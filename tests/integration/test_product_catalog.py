"""The alliance product catalog end to end: an admin publishes products over the HTTPS admin API
(through ``fedcredit admin products``), nodes fetch the catalog over mutual-TLS gRPC, and a
lender's evaluation (real HTTP) lists the products that fit, ranked, each with its reason; a
withdrawal reaches the next evaluation; only members may fetch the catalog; a refresh that
cannot reach the coordinator keeps the last catalog."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from typer.testing import CliRunner

from coordinator.authority import load_authority
from coordinator.principals import PrincipalStore
from coordinator.registry import MemberRegistry, Membership
from fedcredit.admin_cli import admin_app
from fedcredit.admin_client import AdminClient
from fedcredit.audit import EntryKind
from fedcredit.demo.population import Population
from fedcredit.errors import ErrorCode, FedCreditError
from fedcredit.tls import target_name_option
from fedcredit.transport import create_channel
from mpc.pki import CertRole, certificate_to_pem, issue_certificate
from mpc.pseudonym import SubjectKey
from mpc.signing import Signer
from node.coordinator_client import CoordinatorClient
from node.product_catalog import CatalogCopy
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc
from scoring.products import match_products
from scoring.scorecard import Grade
from tests.support.alliance import API_KEY, InProcessAlliance, body, start_alliance
from tests.support.grpc_calls import coordinator_channel, error_code, member_identity, now_ms

pytestmark = pytest.mark.integration
REQUESTER = "bank"
#: A grade C applicant without 90-day arrears; with this income the limit exceeds the request.
APPLICANT = 3
REQUEST = {"requested_amount": 20000, "term_months": 24, "verified_annual_income": 200000,
           "monthly_spending": 3000}
ALL = ["A", "B", "C", "D", "E"]
PRODUCTS = [  # (id, member, min, max, terms, apr, days, grades)
    ("bank-quick", "bank", "1000", "10000", [12, 24], "0.15", 1, ALL),     # lends half
    ("bank-big", "bank", "5000", "50000", [24], "0.12", 3, ALL),           # full, 12%
    ("bank-prime", "bank", "1000", "50000", [24], "0.05", 1, ["A"]),       # grade A only
    ("finco-flex", "finco", "1000", "30000", [6, 12, 24], "0.11", 2, ALL),  # full, 11%
    ("finco-short", "finco", "1000", "30000", [6], "0.08", 1, ALL),         # not for 24 months
    ("finco-jumbo", "finco", "50000", "90000", [24], "0.07", 1, ALL),       # above the request
]


@pytest.fixture(scope="module")
def shop_alliance(tmp_path_factory: pytest.TempPathFactory, population: Population,
                  subject_key: SubjectKey) -> Iterator[InProcessAlliance]:
    members = [i.profile.member_id for i in population.institutions]
    running = start_alliance(tmp_path_factory.mktemp("products"), population, subject_key,
                             nodes={m: {"product_refresh_ms": 100} for m in members})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def token(shop_alliance: InProcessAlliance) -> str:
    core = shop_alliance.coordinator.core
    return PrincipalStore(core.db, core.ledger).bootstrap_admin("catalog admin")


@pytest.fixture(scope="module")
def admin(shop_alliance: InProcessAlliance, token: str) -> AdminClient:
    return AdminClient(f"https://127.0.0.1:{shop_alliance.coordinator.admin_port}",
                       shop_alliance.coordinator_settings.ca_certificate_path, token)


def cli(alliance: InProcessAlliance, token: str, *args: str) -> Any:
    env = {"FEDCREDIT_ADMIN_URL": f"https://127.0.0.1:{alliance.coordinator.admin_port}",
           "FEDCREDIT_ADMIN_CA_CERT": str(alliance.coordinator_settings.ca_certificate_path),
           "FEDCREDIT_ADMIN_TOKEN": token}
    return CliRunner().invoke(admin_app, list(args), env=env)


def catalog_copy(alliance: InProcessAlliance, member: str) -> CatalogCopy:
    copy: CatalogCopy = alliance.nodes[member].app.state.context.evaluations._products
    return copy


def await_catalog(alliance: InProcessAlliance, member: str, timeout_s: float = 10) -> None:
    """Until ``member``'s node holds the coordinator's current catalog version."""
    want = alliance.coordinator.core.products.version()
    deadline = time.monotonic() + timeout_s
    while catalog_copy(alliance, member).version != want:
        assert time.monotonic() < deadline, f"{member} did not fetch catalog version {want}"
        time.sleep(0.02)


def lending(alliance: InProcessAlliance) -> dict[str, Any]:
    response = httpx.post(f"{alliance.url(REQUESTER)}/v1/evaluations",
                          json=body(alliance.population, APPLICANT, **REQUEST),
                          headers={"X-API-Key": API_KEY}, timeout=30)
    assert response.status_code == 201, response.text
    doc: dict[str, Any] = response.json()["lending"]
    return doc


def expected_matches(alliance: InProcessAlliance, doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What matching the coordinator's catalog gives for the report's grade and limit."""
    matching = match_products(
        [r.product for r in alliance.coordinator.core.products.list()],
        Decimal(REQUEST["requested_amount"]), Decimal(str(doc["credit_limit"])),
        Grade(doc["grade"]), REQUEST["term_months"])
    return [(m.rank, m.product.product_id, m.product.member_id, float(m.offered_amount),
             m.reason) for m in matching.matches]


def shown(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(p["rank"], p["product_id"], p["member_id"], p["offered_amount"], p["reason"])
            for p in doc["products"]]


def test_published_products_reach_evaluations_ranked_with_their_reasons(
        shop_alliance: InProcessAlliance, token: str, tmp_path: Path) -> None:
    file = tmp_path / "products.yaml"
    file.write_text(json.dumps({"products": [{
        "product_id": pid, "member_id": member, "name": pid.replace("-", " ").title(),
        "min_amount": low, "max_amount": high, "terms_months": terms, "apr": apr,
        "disbursement_days": days, "eligible_grades": grades}
        for pid, member, low, high, terms, apr, days, grades in PRODUCTS]}))  # JSON is YAML
    published = cli(shop_alliance, token, "products", "publish", str(file))
    assert published.exit_code == 0, published.output
    assert "finco's product finco-jumbo: revision 1, catalog version 6" in published.stdout
    listed = cli(shop_alliance, token, "products", "list", "--member", "finco")
    assert [line.split()[1] for line in listed.stdout.splitlines() if "finco-" in line] == [
        "finco-flex", "finco-jumbo", "finco-short"], listed.output
    entries = shop_alliance.coordinator.core.ledger
    kinds = [e.kind for e in entries.entries(0, entries.size())]
    assert kinds.count(EntryKind.PRODUCT_PUBLISHED) == len(PRODUCTS)

    await_catalog(shop_alliance, REQUESTER)
    health = httpx.get(f"{shop_alliance.url(REQUESTER)}/healthz", timeout=10).json()
    assert health["product_catalog_version"] == shop_alliance.coordinator.core.products.version()
    doc = lending(shop_alliance)
    assert doc["grade"] == "C" and doc["credit_limit"] >= REQUEST["requested_amount"], doc
    assert [p["product_id"] for p in doc["products"]] == ["finco-flex", "bank-big", "bank-quick"]
    assert shown(doc) == expected_matches(shop_alliance, doc)
    assert doc["products"][0]["reason"].startswith("the full amount at 11.00% APR, disbursed")
    assert doc["products"][2]["reason"].startswith("50% of the request (bounded by the product")
    assert doc["products_note"] is None
    assert doc["plan"]["apr"] == 0.11  # the best match's rate prices the plan


def test_a_withdrawn_product_is_gone_from_the_next_evaluation(
        shop_alliance: InProcessAlliance, token: str) -> None:
    withdrawn = cli(shop_alliance, token, "products", "withdraw", "finco-flex")
    assert withdrawn.exit_code == 0, withdrawn.output
    assert "finco's product finco-flex withdrawn (revision 1)" in withdrawn.stdout
    await_catalog(shop_alliance, REQUESTER)
    doc = lending(shop_alliance)
    assert [p["product_id"] for p in doc["products"]] == ["bank-big", "bank-quick"]
    assert shown(doc) == expected_matches(shop_alliance, doc)


def test_a_refresh_that_cannot_reach_the_coordinator_keeps_the_last_catalog(
        shop_alliance: InProcessAlliance) -> None:
    copy = catalog_copy(shop_alliance, REQUESTER)
    held, fetch = copy.version, copy._fetch
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    unreachable = CoordinatorClient(f"127.0.0.1:{closed.getsockname()[1]}",
                                    shop_alliance.nodes[REQUESTER].membership._identity, 500)
    copy._fetch = unreachable.products
    try:
        with pytest.raises(FedCreditError) as info:
            unreachable.products(0)
        assert info.value.code is ErrorCode.COORDINATOR_UNAVAILABLE
        assert copy.refresh() is False and copy.version == held
        doc = lending(shop_alliance)
        assert [p["product_id"] for p in doc["products"]] == ["bank-big", "bank-quick"]
    finally:
        copy._fetch = fetch
        unreachable.close()
        closed.close()


def test_only_an_admitted_members_certificate_fetches_the_catalog(
        shop_alliance: InProcessAlliance, admin: AdminClient) -> None:
    publish(admin, "shop-fetch-check")  # whatever ran before: the catalog is not empty
    version = shop_alliance.coordinator.core.products.version()
    with coordinator_channel(shop_alliance, member_identity(shop_alliance, "telco")) as channel:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        full = stub.GetProducts(coordinator_pb2.ProductsRequest(known_version=0), timeout=5)
        assert full.version == version and not full.unchanged
        assert {p.product_id for p in full.products} == {
            r.product.product_id for r in shop_alliance.coordinator.core.products.list()}
        assert "shop-fetch-check" in {p.product_id for p in full.products}
        same = stub.GetProducts(coordinator_pb2.ProductsRequest(known_version=version),
                                timeout=5)
        assert (same.version, same.unchanged, len(same.products)) == (version, True, 0)
    # A certificate the alliance CA issued to a party that was never admitted.
    settings = shop_alliance.coordinator_settings
    ca = load_authority(settings.data_dir, now_ms()).ca
    signer = Signer.generate()
    stranger = issue_certificate(ca, "stranger", CertRole.MEMBER, signer.private_key.public_key(),
                                 now_ms(), 1)
    credentials = grpc.ssl_channel_credentials(settings.ca_certificate_path.read_bytes(),
                                               signer.to_pem(), certificate_to_pem(stranger))
    with create_channel(f"127.0.0.1:{shop_alliance.coordinator.port}", credentials,
                        target_name_option("coordinator", CertRole.COORDINATOR)) as channel:
        with pytest.raises(grpc.RpcError) as info:
            coordinator_pb2_grpc.CoordinatorStub(channel).GetProducts(
                coordinator_pb2.ProductsRequest(), timeout=5)
    assert (info.value.code(), error_code(info.value)) == (
        grpc.StatusCode.UNAUTHENTICATED, "CERTIFICATE_INVALID")


def publish(admin: AdminClient, product_id: str, **changes: Any) -> Any:
    doc = {"member_id": "shop", "name": "Shop later", "min_amount": "500",
           "max_amount": "3000.50", "terms_months": [3, 6], "apr": "0.2",
           "disbursement_days": 0, "eligible_grades": ["A", "B"]} | changes
    return admin.call("PUT", f"/v1/products/{product_id}", body=doc)


@pytest.mark.parametrize(("changes", "code", "named"), [
    ({"member_id": "nobody"}, ErrorCode.UNKNOWN_MEMBER, "nobody"),
    ({"member_id": "on-hold"}, ErrorCode.MEMBER_SUSPENDED, "on-hold is suspended"),
    ({"min_amount": "4000"}, ErrorCode.INVALID_REQUEST, "max_amount"),
    ({"apr": "12.5"}, ErrorCode.INVALID_REQUEST, "apr"),
    ({"terms_months": [5]}, ErrorCode.INVALID_REQUEST, "terms_months"),
    ({"eligible_grades": ["F"]}, ErrorCode.INVALID_REQUEST, "eligible_grades"),
    ({"max_amount": 3000.505}, ErrorCode.INVALID_REQUEST, "max_amount"),
    ({"colour": "red"}, ErrorCode.INVALID_REQUEST, "colour"),
])
def test_refused_publications_are_typed_and_change_nothing(
        shop_alliance: InProcessAlliance, admin: AdminClient, changes: dict[str, Any],
        code: ErrorCode, named: str) -> None:
    core = shop_alliance.coordinator.core
    if core.registry.exists("on-hold") is None:
        with core.db.transaction() as conn:
            MemberRegistry.add_member(conn, "on-hold", "On Hold", now_ms())
            MemberRegistry.set_membership(conn, "on-hold", Membership.SUSPENDED)
    shop_alliance.drain_audit_outboxes()  # earlier evaluations' entries land first
    size, version = core.ledger.size(), core.products.version()
    with pytest.raises(FedCreditError) as info:
        publish(admin, "shop-later", **changes)
    assert info.value.code is code and named in info.value.detail, info.value.detail
    assert (core.ledger.size(), core.products.version()) == (size, version)
    with pytest.raises(FedCreditError) as missing:
        admin.call("GET", "/v1/products/shop-later")
    assert missing.value.code is ErrorCode.RESOURCE_NOT_FOUND


def test_republishing_replaces_and_the_cli_names_the_product_it_stopped_at(
        shop_alliance: InProcessAlliance, admin: AdminClient, token: str,
        tmp_path: Path) -> None:
    first = publish(admin, "shop-now")
    again = publish(admin, "shop-now", apr="0.19")
    assert (first["revision"], again["revision"]) == (1, 2)
    assert again["catalog_version"] == first["catalog_version"] + 1
    assert (again["apr"], again["max_amount"], again["min_amount"]) == ("0.19", "3000.50",
                                                                        "500.00")
    assert admin.call("GET", "/v1/products/shop-now") == again
    file = tmp_path / "more.yaml"
    file.write_text("- {product_id: shop-a, member_id: shop, name: A, min_amount: 100,\n"
                    "   max_amount: 900, terms_months: [3], apr: 0.1, disbursement_days: 1,\n"
                    "   eligible_grades: [A]}\n"
                    "- {product_id: shop-b, member_id: shop, name: B, min_amount: 100,\n"
                    "   max_amount: 90, terms_months: [3], apr: 0.1, disbursement_days: 1,\n"
                    "   eligible_grades: [A]}\n")
    result = cli(shop_alliance, token, "products", "publish", str(file))
    assert result.exit_code == 1 and "shop's product shop-a: revision 1" in result.stdout
    assert result.stderr.startswith("INVALID_REQUEST: shop-b: min_amount (100.00) is above "
                                    "max_amount (90.00)"), result.output
    assert result.stderr.rstrip().endswith("(published before it: shop-a)")
    broken = tmp_path / "broken.yaml"
    broken.write_text("- product_id: x\n  name: [\n")
    result = cli(shop_alliance, token, "products", "publish", str(broken))
    assert result.stderr.startswith(f"INVALID_REQUEST: {broken}:"), result.output
