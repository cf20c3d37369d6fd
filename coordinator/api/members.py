"""``/v1/members`` and ``/v1/certificates``: the alliance's members and their standing.

Suspension and revocation are enforced by every node from its copy of the member directory.
The call returns once every online member confirms (by heartbeat) that it enforces the new
directory version, or after ``propagation_timeout_ms`` with the members that did not — so an
admin knows whether "suspended" already holds everywhere, not just at the coordinator.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path

from coordinator.api.deps import Admin, AdminContext, Context
from coordinator.api.schemas import (
    AUTH_ERRORS,
    CertificateOut,
    DirectoryChangeOut,
    MemberOut,
    ReasonIn,
    error_responses,
)
from coordinator.registry import CertificateRecord, MemberRecord
from fedcredit.errors import ErrorCode, ResourceNotFoundError
from mpc.pki import CertRole

router = APIRouter(tags=["members"])
MemberId = Annotated[str, Path(max_length=64, examples=["bank-a"])]
POLL_INTERVAL_S = 0.05
CHANGE_ERRORS = (*AUTH_ERRORS, ErrorCode.INVALID_REQUEST, ErrorCode.RESOURCE_NOT_FOUND,
                 ErrorCode.RESOURCE_CONFLICT)


def await_propagation(ctx: AdminContext, version: int) -> DirectoryChangeOut:
    """Wait until no online member lags behind directory ``version`` (or the timeout)."""
    deadline = time.monotonic() + ctx.propagation_timeout_ms / 1000
    while True:
        lagging = ctx.registry.unconfirmed(version, ctx.clock())
        if not lagging or time.monotonic() >= deadline:
            return DirectoryChangeOut(directory_version=version, unconfirmed=lagging)
        time.sleep(POLL_INTERVAL_S)


def _certificate_out(cert: CertificateRecord) -> CertificateOut:
    return CertificateOut(serial=cert.serial, issued_ms=cert.issued_ms,
                          not_after_ms=cert.not_after_ms, revoked_ms=cert.revoked_ms)


def member_out(member: MemberRecord, certificates: list[CertificateRecord]) -> MemberOut:
    return MemberOut(
        member_id=member.member_id, display_name=member.display_name,
        membership=member.membership.value, status=member.status.value,
        endpoint=member.endpoint, last_heartbeat_ms=member.last_heartbeat_ms,
        applied_version=member.applied_version, latency_ms=member.latency_ms,
        certificates=[_certificate_out(c) for c in certificates if c.role is CertRole.MEMBER])


@router.get("/v1/members", response_model=list[MemberOut], summary="List members",
            responses=error_responses(*AUTH_ERRORS))
def list_members(_: Admin, ctx: Context) -> list[MemberOut]:
    by_party: dict[str, list[CertificateRecord]] = {}
    for cert in ctx.registry.certificates():
        by_party.setdefault(cert.party_id, []).append(cert)
    return [member_out(m, by_party.get(m.member_id, []))
            for m in ctx.registry.members(ctx.clock())]


@router.get("/v1/members/{member_id}", response_model=MemberOut,
            summary="Show a member, with every certificate it was issued",
            responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                                      ErrorCode.RESOURCE_NOT_FOUND))
def get_member(_: Admin, ctx: Context, member_id: MemberId) -> MemberOut:
    if ctx.registry.exists(member_id) is None:
        raise ResourceNotFoundError(f"no member {member_id!r}")
    return member_out(ctx.registry.get(member_id, ctx.clock()),
                      ctx.registry.certificates(member_id))


@router.post("/v1/members/{member_id}/suspend", response_model=DirectoryChangeOut,
             summary="Suspend a member (it can neither call nor be called)",
             responses=error_responses(*CHANGE_ERRORS))
def suspend_member(body: ReasonIn, caller: Admin, ctx: Context,
                   member_id: MemberId) -> DirectoryChangeOut:
    return await_propagation(ctx, ctx.admission.suspend(member_id, caller.actor, body.reason))


@router.post("/v1/members/{member_id}/reinstate", response_model=DirectoryChangeOut,
             summary="Lift a suspension",
             responses=error_responses(*CHANGE_ERRORS))
def reinstate_member(body: ReasonIn, caller: Admin, ctx: Context,
                     member_id: MemberId) -> DirectoryChangeOut:
    return await_propagation(ctx, ctx.admission.reinstate(member_id, caller.actor, body.reason))


@router.post("/v1/members/{member_id}/revoke", response_model=DirectoryChangeOut,
             summary="Revoke a member and every certificate it holds (final)",
             description="To come back it files a new join request.",
             responses=error_responses(*CHANGE_ERRORS))
def revoke_member(body: ReasonIn, caller: Admin, ctx: Context,
                  member_id: MemberId) -> DirectoryChangeOut:
    return await_propagation(ctx, ctx.admission.revoke(member_id, caller.actor, body.reason))


@router.post("/v1/certificates/{serial}/revoke", response_model=DirectoryChangeOut,
             tags=["members"], summary="Revoke one certificate (a leaked key)",
             description="The member stays, with its other certificates.",
             responses=error_responses(*CHANGE_ERRORS))
def revoke_certificate(body: ReasonIn, caller: Admin, ctx: Context,
                       serial: Annotated[str, Path(max_length=64)]) -> DirectoryChangeOut:
    return await_propagation(ctx, ctx.admission.revoke_certificate(serial, caller.actor,
                                                                   body.reason))
