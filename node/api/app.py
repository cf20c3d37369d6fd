"""The lender API application: routes, error envelope, metrics, body limit."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fedcredit import __version__
from fedcredit.errors import ErrorCode
from fedcredit.http_errors import install_error_handlers
from fedcredit.http_limits import BodySizeLimit
from node.api import evaluations, inquiries, portfolio
from node.api.deps import ApiContext, Context
from node.api.schemas import HealthOut

log = logging.getLogger(__name__)


def create_app(context: ApiContext, max_request_bytes: int,
               path_limits: Mapping[str, int] | None = None) -> FastAPI:
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
    app.include_router(portfolio.router)

    install_error_handlers(
        app, on_error=lambda code: context.metrics.errors.labels(code=code.value).inc())

    @app.get("/healthz", response_model=HealthOut, tags=["operations"])
    def healthz(ctx: Context) -> HealthOut:
        registered = ctx.health.registered()
        return HealthOut(
            status="ok" if registered else "starting",
            member_id=ctx.health.member_id,
            registered=registered,
            subjects=ctx.health.subjects(),
            product_catalog_version=ctx.health.catalog_version(),
        )

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
    def metrics(ctx: Context) -> PlainTextResponse:
        return PlainTextResponse(generate_latest(ctx.metrics.registry),
                                 media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        BodySizeLimit,
        max_bytes=max_request_bytes,
        path_limits=path_limits,
        on_reject=lambda: context.metrics.errors.labels(
            code=ErrorCode.MESSAGE_TOO_LARGE.value
        ).inc(),
    )
    return app
