"""A node's copy of the product catalog: the wire form (money as decimal strings, "unchanged"
replies), refreshing at most every interval, keeping the last catalog when the coordinator
cannot be reached, and leaving out products of members that are not active."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from coordinator.product_catalog import CatalogSnapshot, ProductRecord, make_product
from coordinator.serde import product_catalog_to_pb
from fedcredit.errors import ErrorCode, FedCreditError, InvalidRequestError
from node.product_catalog import CatalogCopy, CatalogView
from node.serde import product_catalog_from_pb
from proto.v1 import coordinator_pb2
from scoring.products import Product

pytestmark = pytest.mark.unit


def product(product_id: str, member_id: str = "bank") -> Product:
    return make_product(product_id, member_id, "Loan " + product_id, Decimal("1000"),
                        Decimal("20000.5"), [6, 12], Decimal("0.129"), 2, ["A", "B"])


def snapshot(version: int, *products: Product) -> CatalogSnapshot:
    return CatalogSnapshot(version, tuple(ProductRecord(p, 1, version, 0, "admin:x")
                                          for p in products))


def test_the_catalog_crosses_the_wire_exactly_with_money_as_text() -> None:
    products = (product("a"), product("b", "finco"))
    message = product_catalog_to_pb(snapshot(4, *products), known_version=3)
    wire = message.products[0]
    assert (wire.min_amount, wire.max_amount, wire.apr) == ("1000.00", "20000.50", "0.129")
    assert list(wire.eligible_grades) == ["A", "B"] and list(wire.terms_months) == [6, 12]
    received = product_catalog_from_pb(
        coordinator_pb2.ProductCatalog.FromString(message.SerializeToString()))
    assert received == CatalogView(4, products)


def test_a_member_holding_the_current_version_gets_no_products() -> None:
    message = product_catalog_to_pb(snapshot(4, product("a")), known_version=4)
    assert (message.version, message.unchanged, len(message.products)) == (4, True, 0)
    assert product_catalog_from_pb(message) is None
    # An empty catalog is a catalog, not "unchanged": everything was withdrawn.
    assert product_catalog_from_pb(product_catalog_to_pb(snapshot(5), 4)) == CatalogView(5, ())


@pytest.mark.parametrize("change", [
    {"min_amount": "1,000"}, {"apr": "twelve"}, {"eligible_grades": ["Z"]},
    {"apr": "1.5"}, {"terms_months": [7]},
])
def test_a_malformed_product_from_the_coordinator_is_refused(change: dict[str, object]) -> None:
    message = product_catalog_to_pb(snapshot(2, product("a")), known_version=0)
    wire = message.products[0]
    for name, value in change.items():
        if isinstance(value, list):
            del getattr(wire, name)[:]
            getattr(wire, name).extend(value)
        else:
            setattr(wire, name, value)
    with pytest.raises(InvalidRequestError, match="product 'a' from the coordinator"):
        product_catalog_from_pb(message)


class FakeCoordinator:
    def __init__(self) -> None:
        self.catalog = CatalogView(0, ())
        self.asked: list[int] = []
        self.down = False

    def __call__(self, known_version: int) -> CatalogView | None:
        self.asked.append(known_version)
        if self.down:
            raise FedCreditError("cannot reach the coordinator",
                                 code=ErrorCode.COORDINATOR_UNAVAILABLE)
        return None if known_version == self.catalog.version else self.catalog


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_refreshes_at_most_every_interval_naming_the_version_held() -> None:
    coordinator, ticks = FakeCoordinator(), Ticks()
    copy = CatalogCopy(coordinator, lambda member: True, refresh_ms=10_000, monotonic=ticks)
    coordinator.catalog = CatalogView(1, (product("a"),))
    assert copy.refresh_if_due() is True  # never fetched: due at once
    assert (copy.version, copy.products()) == (1, (product("a"),))
    coordinator.catalog = CatalogView(2, (product("b"),))
    ticks.now += 9.9
    assert copy.refresh_if_due() is False and copy.version == 1
    ticks.now += 0.1
    assert copy.refresh_if_due() is True and copy.products() == (product("b"),)
    ticks.now += 10
    assert copy.refresh_if_due() is False  # unchanged
    assert coordinator.asked == [0, 1, 2]


def test_an_unreachable_coordinator_leaves_the_last_catalog(
        caplog: pytest.LogCaptureFixture) -> None:
    coordinator, ticks = FakeCoordinator(), Ticks()
    coordinator.catalog = CatalogView(3, (product("a"), product("b")))
    copy = CatalogCopy(coordinator, lambda member: True, refresh_ms=100, monotonic=ticks)
    copy.refresh()
    coordinator.down = True
    with caplog.at_level(logging.WARNING, logger="node.product_catalog"):
        assert copy.refresh() is False
    assert (copy.version, copy.products()) == (3, (product("a"), product("b")))
    assert "kept version 3 (COORDINATOR_UNAVAILABLE" in caplog.text
    ticks.now += 0.05  # a failed attempt also waits out the interval
    assert copy.refresh_if_due() is False and coordinator.asked == [0, 3]


def test_products_of_members_that_are_not_active_are_left_out() -> None:
    coordinator = FakeCoordinator()
    coordinator.catalog = CatalogView(1, (product("a", "bank"), product("b", "shop")))
    active = {"bank"}
    copy = CatalogCopy(coordinator, active.__contains__, refresh_ms=100)
    copy.refresh()
    assert copy.products() == (product("a", "bank"),)
    active.add("shop")  # reinstated: the directory, not the catalog, changed
    assert copy.products() == (product("a", "bank"), product("b", "shop"))
