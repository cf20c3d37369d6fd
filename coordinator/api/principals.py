"""``/v1/principals`` and ``/v1/me``: who may use the admin API, in which role."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from coordinator.api.deps import Admin, AdminOrRegulator, Anyone, Context
from coordinator.api.schemas import (
    AUTH_ERRORS,
    PrincipalCreate,
    PrincipalOut,
    PrincipalTokenOut,
    ReasonIn,
    error_responses,
)
from coordinator.principals import IssuedToken, Principal
from fedcredit.errors import ErrorCode

router = APIRouter(tags=["principals"])
PrincipalId = Annotated[str, Path(max_length=32, examples=["3fa2c1d07b9e4a15"])]


def principal_out(principal: Principal) -> PrincipalOut:
    return PrincipalOut(
        principal_id=principal.principal_id, name=principal.name, role=principal.role,
        created_ms=principal.created_ms, created_by=principal.created_by,
        rotated_ms=principal.rotated_ms, revoked_ms=principal.revoked_ms,
        revoked_reason=principal.revoked_reason, active=principal.active)


def _issued(issued: IssuedToken) -> PrincipalTokenOut:
    return PrincipalTokenOut(principal=principal_out(issued.principal), token=issued.token)


@router.get("/v1/me", response_model=PrincipalOut, summary="Who the token belongs to",
            responses=error_responses(ErrorCode.UNKNOWN_API_KEY))
def whoami(caller: Anyone) -> PrincipalOut:
    return principal_out(caller)


@router.get("/v1/principals", response_model=list[PrincipalOut], summary="List principals",
            description="Regulators may list them too: they pick judicial grantees here and "
                        "audit who holds admin rights.",
            responses=error_responses(*AUTH_ERRORS))
def list_principals(_: AdminOrRegulator, ctx: Context) -> list[PrincipalOut]:
    return [principal_out(p) for p in ctx.principals.all()]


@router.post("/v1/principals", status_code=status.HTTP_201_CREATED,
             response_model=PrincipalTokenOut, summary="Create a principal and its token",
             description="The token is returned once and stored only as a SHA-256 hash. "
                         "Recorded in the ledger (principal_change).",
             responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                                       ErrorCode.RESOURCE_CONFLICT))
def create_principal(body: PrincipalCreate, caller: Admin, ctx: Context) -> PrincipalTokenOut:
    return _issued(ctx.principals.create(body.name, body.role, caller.actor))


@router.get("/v1/principals/{principal_id}", response_model=PrincipalOut,
            summary="Show a principal",
            responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                                      ErrorCode.RESOURCE_NOT_FOUND))
def get_principal(_: AdminOrRegulator, ctx: Context,
                  principal_id: PrincipalId) -> PrincipalOut:
    return principal_out(ctx.principals.get(principal_id))


@router.post("/v1/principals/{principal_id}/rotate", response_model=PrincipalTokenOut,
             summary="Replace a principal's token",
             description="The old token stops working when this returns. Recorded in the "
                         "ledger (principal_change, never the token).",
             responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                                       ErrorCode.RESOURCE_NOT_FOUND,
                                       ErrorCode.RESOURCE_CONFLICT))
def rotate_principal(caller: Admin, ctx: Context,
                     principal_id: PrincipalId) -> PrincipalTokenOut:
    return _issued(ctx.principals.rotate(principal_id, caller.actor))


@router.post("/v1/principals/{principal_id}/revoke", response_model=PrincipalOut,
             summary="Revoke a principal (final)",
             description="Its token stops working at once. The last active admin cannot be "
                         "revoked (RESOURCE_CONFLICT).",
             responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                                       ErrorCode.RESOURCE_NOT_FOUND,
                                       ErrorCode.RESOURCE_CONFLICT))
def revoke_principal(body: ReasonIn, caller: Admin, ctx: Context,
                     principal_id: PrincipalId) -> PrincipalOut:
    return principal_out(ctx.principals.revoke(principal_id, caller.actor, body.reason))
