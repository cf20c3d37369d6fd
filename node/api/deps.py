"""Dependencies of the lender API, as ``Annotated`` aliases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from fedcredit.clock import Clock, system_clock
from fedcredit.errors import AuthenticationError
from node.api.metrics import ApiMetrics
from node.api_keys import UNKNOWN_KEY_DETAIL, ApiKeyRecord, ApiKeyStore, ApiScope
from node.evaluation import EvaluationService
from node.portfolio import PortfolioService


@dataclass(frozen=True)
class HealthProbe:
    member_id: str
    registered: Callable[[], bool]
    subjects: Callable[[], int]
    #: The alliance product catalog version this node holds (0: none fetched yet).
    catalog_version: Callable[[], int] = lambda: 0


@dataclass(frozen=True)
class ApiContext:
    """Everything the routes need, built by the node's wiring and put on ``app.state``."""

    evaluations: EvaluationService
    portfolios: PortfolioService
    api_keys: ApiKeyStore
    metrics: ApiMetrics
    health: HealthProbe
    #: Decides when keys expire and when a rotation's grace period ends.
    clock: Clock = system_clock
    #: Where the hot routes' blocking work runs (key lookups, evaluations); None: the event
    #: loop's default executor. One asyncio hand-off instead of anyio's per-call thread
    #: round trip, which cost more than the rest of the HTTP frame.
    blocking: Executor | None = None


_P = ParamSpec("_P")
_T = TypeVar("_T")


async def run_blocking(context: ApiContext, work: Callable[_P, _T], *args: _P.args,
                       **kwargs: _P.kwargs) -> _T:
    """``work(*args, **kwargs)`` on the API's blocking executor, without holding up the event
    loop; its exception, if any, is raised here."""
    return await asyncio.get_running_loop().run_in_executor(
        context.blocking, lambda: work(*args, **kwargs))


# Attribute lookups only: ``async def`` runs them on the event loop (a plain ``def`` dependency
# is a round trip through the thread pool, per request and per dependency).
async def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(get_context)]
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                               description="A lender application's API key (fck_...).")


class RequireScope:
    """A dependency: the caller's API key, which must carry ``scope``.

    No key, or one that is not usable, is ``401 UNKNOWN_API_KEY``; a usable key without the
    scope is ``403 PERMISSION_DENIED``.
    """

    def __init__(self, scope: ApiScope) -> None:
        self.scope = scope

    async def __call__(
        self, context: Context, token: Annotated[str | None, Security(_api_key_header)]
    ) -> ApiKeyRecord:
        if not token:
            raise AuthenticationError(UNKNOWN_KEY_DETAIL)
        # A database read (and now and then a write): off the event loop.
        return await run_blocking(context, context.api_keys.authenticate, token, self.scope,
                                  context.clock())


async def get_evaluations(context: Context) -> EvaluationService:
    return context.evaluations


Evaluations = Annotated[EvaluationService, Depends(get_evaluations)]


async def get_portfolios(context: Context) -> PortfolioService:
    return context.portfolios


Portfolios = Annotated[PortfolioService, Depends(get_portfolios)]
CanCreateEvaluations = Annotated[ApiKeyRecord,
                                 Depends(RequireScope(ApiScope.EVALUATIONS_CREATE))]
CanReadEvaluations = Annotated[ApiKeyRecord, Depends(RequireScope(ApiScope.EVALUATIONS_READ))]
CanReadInquiries = Annotated[ApiKeyRecord, Depends(RequireScope(ApiScope.INQUIRIES_READ))]
