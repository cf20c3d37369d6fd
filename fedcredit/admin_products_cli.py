"""``fedcredit admin products``: the alliance's loan product catalog.

``publish FILE`` takes a YAML or JSON file of one or more products — a list, or a mapping with
a ``products`` list, each with its ``product_id`` and the fields of ``PUT /v1/products/{id}`` —
checks its shape before anything is sent, then publishes each in order. Kept apart from
:mod:`fedcredit.admin_cli` (long enough already), which adds this group with its own helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from fedcredit.admin_client import AdminClient
from fedcredit.errors import ErrorCode, FedCreditError

#: ``table(rows, columns)`` as in :mod:`fedcredit.admin_cli`.
Tabler = Callable[[list[dict[str, Any]], str], None]
PRODUCTS = ("product=product_id member=member_id name min=min_amount max=max_amount "
            "terms=terms_months apr grades=eligible_grades days=disbursement_days rev=revision")
MAX_FILE_PRODUCTS = 1_000


def products_from_file(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(product_id, body)`` for each product in the file; INVALID_REQUEST naming the file
    (and line, for YAML) or the item at fault."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise FedCreditError(f"cannot read {path}: {exc.strerror}",
                             code=ErrorCode.INVALID_REQUEST) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise FedCreditError(f"{where}: not YAML or JSON ({getattr(exc, 'problem', exc)})",
                             code=ErrorCode.INVALID_REQUEST) from None
    items = doc.get("products") if isinstance(doc, dict) and "products" in doc else doc
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not items or len(items) > MAX_FILE_PRODUCTS:
        raise FedCreditError(f"{path}: expected a product, a list of products or a mapping "
                             f"with a 'products' list (1-{MAX_FILE_PRODUCTS})",
                             code=ErrorCode.INVALID_REQUEST)
    out, seen = [], set()
    for number, item in enumerate(items, start=1):
        product_id = item.get("product_id") if isinstance(item, dict) else None
        if not isinstance(product_id, str) or not product_id:
            raise FedCreditError(f"{path}: product {number} needs a product_id",
                                 code=ErrorCode.INVALID_REQUEST)
        if product_id in seen:
            raise FedCreditError(f"{path}: product {product_id} appears twice",
                                 code=ErrorCode.INVALID_REQUEST)
        seen.add(product_id)
        assert isinstance(item, dict)
        out.append((product_id, {k: v for k, v in item.items() if k != "product_id"}))
    return out


def products_group(client: Callable[[typer.Context], AdminClient], table: Tabler,
                   console: Console, fail: Callable[[ErrorCode, str], typer.Exit]) -> typer.Typer:
    """The ``products`` command group; ``client(ctx)`` connects with the CLI's options."""
    group = typer.Typer(help="The loan product catalog: list, show, publish, withdraw.",
                        no_args_is_help=True)

    def call(ctx: typer.Context, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return client(ctx).call(method, path, **kwargs)
        except FedCreditError as exc:
            raise fail(exc.code, exc.detail) from None

    @group.command("list")
    def products_list(ctx: typer.Context, member: Annotated[
            str | None, typer.Option(help="Only this member's products.")] = None) -> None:
        """The catalog (every member sees every product), by member then id."""
        params = {"member_id": member} if member else None
        table(call(ctx, "GET", "/v1/products", params=params), PRODUCTS)

    @group.command("show")
    def products_show(ctx: typer.Context, product_id: str) -> None:
        """One product, its revision, when and by whom it was published."""
        doc = call(ctx, "GET", f"/v1/products/{product_id}")
        table([{"field": k, "value": v} for k, v in doc.items()], "field value")

    @group.command("publish")
    def products_publish(ctx: typer.Context, file: Annotated[Path, typer.Argument(
            help="YAML or JSON: one product or a list, each with product_id, member_id, "
                 "name, min_amount, max_amount, terms_months, apr, disbursement_days, "
                 "eligible_grades.")]) -> None:
        """Publish (or replace) each product in the file, in order (each a ledger entry)."""
        try:
            products = products_from_file(file)
        except FedCreditError as exc:  # the detail names the file, line or item
            raise fail(exc.code, exc.detail) from None
        published: list[str] = []
        try:
            api = client(ctx)
            for product_id, body in products:
                doc = api.call("PUT", f"/v1/products/{product_id}", body=body)
                published.append(product_id)
                console.print(f"{doc['member_id']}'s product {product_id}: revision "
                              f"{doc['revision']}, catalog version {doc['catalog_version']}",
                              highlight=False)
        except FedCreditError as exc:
            done = (f"published before it: {', '.join(published)}" if published
                    else "nothing was published")
            failed = products[len(published)][0]
            detail = exc.detail if exc.detail.startswith(f"{failed}:") else (
                f"{failed}: {exc.detail}")
            raise fail(exc.code, f"{detail} ({done})") from None

    @group.command("withdraw")
    def products_withdraw(ctx: typer.Context, product_id: str) -> None:
        """Take a product out of the catalog (a ledger entry)."""
        doc = call(ctx, "DELETE", f"/v1/products/{product_id}")
        console.print(f"{doc['member_id']}'s product {product_id} withdrawn (revision "
                      f"{doc['revision']}); catalog version {doc['catalog_version']}",
                      highlight=False)

    return group
