"""Route planning policy: which members, in which order, under which limits."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from coordinator.policy import AlliancePolicy
from coordinator.registry import MemberRecord, Membership, MemberStatus
from fedcredit.errors import CoverageError, ErrorCode, FedCreditError
from fedcredit.protocol import (
    BatchTerms,
    FallbackPolicy,
    Hop,
    Plan,
    Purpose,
    RouteMode,
    tree_positions,
)


def tree_route(hops: Sequence[Hop], fanout: int) -> tuple[Hop, ...]:
    """The hops (fastest first) as one tree in heap order: hop i's children are hops
    fanout·i+1 … fanout·i+fanout, so the fastest member aggregates at the root and the tree
    is as shallow as the fan-out allows."""

    def node(i: int) -> Hop:
        first = fanout * i + 1
        children = tuple(node(c) for c in range(first, min(first + fanout, len(hops))))
        return Hop(member_id=hops[i].member_id, endpoint=hops[i].endpoint, children=children)

    return (node(0),) if hops else ()


def route_mode(policy: AlliancePolicy, members: int) -> RouteMode:
    """The policy's route mode for a route of ``members`` members."""
    if policy.route_mode == "auto":
        return RouteMode.TREE if members >= policy.tree_min_members else RouteMode.CHAIN
    return RouteMode(policy.route_mode.upper())


class RoutePlanner:
    """Routes over every active member but the requester, fastest first: CHAIN (node to node)
    or TREE (fan-out from the fastest member, which aggregates), as the policy says.

    Ordering by measured latency puts slow members late in a CHAIN, where a timeout costs the
    least remaining work, and at the leaves of a TREE; members not yet measured go last, ties
    broken by id for determinism.
    """

    def __init__(self, new_query_id: Callable[[], str] | None = None):
        self._new_query_id = new_query_id or (lambda: str(uuid.uuid4()))

    def plan(
        self,
        requester: MemberRecord,
        members: Sequence[MemberRecord],
        *,
        policy: AlliancePolicy,
        directory_version: int,
        model_version: str,
        purpose: Purpose,
        now_ms: int,
        batch: BatchTerms | None = None,
        query_id: str | None = None,
    ) -> Plan:
        """A route for one evaluation, or — ``batch`` — for a portfolio job: always a CHAIN
        (each chunk is a long call; a CHAIN keeps one hop busy per chunk, so chunks in flight
        pipeline through the members), living ``portfolio_plan_ttl_ms``. ``query_id``: the
        requester's proposal (checked by the caller), else a new random one."""
        if purpose not in policy.allowed_purposes:
            raise FedCreditError(
                f"purpose {purpose.value} is not allowed by alliance policy",
                code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED,
            )
        if requester.membership is not Membership.ACTIVE:
            raise FedCreditError(f"the requester is {requester.membership.value.lower()}",
                                 code=ErrorCode.MEMBER_SUSPENDED)
        if requester.status is not MemberStatus.ACTIVE or requester.public_key is None:
            raise FedCreditError("the requester's registration is stale; heartbeat first",
                                 code=ErrorCode.UNKNOWN_MEMBER)
        others = [
            m for m in members if m.member_id != requester.member_id and m.plannable
        ]
        if not others:
            raise FedCreditError("no other active member", code=ErrorCode.NO_MEMBERS_AVAILABLE)
        if len(others) < policy.min_answered:
            raise CoverageError(
                f"{len(others)} other active member(s); policy requires "
                f"{policy.min_answered}"
            )
        others.sort(key=lambda m: (m.latency_ms <= 0, m.latency_ms, m.member_id))
        hops = tuple(Hop(member_id=m.member_id, endpoint=m.endpoint) for m in others)
        mode = RouteMode.CHAIN if batch is not None else route_mode(policy, len(hops))
        fallback = FallbackPolicy(
            skip_unreachable=True,
            hop_timeout_ms=policy.hop_timeout_ms,
            min_answered=policy.min_answered,
        )
        if mode is RouteMode.TREE:
            route = tree_route(hops, policy.tree_fanout)
            needed_ms = fallback.tree_lifetime_ms(tree_positions(route)[0].height)
        else:
            route = hops
            needed_ms = fallback.route_lifetime_ms(len(route))
        # Long enough for the route's call budgets, but never longer than the policy's cap.
        ttl_ms = min(max(policy.plan_ttl_ms, needed_ms), policy.max_plan_ttl_ms)
        if batch is not None:
            ttl_ms = policy.portfolio_plan_ttl_ms
        return Plan(
            query_id=query_id or self._new_query_id(),
            requester_id=requester.member_id,
            requester_key=requester.public_key,
            directory_version=directory_version,
            requires_existing_customer=purpose in policy.existing_customer_purposes,
            mode=mode,
            route=route,
            issued_unix_ms=now_ms,
            expires_unix_ms=now_ms + ttl_ms,
            model_version=model_version,
            fallback=fallback,
            purpose=purpose,
            batch=batch,
        )
