"""Dependencies of the lender API, as ``Annotated`` aliases."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from fedcredit.errors import AuthenticationError
from node.api.metrics import ApiMetrics
from node.evaluation import EvaluationService


@dataclass(frozen=True)
class HealthProbe:
    member_id: str
    registered: Callable[[], bool]
    subjects: Callable[[], int]


@dataclass(frozen=True)
class ApiContext:
    """Everything the routes need, built by the node's wiring and put on ``app.state``."""

    evaluations: EvaluationService
    api_key_hashes: tuple[bytes, ...]
    metrics: ApiMetrics
    health: HealthProbe


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(get_context)]
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                               description="A lender application's API key.")


def require_api_key(
    context: Context, key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    if key:
        digest = hash_api_key(key)
        # Compare against every key so timing does not reveal which one matched.
        matches = [hmac.compare_digest(digest, known) for known in context.api_key_hashes]
        if any(matches):
            return
    raise AuthenticationError("missing or unknown API key")


def get_evaluations(context: Context) -> EvaluationService:
    return context.evaluations


Evaluations = Annotated[EvaluationService, Depends(get_evaluations)]
Authenticated = Annotated[None, Depends(require_api_key)]
