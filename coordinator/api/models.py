"""``/v1/models``: trained models, and which one each requester evaluates with.

Training registers models (in-process, not over this API); admins promote and roll back. A
requester node whose ``model_version`` setting is empty gets plans for its active model.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from coordinator.api.deps import Admin, AdminOrRegulator, Context
from coordinator.api.schemas import AUTH_ERRORS, ModelOut, SliceOut, error_responses
from coordinator.model_registry import ModelRecord
from fedcredit.errors import ErrorCode

router = APIRouter(prefix="/v1/models", tags=["models"])
Version = Annotated[str, Path(max_length=64, examples=["bank-a-2026-05"])]
MemberId = Annotated[str, Path(max_length=64, examples=["bank-a"])]
CHANGE_ERRORS = (*AUTH_ERRORS, ErrorCode.INVALID_REQUEST, ErrorCode.RESOURCE_NOT_FOUND,
                 ErrorCode.RESOURCE_CONFLICT)


def model_out(record: ModelRecord) -> ModelOut:
    return ModelOut(
        version=record.version, requester_id=record.requester_id, engine=record.engine,
        session_id=record.session_id, status=record.status.value,
        created_ms=record.created_ms, registered_by=record.registered_by,
        promoted_ms=record.promoted_ms,
        slices=[SliceOut(member_id=s.member_id, role=s.role, sha256=s.sha256,
                         features=list(s.features)) for s in record.slices],
        metrics=dict(record.metrics), fingerprints=dict(record.fingerprints))


@router.get("", response_model=list[ModelOut], summary="List registered models, oldest first",
            responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST))
def list_models(
    _: AdminOrRegulator, ctx: Context,
    requester: Annotated[str | None, Query(max_length=64,
                                           description="Only this requester's models.")] = None,
) -> list[ModelOut]:
    return [model_out(r) for r in ctx.models.list(requester)]


@router.get("/{version}", response_model=ModelOut, summary="Show a model: parties, features, "
            "metrics, digests (never weights)",
            responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                                      ErrorCode.RESOURCE_NOT_FOUND))
def get_model(_: AdminOrRegulator, ctx: Context, version: Version) -> ModelOut:
    return model_out(ctx.models.get(version))


@router.post(
    "/{version}/promote", response_model=ModelOut,
    summary="Make a model its requester's active model",
    description=(
        "Plans the requester asks for without naming a version carry this one from now on; "
        "the previously active model is retired. Recorded in the ledger (model_promoted). "
        "Promoting the model that is already active is RESOURCE_CONFLICT."),
    responses=error_responses(*CHANGE_ERRORS))
def promote_model(caller: Admin, ctx: Context, version: Version) -> ModelOut:
    return model_out(ctx.models.promote(version, caller.actor, ctx.clock()))


@router.post(
    "/requesters/{member_id}/rollback", response_model=ModelOut,
    summary="Re-activate the requester's previous model",
    description=(
        "The model that was active before the current one becomes active again and the "
        "current one is retired; repeated rollbacks walk further back. Nothing to roll back "
        "to is RESOURCE_CONFLICT. Recorded in the ledger (model_rolled_back)."),
    responses=error_responses(*CHANGE_ERRORS))
def rollback_model(caller: Admin, ctx: Context, member_id: MemberId) -> ModelOut:
    return model_out(ctx.models.rollback(member_id, caller.actor, ctx.clock()))
