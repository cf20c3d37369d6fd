from __future__ import annotations

import dataclasses

import pytest

from fedcredit.errors import ErrorCode, FedCreditError
from fedcredit.protocol import FallbackPolicy, Plan, Purpose, RouteMode
from mpc.paillier import PaillierKeyPair
from node.replay import SeenPlans

pytestmark = pytest.mark.unit
START = 1_800_000_000_000


def plan(keypair: PaillierKeyPair, query_id: str, issued: int, ttl: int = 10_000) -> Plan:
    return Plan(query_id, "bank", keypair.public, RouteMode.CHAIN, (), issued, issued + ttl,
                "v1", FallbackPolicy(), Purpose.ORIGINATION)


def test_a_plan_acts_once(keypair: PaillierKeyPair) -> None:
    seen = SeenPlans(START)
    first = plan(keypair, "q-1", START + 1)
    seen.admit(first, START + 2)
    with pytest.raises(FedCreditError) as info:
        seen.admit(first, START + 3)
    assert info.value.code is ErrorCode.PLAN_REPLAYED
    seen.admit(dataclasses.replace(first, query_id="q-2"), START + 3)


def test_memory_is_bounded_by_plan_lifetimes(keypair: PaillierKeyPair) -> None:
    seen = SeenPlans(START)
    for i in range(100):
        seen.admit(plan(keypair, f"q-{i}", START + i, ttl=1_000), START + i)
    assert len(seen) == 100
    seen.admit(plan(keypair, "late", START + 5_000), START + 5_000)
    assert len(seen) == 1  # every earlier plan has expired and was forgotten


def test_plans_from_before_this_process_started_are_refused(keypair: PaillierKeyPair) -> None:
    seen = SeenPlans(START)
    with pytest.raises(FedCreditError) as info:
        seen.admit(plan(keypair, "old", START - 60_000), START + 1)
    assert info.value.code is ErrorCode.PLAN_REPLAYED
    seen.admit(plan(keypair, "skewed", START - 1_000), START + 1)  # within clock skew
