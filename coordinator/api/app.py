"""The coordinator's admin API: members, policy, principals, models, loan products, the audit
ledger, judicial access.

Served by the coordinator process over HTTPS with its alliance certificate (the CLI verifies
it against the alliance CA). Callers authenticate with a bearer token; each route admits the
roles in docs/security.md's permission matrix. Errors use the same envelope and catalog as
every other edge: ``{"error": {"code", "message", "detail"}}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from coordinator.api import (
    cases,
    join_requests,
    ledger,
    members,
    models,
    policy,
    principals,
    products,
    training_runs,
)
from coordinator.api.deps import AdminContext
from coordinator.api.schemas import HealthOut, error_responses
from fedcredit import __version__
from fedcredit.http_errors import install_error_handlers
from fedcredit.http_limits import BodySizeLimit

log = logging.getLogger(__name__)


def create_admin_app(context: AdminContext, max_request_bytes: int = 64 * 1024) -> FastAPI:
    app = FastAPI(
        title="fedcredit coordinator — admin API",
        version=__version__,
        description=(
            "Configure the alliance (join requests, members, policy, principals, which model "
            "each requester uses, the members' loan products) and audit it "
            "(signed ledger heads, entries, proofs, judicial grants). Authenticate with "
            "`Authorization: Bearer fca_...`; which role may call what is the permission "
            "matrix in docs/security.md. Every change is recorded in the audit ledger in the "
            "same transaction as the change itself."),
    )
    app.state.context = context
    for module in (join_requests, members, policy, principals, ledger, cases, models,
                   training_runs, products):
        app.include_router(module.router)

    install_error_handlers(app, bearer_challenge=True)

    @app.get("/healthz", response_model=HealthOut, tags=["operations"],
             summary="Liveness (no credentials needed; reveals nothing about the alliance)",
             responses=error_responses())
    def healthz() -> HealthOut:
        return HealthOut(status="ok", version=__version__)

    # Enforced while reading, before any route (and so before authentication) sees the body.
    app.add_middleware(BodySizeLimit, max_bytes=max_request_bytes)
    return app
