"""The coordinator's admin API: members, policy, principals, the audit ledger, judicial access.

Served by the coordinator process over HTTPS with its alliance certificate (the CLI verifies
it against the alliance CA). Callers authenticate with a bearer token; each route admits the
roles in docs/security.md's permission matrix. Errors use the same envelope and catalog as
every other edge: ``{"error": {"code", "message", "detail"}}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from coordinator.api import cases, join_requests, ledger, members, policy, principals
from coordinator.api.deps import AdminContext
from coordinator.api.schemas import HealthOut, error_responses
from fedcredit import __version__
from fedcredit.error_catalog import entry, http_status
from fedcredit.errors import ErrorCode, FedCreditError

log = logging.getLogger(__name__)


def _envelope(code: ErrorCode, detail: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code.value, "message": entry(code).message, "detail": detail}}


def create_admin_app(context: AdminContext) -> FastAPI:
    app = FastAPI(
        title="fedcredit coordinator — admin API",
        version=__version__,
        description=(
            "Configure the alliance (join requests, members, policy, principals) and audit it "
            "(signed ledger heads, entries, proofs, judicial grants). Authenticate with "
            "`Authorization: Bearer fca_...`; which role may call what is the permission "
            "matrix in docs/security.md. Every change is recorded in the audit ledger in the "
            "same transaction as the change itself."),
    )
    app.state.context = context
    for module in (join_requests, members, policy, principals, ledger, cases):
        app.include_router(module.router)

    @app.exception_handler(FedCreditError)
    async def _typed_error(request: Request, exc: FedCreditError) -> JSONResponse:
        headers = ({"WWW-Authenticate": "Bearer"}
                   if exc.code is ErrorCode.UNKNOWN_API_KEY else None)
        return JSONResponse(_envelope(exc.code, exc.detail), status_code=http_status(exc),
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10])
        return JSONResponse(_envelope(ErrorCode.INVALID_REQUEST, problems), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("admin API: unhandled error")
        return JSONResponse(_envelope(ErrorCode.INTERNAL, "internal error"), status_code=500)

    @app.get("/healthz", response_model=HealthOut, tags=["operations"],
             summary="Liveness (no credentials needed; reveals nothing about the alliance)",
             responses=error_responses())
    def healthz() -> HealthOut:
        return HealthOut(status="ok", version=__version__)

    return app
