"""The lender API application: routes, error envelope, metrics, body limit."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fedcredit import __version__
from fedcredit.error_catalog import entry, http_status
from fedcredit.errors import ErrorCode, FedCreditError
from node.api import evaluations, inquiries
from node.api.deps import ApiContext, Context
from node.api.limits import BodySizeLimit
from node.api.schemas import HealthOut

log = logging.getLogger(__name__)


def _envelope(code: ErrorCode, detail: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code.value, "message": entry(code).message, "detail": detail}}


def create_app(context: ApiContext, max_request_bytes: int) -> FastAPI:
    app = FastAPI(
        title="fedcredit node — lender API",
        version=__version__,
        description=(
            "Joint credit evaluation across the alliance. Raw identifiers stay at this node; "
            "members contribute encrypted partial results and only their sum is decrypted here."
        ),
    )
    app.state.context = context
    app.include_router(evaluations.router)
    app.include_router(inquiries.router)

    @app.exception_handler(FedCreditError)
    async def _typed_error(request: Request, exc: FedCreditError) -> JSONResponse:
        context.metrics.errors.labels(code=exc.code.value).inc()
        return JSONResponse(_envelope(exc.code, exc.detail), status_code=http_status(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        context.metrics.errors.labels(code=ErrorCode.INVALID_REQUEST.value).inc()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]
        )
        return JSONResponse(_envelope(ErrorCode.INVALID_REQUEST, problems), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        context.metrics.errors.labels(code=ErrorCode.INTERNAL.value).inc()
        return JSONResponse(_envelope(ErrorCode.INTERNAL, "internal error"), status_code=500)

    @app.get("/healthz", response_model=HealthOut, tags=["operations"])
    def healthz(ctx: Context) -> HealthOut:
        registered = ctx.health.registered()
        return HealthOut(
            status="ok" if registered else "starting",
            member_id=ctx.health.member_id,
            registered=registered,
            subjects=ctx.health.subjects(),
        )

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
    def metrics(ctx: Context) -> PlainTextResponse:
        return PlainTextResponse(generate_latest(ctx.metrics.registry),
                                 media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        BodySizeLimit,
        max_bytes=max_request_bytes,
        on_reject=lambda: context.metrics.errors.labels(
            code=ErrorCode.MESSAGE_TOO_LARGE.value
        ).inc(),
    )
    return app
