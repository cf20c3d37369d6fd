"""``/v1/policy``: the alliance policy, versioned, every change in the audit ledger."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from coordinator.api.deps import Admin, AdminContext, AdminOrRegulator, Context
from coordinator.api.schemas import (
    AUTH_ERRORS,
    PolicyChangeOut,
    PolicyDocument,
    PolicyOut,
    error_responses,
)
from coordinator.policy import AlliancePolicy, PolicyStore
from fedcredit.audit import EntryDraft, EntryKind
from fedcredit.errors import ConflictError, ErrorCode, PolicyError


class PolicyRoute(APIRoute):
    """A policy document that fails validation is POLICY_INVALID (naming every field at fault),
    not the generic INVALID_REQUEST: "nothing was changed" is the point of that code."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def validated(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise PolicyError("; ".join(
                    f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'policy'}: "
                    f"{e['msg']}" for e in exc.errors()[:10])) from None

        return validated


router = APIRouter(prefix="/v1/policy", tags=["policy"], route_class=PolicyRoute)
MIN_SAFE_ANSWERED = 2


def _comparable(value: object) -> object:
    """Sets as sorted lists, so the ledger body is canonical and diffs are by content."""
    if isinstance(value, list | set | frozenset | tuple):
        return sorted(str(v) for v in value)
    return value


def _diff(old: AlliancePolicy, new: AlliancePolicy) -> dict[str, Any]:
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    return {name: {"old": _comparable(before[name]), "new": _comparable(after[name])}
            for name in after if _comparable(before[name]) != _comparable(after[name])}


def change_policy(ctx: AdminContext, policy: AlliancePolicy, actor: str,
                  expected_version: int | None) -> PolicyChangeOut:
    """Replace the policy: the new version and its ledger entry commit together."""
    if policy.min_answered < MIN_SAFE_ANSWERED and ctx.environment != "dev":
        raise PolicyError(f"min_answered: below {MIN_SAFE_ANSWERED} lets a requester decrypt "
                          "one member's exact share; allowed only with environment=dev")
    now = ctx.clock()
    with ctx.db.transaction() as conn:  # read, compare and write under one lock: no lost update
        version, current = ctx.policies.current()
        if expected_version is not None and expected_version != version:
            raise ConflictError(f"the policy is at version {version}, not {expected_version}")
        changed = _diff(current, policy)
        if not changed:
            return PolicyChangeOut(version=version, previous_version=version, changed=[],
                                   policy=PolicyDocument.model_validate(current.model_dump()))
        new_version = PolicyStore.replace(conn, policy, actor, now)
        ctx.ledger.append(EntryDraft(EntryKind.POLICY_CHANGE, actor, {
            "old_version": version, "new_version": new_version, "changed": changed,
        }), now_ms=now, conn=conn)
    return PolicyChangeOut(version=new_version, previous_version=version,
                           changed=sorted(changed), policy=PolicyDocument.model_validate(
                               policy.model_dump()))


@router.get("", response_model=PolicyOut, summary="The current alliance policy and version",
            responses=error_responses(*AUTH_ERRORS))
def get_policy(_: AdminOrRegulator, ctx: Context) -> PolicyOut:
    version, policy = ctx.policies.current()
    return PolicyOut(version=version, policy=PolicyDocument.model_validate(policy.model_dump()))


@router.put(
    "", response_model=PolicyChangeOut, summary="Replace the alliance policy",
    description=(
        "The whole document, validated before anything changes: an invalid one is "
        "POLICY_INVALID naming each field. `min_answered` below 2 is refused unless the "
        "coordinator runs with environment=dev. The change is recorded in the ledger "
        "(policy_change: old and new version, each changed field's old and new value). "
        "A document equal to the current policy changes nothing. Pass `expected_version` to "
        "refuse (RESOURCE_CONFLICT) if someone changed the policy since you read it."),
    responses=error_responses(*AUTH_ERRORS, ErrorCode.POLICY_INVALID,
                              ErrorCode.RESOURCE_CONFLICT),
)
def put_policy(body: PolicyDocument, caller: Admin, ctx: Context,
               expected_version: Annotated[int | None, Query(ge=1)] = None) -> PolicyChangeOut:
    return change_policy(ctx, AlliancePolicy.model_validate(body.model_dump()), caller.actor,
                         expected_version)
