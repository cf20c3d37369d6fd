"""The alliance's loan product catalog: the products each member offers, as admins publish them.

Every member sees every product (the catalog is public within the alliance): a requester's
evaluation lists the products, of any member, that fit its applicant. A product names an
admitted, active member; publishing a product id again replaces it with a new revision, and
withdrawing removes it. Every change bumps the catalog's version — what nodes compare to know
whether their copy is current — and commits with its audit-ledger entry in one transaction.
Money is exact: amounts are decimal strings to the cent, the APR a decimal fraction.
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from coordinator.ledger import AuditLedger
from coordinator.registry import MemberRegistry, Membership, unknown_member
from fedcredit.audit import DraftValue, EntryDraft, EntryKind
from fedcredit.errors import (
    ConflictError,
    ErrorCode,
    FedCreditError,
    InvalidRequestError,
    ResourceNotFoundError,
)
from fedcredit.sqlite import SqliteDatabase
from scoring.products import Product, ProductError
from scoring.scorecard import Grade

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    product_id TEXT PRIMARY KEY,
    member_id TEXT NOT NULL,
    name TEXT NOT NULL,
    min_amount TEXT NOT NULL,
    max_amount TEXT NOT NULL,
    terms_months TEXT NOT NULL,
    apr TEXT NOT NULL,
    disbursement_days INTEGER NOT NULL,
    eligible_grades TEXT NOT NULL,
    revision INTEGER NOT NULL,
    catalog_version INTEGER NOT NULL,
    published_ms INTEGER NOT NULL,
    published_by TEXT NOT NULL,
    withdrawn_ms INTEGER
);
CREATE INDEX IF NOT EXISTS products_by_member ON products (member_id, product_id);
CREATE TABLE IF NOT EXISTS product_catalog_state (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version INTEGER NOT NULL
);
INSERT OR IGNORE INTO product_catalog_state (singleton, version) VALUES (1, 0);
"""
PRODUCT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_NAME = 128
#: Keeps the whole catalog well inside one gRPC message (about 200 bytes a product).
MAX_PRODUCTS = 1_000
MAX_AMOUNT = Decimal("1e12")
AMOUNT_PLACES = 2  # cents
APR_PLACES = 6
COLUMNS = ("product_id, member_id, name, min_amount, max_amount, terms_months, apr, "
           "disbursement_days, eligible_grades, revision, catalog_version, published_ms, "
           "published_by")
LIVE = "withdrawn_ms IS NULL"


@dataclass(frozen=True)
class ProductRecord:
    product: Product
    #: 1 for the first publication of this id, +1 on every replacement (and re-publication).
    revision: int
    #: The catalog version this revision was published in.
    catalog_version: int
    published_ms: int
    #: The ledger actor of the admin who published it.
    published_by: str


@dataclass(frozen=True)
class CatalogSnapshot:
    version: int
    products: tuple[ProductRecord, ...]


@dataclass(frozen=True)
class Withdrawal:
    product_id: str
    member_id: str
    #: The revision that was withdrawn.
    revision: int
    #: The catalog version without it.
    catalog_version: int


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _money(value: Decimal, field: str) -> Decimal:
    if not value.is_finite() or abs(value) > MAX_AMOUNT:
        raise InvalidRequestError(f"{field} must be a finite amount up to {MAX_AMOUNT:,.0f}")
    if _places(value) > AMOUNT_PLACES:
        raise InvalidRequestError(f"{field} has more than {AMOUNT_PLACES} decimal places "
                                  "(amounts are exact to the cent)")
    return value.quantize(Decimal(1).scaleb(-AMOUNT_PLACES))


def make_product(product_id: str, member_id: str, name: str, min_amount: Decimal,
                 max_amount: Decimal, terms_months: Iterable[int], apr: Decimal,
                 disbursement_days: int, eligible_grades: Iterable[str]) -> Product:
    """A validated product in canonical form, or INVALID_REQUEST naming the field at fault."""
    if not isinstance(product_id, str) or not PRODUCT_ID.fullmatch(product_id):
        raise InvalidRequestError(f"product_id {product_id!r} must be 1-64 letters, digits, "
                                  "'.', '_' or '-' (starting with a letter or digit)")
    if not member_id:
        raise InvalidRequestError("member_id is required")
    if not 0 < len(name.strip()) <= MAX_NAME:
        raise InvalidRequestError(f"name must be 1-{MAX_NAME} characters")
    if not apr.is_finite() or _places(apr) > APR_PLACES:
        raise InvalidRequestError(f"apr must be a fraction with at most {APR_PLACES} decimal "
                                  "places, e.g. 0.125 for 12.5%")
    grades = []
    for grade in eligible_grades:
        try:
            grades.append(Grade(grade))
        except ValueError:
            raise InvalidRequestError(f"eligible_grades: {grade!r} is not a grade (A-E)"
                                      ) from None
    try:
        return Product(
            product_id=product_id, member_id=member_id, name=name.strip(),
            min_amount=_money(min_amount, "min_amount"),
            max_amount=_money(max_amount, "max_amount"),
            terms_months=tuple(sorted(set(terms_months))),
            apr=Decimal(format(apr.normalize(), "f")),
            disbursement_days=disbursement_days, eligible_grades=frozenset(grades))
    except ProductError as exc:
        raise InvalidRequestError(str(exc)) from None


def amount_text(value: Decimal) -> str:
    """The canonical decimal text of an amount or APR (never an exponent)."""
    return format(value, "f")


def _record(row: tuple[Any, ...]) -> ProductRecord:
    product = Product(
        product_id=row[0], member_id=row[1], name=row[2], min_amount=Decimal(row[3]),
        max_amount=Decimal(row[4]), terms_months=tuple(json.loads(row[5])),
        apr=Decimal(row[6]), disbursement_days=row[7],
        eligible_grades=frozenset(Grade(g) for g in json.loads(row[8])))
    return ProductRecord(product, revision=row[9], catalog_version=row[10],
                         published_ms=row[11], published_by=row[12])


def _grades(product: Product) -> list[str]:
    return sorted(g.value for g in product.eligible_grades)


def _ledger_body(record: ProductRecord) -> dict[str, DraftValue]:
    """The product as published; money as decimal strings (the ledger refuses floats)."""
    product = record.product
    return {
        "product_id": product.product_id, "member_id": product.member_id,
        "name": product.name, "min_amount": amount_text(product.min_amount),
        "max_amount": amount_text(product.max_amount),
        "terms_months": list(product.terms_months), "apr": amount_text(product.apr),
        "disbursement_days": product.disbursement_days, "eligible_grades": _grades(product),
        "revision": record.revision, "catalog_version": record.catalog_version,
    }


class ProductCatalog:
    def __init__(self, db: SqliteDatabase, ledger: AuditLedger, registry: MemberRegistry) -> None:
        """``db`` was opened with :data:`SCHEMA` and the registry's."""
        self._db = db
        self._ledger = ledger
        self._registry = registry

    # -- admins ------------------------------------------------------------------------------
    def publish(self, product: Product, actor: str, now_ms: int) -> ProductRecord:
        """Publish ``product`` (from :func:`make_product`), or replace the product with its id
        (a new revision). Its member must be admitted and active."""
        with self._db.transaction() as conn:
            membership = self._registry.exists(product.member_id)
            if membership is None:
                raise unknown_member(product.member_id)
            if membership is not Membership.ACTIVE:
                raise FedCreditError(
                    f"member {product.member_id} is {membership.value.lower()}: it cannot "
                    "offer products", code=ErrorCode.MEMBER_SUSPENDED)
            row = conn.execute(f"SELECT member_id, revision, {LIVE} FROM products "
                               "WHERE product_id=?", (product.product_id,)).fetchone()
            if row is not None and row[2] and row[0] != product.member_id:
                raise ConflictError(f"product {product.product_id} is {row[0]}'s; withdraw it "
                                    "before another member publishes that id")
            if row is None or not row[2]:
                live = conn.execute(f"SELECT COUNT(*) FROM products WHERE {LIVE}").fetchone()
                if live[0] >= MAX_PRODUCTS:
                    raise ConflictError(f"the catalog holds {MAX_PRODUCTS} products, its limit;"
                                        " withdraw some first")
            record = ProductRecord(product, revision=1 if row is None else row[1] + 1,
                                   catalog_version=self._bump(conn), published_ms=now_ms,
                                   published_by=actor)
            conn.execute(
                f"INSERT OR REPLACE INTO products ({COLUMNS}, withdrawn_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (product.product_id, product.member_id, product.name,
                 amount_text(product.min_amount), amount_text(product.max_amount),
                 json.dumps(list(product.terms_months)), amount_text(product.apr),
                 product.disbursement_days, json.dumps(_grades(product)), record.revision,
                 record.catalog_version, now_ms, actor))
            self._ledger.append(EntryDraft(EntryKind.PRODUCT_PUBLISHED, actor,
                                           _ledger_body(record)), now_ms=now_ms, conn=conn)
            return record

    def withdraw(self, product_id: str, actor: str, now_ms: int) -> Withdrawal:
        """Take a product out of the catalog (whatever its member's standing)."""
        with self._db.transaction() as conn:
            current = self._load(conn, product_id)
            withdrawal = Withdrawal(product_id, current.product.member_id, current.revision,
                                    self._bump(conn))
            conn.execute("UPDATE products SET withdrawn_ms=? WHERE product_id=?",
                         (now_ms, product_id))
            self._ledger.append(EntryDraft(EntryKind.PRODUCT_WITHDRAWN, actor, {
                "product_id": product_id, "member_id": withdrawal.member_id,
                "revision": withdrawal.revision, "catalog_version": withdrawal.catalog_version,
            }), now_ms=now_ms, conn=conn)
            return withdrawal

    # -- reads -------------------------------------------------------------------------------
    def get(self, product_id: str) -> ProductRecord:
        with self._db.transaction() as conn:
            return self._load(conn, product_id)

    def list(self, member_id: str | None = None) -> builtins.list[ProductRecord]:
        """The catalog's products, by member then id."""
        sql = f"SELECT {COLUMNS} FROM products WHERE {LIVE}"
        rows = (self._db.all(sql + " AND member_id=? ORDER BY product_id", (member_id,))
                if member_id is not None
                else self._db.all(sql + " ORDER BY member_id, product_id"))
        return [_record(row) for row in rows]

    def version(self) -> int:
        row = self._db.one("SELECT version FROM product_catalog_state")
        assert row is not None
        return int(row[0])

    def snapshot(self) -> CatalogSnapshot:
        """The version and its products, read together (what a node fetches)."""
        with self._db.transaction() as conn:
            version = conn.execute("SELECT version FROM product_catalog_state").fetchone()[0]
            rows = conn.execute(f"SELECT {COLUMNS} FROM products WHERE {LIVE} "
                                "ORDER BY member_id, product_id").fetchall()
        return CatalogSnapshot(int(version), tuple(_record(row) for row in rows))

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _bump(conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE product_catalog_state SET version = version + 1")
        return int(conn.execute("SELECT version FROM product_catalog_state").fetchone()[0])

    @staticmethod
    def _load(conn: sqlite3.Connection, product_id: str) -> ProductRecord:
        row = conn.execute(f"SELECT {COLUMNS} FROM products WHERE product_id=? AND {LIVE}",
                           (product_id,)).fetchone()
        if row is None:
            raise ResourceNotFoundError(f"no product {product_id!r} is in the catalog")
        return _record(row)
