"""OpenAPI error responses of the lender API, from the one error catalog."""

from __future__ import annotations

from typing import Any

from fedcredit.error_catalog import CATALOG
from fedcredit.errors import ErrorCode
from node.api.schemas import ErrorOut


def error_responses(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        item = CATALOG[code]
        slot = out.setdefault(item.http_status, {"model": ErrorOut, "description": ""})
        slot["description"] = (slot["description"] + f" {code.value}: {item.message}").strip()
    return out
