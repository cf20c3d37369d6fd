"""``/v1/join-requests``: applicants waiting for the alliance's decision."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from coordinator.admission import JoinRequestRecord, JoinState
from coordinator.api.deps import Admin, Context
from coordinator.api.schemas import (
    AUTH_ERRORS,
    ApproveIn,
    JoinRequestOut,
    ReasonIn,
    error_responses,
)
from fedcredit.errors import ErrorCode

router = APIRouter(prefix="/v1/join-requests", tags=["join requests"])
RequestId = Annotated[str, Path(max_length=64, examples=["29e48e2a-9348-4bbe-9881-da1cb6208361"])]


def join_request_out(record: JoinRequestRecord) -> JoinRequestOut:
    return JoinRequestOut(
        request_id=record.request_id, member_id=record.member_id,
        display_name=record.display_name, contact=record.contact,
        fingerprint=record.fingerprint, state=record.state.value, created_ms=record.created_ms,
        approvals_required=record.approvals_required,
        admin_approved_by=record.admin_approved_by, decided_ms=record.decided_ms,
        reason=record.reason, approvals=list(record.approvals),
        rejections=list(record.rejections),
        certificate_pem=None if record.certificate_pem is None
        else record.certificate_pem.decode("ascii"))


@router.get("", response_model=list[JoinRequestOut], summary="List join requests",
            responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST))
def list_join_requests(_: Admin, ctx: Context,
                       state: Annotated[JoinState | None, Query()] = None) -> list[JoinRequestOut]:
    return [join_request_out(r) for r in ctx.admission.list(state)]


@router.get("/{request_id}", response_model=JoinRequestOut, summary="Show a join request",
            responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                                      ErrorCode.RESOURCE_NOT_FOUND))
def get_join_request(_: Admin, ctx: Context, request_id: RequestId) -> JoinRequestOut:
    return join_request_out(ctx.admission.get(request_id))


@router.post(
    "/{request_id}/approve", response_model=JoinRequestOut, summary="Approve a join request",
    description=(
        "Quote the key fingerprint the applicant read to you out of band: a request filed "
        "under its name with another key is refused (PERMISSION_DENIED), so an impostor "
        "cannot be admitted by mistake. With an admission quorum the request stays PENDING "
        "until enough members vote; otherwise the certificate is issued now."),
    responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                              ErrorCode.RESOURCE_NOT_FOUND, ErrorCode.RESOURCE_CONFLICT),
)
def approve_join_request(body: ApproveIn, caller: Admin, ctx: Context,
                         request_id: RequestId) -> JoinRequestOut:
    return join_request_out(ctx.admission.decide(request_id, True, caller.actor,
                                                 fingerprint=body.fingerprint))


@router.post("/{request_id}/reject", response_model=JoinRequestOut,
             summary="Reject a join request, with the reason",
             responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                                       ErrorCode.RESOURCE_NOT_FOUND,
                                       ErrorCode.RESOURCE_CONFLICT))
def reject_join_request(body: ReasonIn, caller: Admin, ctx: Context,
                        request_id: RequestId) -> JoinRequestOut:
    return join_request_out(ctx.admission.decide(request_id, False, caller.actor,
                                                 reason=body.reason))
