"""The coordinator's product catalog over a real SQLite database with its member registry and
audit ledger: publish, replace, withdraw, the catalog version, each change's ledger entry, and
the refusals (unknown or suspended member, a product that cannot be offered)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from coordinator import product_catalog
from coordinator.ledger import AuditLedger
from coordinator.product_catalog import SCHEMA, ProductCatalog, make_product
from coordinator.registry import SCHEMA as REGISTRY_SCHEMA
from coordinator.registry import MemberRegistry, Membership
from fedcredit.audit import EntryKind, LedgerEntry
from fedcredit.errors import (
    ConflictError,
    ErrorCode,
    FedCreditError,
    InvalidRequestError,
    ResourceNotFoundError,
)
from fedcredit.sqlite import SqliteDatabase
from mpc.signing import Signer
from scoring.products import Product
from scoring.scorecard import Grade

pytestmark = pytest.mark.unit
T0 = 1_790_000_000_000
SIGNER = Signer.generate()
ADMIN = "admin:9c0e2b4d1a7f3e58"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "coordinator.sqlite3", REGISTRY_SCHEMA + SCHEMA)
    yield database
    database.close()


@pytest.fixture
def ledger(db: SqliteDatabase) -> AuditLedger:
    return AuditLedger(db, SIGNER)


@pytest.fixture
def catalog(db: SqliteDatabase, ledger: AuditLedger) -> ProductCatalog:
    registry = MemberRegistry(db, 6_000)
    with db.transaction() as conn:
        for member in ("bank", "finco", "shop"):
            MemberRegistry.add_member(conn, member, member.title(), T0)
        MemberRegistry.set_membership(conn, "shop", Membership.SUSPENDED)
    return ProductCatalog(db, ledger, registry)


def product(product_id: str = "quick-cash", member_id: str = "bank", **changes: Any) -> Product:
    fields: dict[str, Any] = {
        "name": "Quick cash", "min_amount": Decimal("1000"), "max_amount": Decimal("20000.5"),
        "terms_months": [24, 6, 12, 12], "apr": Decimal("0.1290"), "disbursement_days": 1,
        "eligible_grades": ["C", "A", "B"]} | changes
    return make_product(product_id, member_id, **fields)


def last(ledger: AuditLedger) -> LedgerEntry:
    return ledger.entry(ledger.size() - 1)


def test_a_published_product_is_in_the_catalog_and_the_ledger(
        catalog: ProductCatalog, ledger: AuditLedger) -> None:
    assert catalog.version() == 0 and catalog.snapshot().products == ()
    record = catalog.publish(product(), ADMIN, T0)
    assert (record.revision, record.catalog_version, record.published_ms,
            record.published_by) == (1, 1, T0, ADMIN)
    stored = catalog.get("quick-cash")
    assert stored == record
    assert stored.product == Product(
        "quick-cash", "bank", "Quick cash", Decimal("1000.00"), Decimal("20000.50"), (6, 12, 24),
        Decimal("0.129"), 1, frozenset({Grade.A, Grade.B, Grade.C}))
    assert catalog.snapshot().version == 1 and catalog.snapshot().products == (record,)
    entry = last(ledger)
    assert (entry.kind, entry.actor, entry.created_ms) == (EntryKind.PRODUCT_PUBLISHED, ADMIN, T0)
    assert entry.body == {
        "product_id": "quick-cash", "member_id": "bank", "name": "Quick cash",
        "min_amount": "1000.00", "max_amount": "20000.50", "terms_months": [6, 12, 24],
        "apr": "0.129", "disbursement_days": 1, "eligible_grades": ["A", "B", "C"],
        "revision": 1, "catalog_version": 1}


def test_publishing_an_id_again_replaces_it_with_a_new_revision(
        catalog: ProductCatalog, ledger: AuditLedger) -> None:
    catalog.publish(product(), ADMIN, T0)
    catalog.publish(product("finco-flex", "finco"), ADMIN, T0 + 1)
    replaced = catalog.publish(product(apr=Decimal("0.099"), name="Quick cash 2"), ADMIN, T0 + 2)
    assert (replaced.revision, replaced.catalog_version) == (2, 3)
    assert [(r.product.product_id, r.product.name, r.product.apr) for r in catalog.list()] == [
        ("quick-cash", "Quick cash 2", Decimal("0.099")),
        ("finco-flex", "Quick cash", Decimal("0.129"))]
    assert [r.product.product_id for r in catalog.list("finco")] == ["finco-flex"]
    assert (last(ledger).body["revision"], last(ledger).body["apr"]) == (2, "0.099")
    assert ledger.size() == 3


def test_a_withdrawn_product_leaves_the_catalog_and_its_revisions_continue(
        catalog: ProductCatalog, ledger: AuditLedger) -> None:
    catalog.publish(product(), ADMIN, T0)
    catalog.publish(product(), ADMIN, T0)
    withdrawal = catalog.withdraw("quick-cash", ADMIN, T0 + 5)
    assert (withdrawal.member_id, withdrawal.revision, withdrawal.catalog_version) == (
        "bank", 2, 3)
    entry = last(ledger)
    assert (entry.kind, entry.actor, entry.body) == (EntryKind.PRODUCT_WITHDRAWN, ADMIN, {
        "product_id": "quick-cash", "member_id": "bank", "revision": 2, "catalog_version": 3})
    assert catalog.snapshot().version == 3 and catalog.snapshot().products == ()
    assert catalog.list() == []
    for call in (lambda: catalog.get("quick-cash"),
                 lambda: catalog.withdraw("quick-cash", ADMIN, T0)):
        with pytest.raises(ResourceNotFoundError, match="no product 'quick-cash'"):
            call()
    # Withdrawn, the id is free again, even for another member; revisions never repeat.
    again = catalog.publish(product(member_id="finco"), ADMIN, T0 + 9)
    assert (again.revision, again.catalog_version, again.product.member_id) == (3, 4, "finco")


@pytest.mark.parametrize(("member", "code", "detail"), [
    ("nobody", ErrorCode.UNKNOWN_MEMBER, "member 'nobody' is not registered"),
    ("shop", ErrorCode.MEMBER_SUSPENDED, "member shop is suspended: it cannot offer products"),
])
def test_only_an_active_member_offers_products(
        catalog: ProductCatalog, ledger: AuditLedger, member: str, code: ErrorCode,
        detail: str) -> None:
    with pytest.raises(FedCreditError) as info:
        catalog.publish(product(member_id=member), ADMIN, T0)
    assert (info.value.code, info.value.detail) == (code, detail)
    assert (catalog.version(), ledger.size(), catalog.list()) == (0, 0, [])


def test_a_live_product_id_stays_with_its_member(
        catalog: ProductCatalog, ledger: AuditLedger) -> None:
    catalog.publish(product(), ADMIN, T0)
    with pytest.raises(ConflictError, match="quick-cash is bank's"):
        catalog.publish(product(member_id="finco"), ADMIN, T0)
    assert (catalog.version(), ledger.size(), catalog.get("quick-cash").product.member_id) == (
        1, 1, "bank")


def test_the_catalog_has_a_size_limit_replacements_do_not_count(
        catalog: ProductCatalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(product_catalog, "MAX_PRODUCTS", 2)
    catalog.publish(product("a"), ADMIN, T0)
    catalog.publish(product("b"), ADMIN, T0)
    with pytest.raises(ConflictError, match="holds 2 products"):
        catalog.publish(product("c"), ADMIN, T0)
    assert catalog.publish(product("b", apr=Decimal("0.2")), ADMIN, T0).revision == 2
    catalog.withdraw("a", ADMIN, T0)
    catalog.publish(product("c"), ADMIN, T0)
    assert [r.product.product_id for r in catalog.list()] == ["b", "c"]


@pytest.mark.parametrize(("product_id", "changes", "field"), [
    ("../x", {}, "product_id"),
    ("quick-cash", {"name": "  "}, "name"),
    ("quick-cash", {"min_amount": Decimal("0")}, "min_amount"),
    ("quick-cash", {"min_amount": Decimal("10.001")}, "min_amount"),
    ("quick-cash", {"max_amount": Decimal("NaN")}, "max_amount"),
    ("quick-cash", {"max_amount": Decimal("999")}, "max_amount"),
    ("quick-cash", {"max_amount": Decimal("2e12")}, "max_amount"),
    ("quick-cash", {"terms_months": [5, 12]}, "terms_months"),
    ("quick-cash", {"terms_months": []}, "terms_months"),
    ("quick-cash", {"apr": Decimal("1.5")}, "apr"),
    ("quick-cash", {"apr": Decimal("0.1234567")}, "apr"),
    ("quick-cash", {"disbursement_days": -1}, "disbursement_days"),
    ("quick-cash", {"eligible_grades": []}, "eligible_grades"),
    ("quick-cash", {"eligible_grades": ["A", "F"]}, "eligible_grades"),
])
def test_a_product_that_cannot_be_offered_names_the_field(
        product_id: str, changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        product(product_id, **changes)
    assert field in info.value.detail, info.value.detail
    assert info.value.code is ErrorCode.INVALID_REQUEST
