"""The HTTP edge of the error catalog, shared by the lender API and the admin API: typed errors
become their catalog status and the envelope ``{"error": {"code", "message", "detail"}}``;
validation failures are INVALID_REQUEST naming the fields; anything else is an opaque 500."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from fedcredit.error_catalog import entry, http_status
from fedcredit.errors import ErrorCode, FedCreditError

log = logging.getLogger(__name__)


def envelope(code: ErrorCode, detail: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code.value, "message": entry(code).message, "detail": detail}}


def install_error_handlers(
    app: FastAPI,
    on_error: Callable[[ErrorCode], None] = lambda code: None,
    bearer_challenge: bool = False,
) -> None:
    """``on_error`` sees every code answered (metrics); ``bearer_challenge`` adds
    ``WWW-Authenticate: Bearer`` to 401s (APIs authenticated by bearer tokens)."""

    @app.exception_handler(FedCreditError)
    async def _typed_error(request: Request, exc: FedCreditError) -> JSONResponse:
        on_error(exc.code)
        headers = ({"WWW-Authenticate": "Bearer"}
                   if bearer_challenge and exc.code is ErrorCode.UNKNOWN_API_KEY else None)
        return JSONResponse(envelope(exc.code, exc.detail), status_code=http_status(exc),
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        on_error(ErrorCode.INVALID_REQUEST)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10])
        return JSONResponse(envelope(ErrorCode.INVALID_REQUEST, problems), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s", app.title)
        on_error(ErrorCode.INTERNAL)
        return JSONResponse(envelope(ErrorCode.INTERNAL, "internal error"), status_code=500)
