from __future__ import annotations

import pytest

from coordinator.planner import RoutePlanner
from coordinator.policy import AlliancePolicy
from coordinator.registry import MemberRecord, Membership, MemberStatus
from fedcredit.errors import CoverageError, ErrorCode, FedCreditError
from fedcredit.protocol import Plan, Purpose, RouteMode
from mpc.paillier import PaillierKeyPair

pytestmark = pytest.mark.unit


def member(kp: PaillierKeyPair, member_id: str, latency: float,
           status: MemberStatus = MemberStatus.ACTIVE,
           membership: Membership = Membership.ACTIVE) -> MemberRecord:
    return MemberRecord(member_id, member_id, membership, f"127.0.0.1:{len(member_id)}",
                        kp.public, 0, 0, latency, status, ())


class Planner:
    """The route planner under a given policy (the coordinator reads it per plan)."""

    def __init__(self, **policy: object) -> None:
        self.policy = AlliancePolicy.model_validate(
            {"plan_ttl_ms": 5000, "max_plan_ttl_ms": 30_000, "hop_timeout_ms": 1000, **policy})
        self.planner = RoutePlanner(new_query_id=lambda: "q")

    def plan(self, requester: MemberRecord, members: list[MemberRecord], *, model_version: str,
             purpose: Purpose, now_ms: int) -> Plan:
        return self.planner.plan(requester, members, policy=self.policy, directory_version=7,
                                 model_version=model_version, purpose=purpose, now_ms=now_ms)


def planner(
    min_answered: int = 2, purposes: frozenset[Purpose] = frozenset(Purpose)
) -> Planner:
    return Planner(min_answered=min_answered, allowed_purposes=purposes)


def test_route_excludes_requester_and_stale_members_and_orders_by_latency(
    keypair: PaillierKeyPair,
) -> None:
    bank = member(keypair, "bank", 1.0)
    members = [
        bank,
        member(keypair, "slow", 30.0),
        member(keypair, "fast", 2.0),
        member(keypair, "unmeasured", 0.0),
        member(keypair, "gone", 1.0, MemberStatus.STALE),
        member(keypair, "benched", 1.0, membership=Membership.SUSPENDED),
        member(keypair, "expelled", 1.0, membership=Membership.REVOKED),
    ]
    plan = planner().plan(bank, members, model_version="v1", purpose=Purpose.ORIGINATION,
                          now_ms=1000)
    assert [h.member_id for h in plan.route] == ["fast", "slow", "unmeasured"]
    assert plan.mode is RouteMode.CHAIN
    # 3 hops: the requester's budget level is f(4) = 7 units of 1000 ms, plus a second
    assert plan.expires_unix_ms == 1000 + 8000
    assert plan.requester_key == keypair.public
    assert plan.fallback.min_answered == 2
    assert plan.directory_version == 7
    assert not plan.requires_existing_customer


def test_a_suspended_requester_gets_no_plan(keypair: PaillierKeyPair) -> None:
    bank = member(keypair, "bank", 1.0, membership=Membership.SUSPENDED)
    others = [member(keypair, "a1", 1.0), member(keypair, "b1", 1.0)]
    with pytest.raises(FedCreditError) as info:
        planner().plan(bank, [bank, *others], model_version="v1", purpose=Purpose.ORIGINATION,
                       now_ms=0)
    assert info.value.code is ErrorCode.MEMBER_SUSPENDED


def test_policy_marks_purposes_that_need_an_existing_customer(keypair: PaillierKeyPair) -> None:
    bank = member(keypair, "bank", 1.0)
    others = [member(keypair, "a1", 1.0), member(keypair, "b1", 1.0)]
    review = planner().plan(bank, [bank, *others], model_version="v1",
                            purpose=Purpose.ACCOUNT_REVIEW, now_ms=0)
    assert review.requires_existing_customer
    relaxed = Planner(existing_customer_purposes=frozenset()).plan(
        bank, [bank, *others], model_version="v1", purpose=Purpose.ACCOUNT_REVIEW, now_ms=0)
    assert not relaxed.requires_existing_customer


def test_no_other_member(keypair: PaillierKeyPair) -> None:
    bank = member(keypair, "bank", 1.0)
    with pytest.raises(FedCreditError) as info:
        planner().plan(bank, [bank], model_version="v1", purpose=Purpose.ORIGINATION, now_ms=0)
    assert info.value.code is ErrorCode.NO_MEMBERS_AVAILABLE


def test_fewer_members_than_the_coverage_policy(keypair: PaillierKeyPair) -> None:
    bank = member(keypair, "bank", 1.0)
    with pytest.raises(CoverageError):
        planner(min_answered=2).plan(bank, [bank, member(keypair, "finco", 1.0)],
                                     model_version="v1", purpose=Purpose.ORIGINATION, now_ms=0)


def test_disallowed_purpose(keypair: PaillierKeyPair) -> None:
    bank = member(keypair, "bank", 1.0)
    with pytest.raises(FedCreditError) as info:
        planner(purposes=frozenset({Purpose.ORIGINATION})).plan(
            bank, [bank, member(keypair, "a1", 1), member(keypair, "b1", 1)],
            model_version="v1", purpose=Purpose.COLLECTIONS, now_ms=0)
    assert info.value.code is ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED


def test_call_budgets_leave_room_to_skip_one_hanging_successor() -> None:
    from fedcredit.protocol import FallbackPolicy, budget_units

    assert [budget_units(m) for m in range(7)] == [0, 1, 2, 4, 7, 12, 20]
    for m in range(2, 10):
        # own work + waiting out a hung successor + the rest of the route after it
        assert budget_units(m) >= 1 + budget_units(m - 1) + budget_units(m - 2)
    assert FallbackPolicy(hop_timeout_ms=100).call_budget_ms(3) == 400


def test_plan_lifetime_covers_the_route_budget(keypair: PaillierKeyPair) -> None:
    bank = member(keypair, "bank", 1.0)
    others = [member(keypair, f"m{i}", 1.0) for i in range(5)]
    plan = planner(min_answered=1).plan(bank, [bank, others[0]], model_version="v1",
                                        purpose=Purpose.ORIGINATION, now_ms=0)
    assert plan.expires_unix_ms == 5000  # 1 hop: f(2) + 1 s = 3 s, below the 5 s minimum
    plan = Planner(route_mode="chain").plan(bank, [bank, *others], model_version="v1",
                                            purpose=Purpose.ORIGINATION, now_ms=0)
    assert plan.expires_unix_ms == 21_000  # 5 hops: f(6) = 20 units + 1 s
    capped = Planner(route_mode="chain", max_plan_ttl_ms=12_000)
    plan = capped.plan(bank, [bank, *others], model_version="v1",
                       purpose=Purpose.ORIGINATION, now_ms=0)
    assert plan.expires_unix_ms == 12_000  # never beyond the policy's cap


def test_the_policy_picks_chain_or_tree_by_route_size(keypair: PaillierKeyPair) -> None:
    bank = member(keypair, "bank", 1.0)
    others = [member(keypair, f"m{i}", float(i + 1)) for i in range(4)]
    auto = Planner(route_mode="auto", tree_min_members=4)
    three = auto.plan(bank, [bank, *others[:3]], model_version="v1",
                      purpose=Purpose.ORIGINATION, now_ms=0)
    four = auto.plan(bank, [bank, *others], model_version="v1", purpose=Purpose.ORIGINATION,
                     now_ms=0)
    assert three.mode is RouteMode.CHAIN and four.mode is RouteMode.TREE
    forced = Planner(route_mode="tree").plan(bank, [bank, *others[:2]], model_version="v1",
                                             purpose=Purpose.ORIGINATION, now_ms=0)
    assert forced.mode is RouteMode.TREE
    chain = Planner(route_mode="chain", tree_min_members=2).plan(
        bank, [bank, *others], model_version="v1", purpose=Purpose.ORIGINATION, now_ms=0)
    assert chain.mode is RouteMode.CHAIN


def test_a_tree_aggregates_at_the_fastest_member_in_heap_order(keypair: PaillierKeyPair) -> None:
    from fedcredit.protocol import tree_positions

    bank = member(keypair, "bank", 1.0)
    others = [member(keypair, f"m{i:02}", float(i + 1)) for i in range(12)]
    plan = Planner(route_mode="tree", tree_fanout=3).plan(
        bank, [bank, *reversed(others)], model_version="v1", purpose=Purpose.ORIGINATION,
        now_ms=0)
    (root,) = plan.route
    assert root.member_id == "m00"  # the fastest aggregates; the requester is never in a tree
    assert [c.member_id for c in root.children] == ["m01", "m02", "m03"]
    assert [c.member_id for c in root.children[0].children] == ["m04", "m05", "m06"]
    assert [c.member_id for c in root.children[2].children] == ["m10", "m11"]
    positions = tree_positions(plan.route)
    assert sorted(p.hop.member_id for p in positions) == [m.member_id for m in others]
    assert positions[0].parent is None and positions[0].height == 3
    assert positions[0].members[0] == "m00" and len(positions[0].members) == 12
    first_child = positions[positions[0].children[0]]
    assert first_child.parent == 0 and first_child.members == ("m01", "m04", "m05", "m06")
    # the lifetime covers three levels of hop budgets (1000 ms each) plus a second
    assert plan.expires_unix_ms == max(5000, 3 * 1000 + 1000)
    flat = Planner(route_mode="tree").plan(bank, [bank, *others], model_version="v1",
                                           purpose=Purpose.ORIGINATION, now_ms=0)
    assert len(flat.route[0].children) == 8 and tree_positions(flat.route)[0].height == 3
