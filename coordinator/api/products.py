"""``/v1/products``: the alliance's loan product catalog.

Admins publish each member's products (``PUT`` publishes or replaces, ``DELETE`` withdraws);
every change is a ledger entry and bumps the catalog version, which nodes poll to refresh their
copy. A requester's evaluation then lists the products, of any member, that fit its applicant.
Amounts are exact decimals to the cent (sent as strings or numbers, returned as strings); the
APR is a fraction.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from coordinator.api.deps import Admin, AdminOrRegulator, Context
from coordinator.api.schemas import AUTH_ERRORS, error_responses
from coordinator.product_catalog import ProductRecord, Withdrawal, make_product
from fedcredit.errors import ErrorCode
from scoring.products import TERMS_MONTHS
from scoring.scorecard import Grade

router = APIRouter(prefix="/v1/products", tags=["products"])
ProductId = Annotated[str, Path(max_length=64, examples=["bank-a-quick-cash"])]
PRODUCT_EXAMPLE: dict[str, Any] = {
    "member_id": "bank-a", "name": "Quick cash", "min_amount": "1000.00",
    "max_amount": "20000.00", "terms_months": [6, 12, 24], "apr": "0.129",
    "disbursement_days": 1, "eligible_grades": ["A", "B", "C"]}
PUBLISHED_EXAMPLE: dict[str, Any] = {
    "product_id": "bank-a-quick-cash", **PRODUCT_EXAMPLE, "revision": 2,
    "catalog_version": 7, "published_ms": 1795360210919,
    "published_by": "admin:9c0e2b4d1a7f3e58"}
PUBLISH_ERRORS = (*AUTH_ERRORS, ErrorCode.INVALID_REQUEST, ErrorCode.UNKNOWN_MEMBER,
                  ErrorCode.MEMBER_SUSPENDED, ErrorCode.RESOURCE_CONFLICT)


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [PRODUCT_EXAMPLE]})
    member_id: str = Field(min_length=1, max_length=64, description="The member offering it: "
                           "admitted and active.")
    name: str = Field(min_length=1, max_length=128)
    min_amount: Decimal = Field(description="Smallest loan, to the cent (positive).")
    max_amount: Decimal = Field(description="Largest loan, to the cent (at least min_amount).")
    terms_months: list[int] = Field(min_length=1, max_length=len(TERMS_MONTHS), description=(
        f"Among {', '.join(map(str, TERMS_MONTHS))}."))
    apr: Decimal = Field(description="Annual rate as a fraction in [0, 1], e.g. 0.129.")
    disbursement_days: int = Field(ge=0, le=365, description="Days until the money arrives.")
    eligible_grades: list[Grade] = Field(min_length=1, max_length=len(Grade))


class ProductOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PUBLISHED_EXAMPLE]})
    product_id: str
    member_id: str
    name: str
    min_amount: str
    max_amount: str
    terms_months: list[int]
    apr: str
    disbursement_days: int
    eligible_grades: list[str]
    revision: int = Field(description="1 when first published, +1 with every replacement.")
    catalog_version: int = Field(description="The catalog version this revision entered.")
    published_ms: int
    published_by: str = Field(description="Ledger actor of the admin who published it.")


class ProductWithdrawnOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "product_id": "bank-a-quick-cash", "member_id": "bank-a", "revision": 2,
        "catalog_version": 8}]})
    product_id: str
    member_id: str
    revision: int = Field(description="The revision withdrawn.")
    catalog_version: int = Field(description="The catalog version without it.")


def product_out(record: ProductRecord) -> ProductOut:
    product = record.product
    return ProductOut(
        product_id=product.product_id, member_id=product.member_id, name=product.name,
        min_amount=format(product.min_amount, "f"), max_amount=format(product.max_amount, "f"),
        terms_months=list(product.terms_months), apr=format(product.apr, "f"),
        disbursement_days=product.disbursement_days,
        eligible_grades=sorted(g.value for g in product.eligible_grades),
        revision=record.revision, catalog_version=record.catalog_version,
        published_ms=record.published_ms, published_by=record.published_by)


def withdrawn_out(withdrawal: Withdrawal) -> ProductWithdrawnOut:
    return ProductWithdrawnOut(product_id=withdrawal.product_id,
                               member_id=withdrawal.member_id, revision=withdrawal.revision,
                               catalog_version=withdrawal.catalog_version)


@router.get("", response_model=list[ProductOut],
            summary="List the catalog's products, by member then id",
            responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST))
def list_products(
    _: AdminOrRegulator, ctx: Context,
    member_id: Annotated[str | None, Query(max_length=64,
                                           description="Only this member's products.")] = None,
) -> list[ProductOut]:
    return [product_out(r) for r in ctx.products.list(member_id)]


@router.get("/{product_id}", response_model=ProductOut, summary="Show one product",
            responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                                      ErrorCode.RESOURCE_NOT_FOUND))
def get_product(_: AdminOrRegulator, ctx: Context, product_id: ProductId) -> ProductOut:
    return product_out(ctx.products.get(product_id))


@router.put(
    "/{product_id}", response_model=ProductOut, summary="Publish or replace a product",
    description=(
        "Publishes the product for its member, or replaces the product with this id (a new "
        "revision). The member must be admitted and active (UNKNOWN_MEMBER, MEMBER_SUSPENDED "
        "otherwise); a product that cannot be offered is INVALID_REQUEST naming the field. "
        "Recorded in the ledger (product_published); nodes pick it up at their next catalog "
        "refresh."),
    responses=error_responses(*PUBLISH_ERRORS))
def publish_product(caller: Admin, ctx: Context, product_id: ProductId,
                    body: ProductIn) -> ProductOut:
    product = make_product(product_id, body.member_id, body.name, body.min_amount,
                           body.max_amount, body.terms_months, body.apr,
                           body.disbursement_days, [g.value for g in body.eligible_grades])
    return product_out(ctx.products.publish(product, caller.actor, ctx.clock()))


@router.delete(
    "/{product_id}", response_model=ProductWithdrawnOut, summary="Withdraw a product",
    description="Takes the product out of the catalog. Recorded in the ledger "
                "(product_withdrawn); nodes drop it at their next catalog refresh.",
    responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                              ErrorCode.RESOURCE_NOT_FOUND))
def withdraw_product(caller: Admin, ctx: Context, product_id: ProductId) -> ProductWithdrawnOut:
    return withdrawn_out(ctx.products.withdraw(product_id, caller.actor, ctx.clock()))
