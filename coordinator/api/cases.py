"""``/v1/grants`` and ``/v1/cases``: judicial access to the ledger, granted per case."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from coordinator.api.deps import CaseReader, Context, Regulator
from coordinator.api.schemas import (
    AUTH_ERRORS,
    CaseEntryOut,
    CaseReadOut,
    GrantCreate,
    GrantOut,
    entry_out,
    error_responses,
    head_out,
)
from coordinator.grants import MAX_READ_ENTRIES, Grant, GrantScope
from coordinator.principals import Role
from fedcredit.errors import ErrorCode

router = APIRouter(tags=["judicial access"])


def grant_out(grant: Grant, now_ms: int) -> GrantOut:
    return GrantOut(
        grant_id=grant.grant_id, case_id=grant.case_id, grantee=grant.grantee,
        granted_by=grant.granted_by, legal_basis=grant.legal_basis,
        query_ids=list(grant.scope.query_ids), member_id=grant.scope.member_id,
        since_ms=grant.scope.since_ms, until_ms=grant.scope.until_ms,
        created_ms=grant.created_ms, expires_ms=grant.expires_ms,
        revoked_ms=grant.revoked_ms, revoked_by=grant.revoked_by,
        active=grant.active_at(now_ms))


@router.post(
    "/v1/grants", status_code=status.HTTP_201_CREATED, response_model=GrantOut,
    summary="Grant a judicial authority access for a case",
    description=(
        "Scope: explicit `query_ids`, and/or one `member_id`'s activity in "
        "`[since_ms, until_ms)`. Policy, principal and grant entries are never in a case. "
        "Recorded in the ledger (grant)."),
    responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                              ErrorCode.RESOURCE_NOT_FOUND, ErrorCode.RESOURCE_CONFLICT),
)
def create_grant(body: GrantCreate, caller: Regulator, ctx: Context) -> GrantOut:
    scope = GrantScope(tuple(body.query_ids), body.member_id, body.since_ms, body.until_ms)
    grant = ctx.grants.create(body.case_id, body.grantee, scope, body.expires_ms,
                              body.legal_basis, caller.actor)
    return grant_out(grant, ctx.clock())


@router.get("/v1/grants", response_model=list[GrantOut], summary="List grants",
            description="A regulator sees every grant; a judicial authority only its own.",
            responses=error_responses(*AUTH_ERRORS))
def list_grants(caller: CaseReader, ctx: Context) -> list[GrantOut]:
    mine = caller.principal_id if caller.role is Role.JUDICIAL else None
    now = ctx.clock()
    return [grant_out(g, now) for g in ctx.grants.all(grantee=mine)]


@router.post("/v1/grants/{grant_id}/revoke", response_model=GrantOut,
             summary="End a grant before it expires",
             responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                                       ErrorCode.RESOURCE_NOT_FOUND,
                                       ErrorCode.RESOURCE_CONFLICT))
def revoke_grant(caller: Regulator, ctx: Context,
                 grant_id: Annotated[str, Path(max_length=64)]) -> GrantOut:
    return grant_out(ctx.grants.revoke(grant_id, caller.actor), ctx.clock())


@router.get(
    "/v1/cases/{case_id}/entries", response_model=CaseReadOut,
    summary="Read a case's ledger entries, with inclusion proofs",
    description=(
        "Only entries the case's active grants cover, each proved against `tree_head`. A "
        "judicial authority reads only cases granted to it (anything else, including an "
        "unknown case, is PERMISSION_DENIED). Each call scans one ledger page from `start`; "
        "continue from `next_start` until `complete`. Every call is recorded in the ledger "
        "before it returns (grant, action case_read, with the indices returned)."),
    responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                              ErrorCode.RESOURCE_NOT_FOUND, ErrorCode.LEDGER_RANGE_INVALID),
)
def read_case(
    caller: CaseReader, ctx: Context,
    case_id: Annotated[str, Path(max_length=64, examples=["court-4:2026-118"])],
    start: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_READ_ENTRIES)] = MAX_READ_ENTRIES,
) -> CaseReadOut:
    read = ctx.grants.read_case(case_id, caller, start, limit)
    return CaseReadOut(
        case_id=read.case_id, tree_head=head_out(read.tree_head), start=read.start,
        next_start=read.next_start, complete=read.complete,
        entries=[CaseEntryOut(entry=entry_out(c.entry),
                              inclusion=[h.hex() for h in c.proof.hashes])
                 for c in read.entries])
