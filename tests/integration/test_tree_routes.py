"""TREE routes in a real alliance: fan-out from a root other than the requester, exact sums, the
same guarantees as a CHAIN (only the root answers the requester, and only with enough shares),
skipped subtrees, and every call that breaks the tree's shape refused."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from coordinator.planner import tree_route
from fedcredit.demo.population import Population, pooled_result
from fedcredit.plans import sign_plan
from fedcredit.protocol import FallbackPolicy, Hop, RouteMode
from fedcredit.serde import accumulator_to_pb
from mpc.contribution import ContributionVector
from mpc.pseudonym import SubjectKey, pseudonymize
from mpc.secure_sum import decrypt_total, encrypt_contribution
from node.route import RouteForwarder
from proto.v1 import node_pb2_grpc
from tests.support.alliance import (
    API_KEY,
    InProcessAlliance,
    body,
    indices_with_records,
    member_share,
    start_alliance,
)
from tests.support.grpc_calls import (
    channel_to,
    coordinator_signer,
    error_code,
    make_plan,
    make_request,
    requester_keypair,
    signed_consent,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tree_alliance(tmp_path_factory: pytest.TempPathFactory, population: Population,
                  subject_key: SubjectKey) -> Iterator[InProcessAlliance]:
    running = start_alliance(tmp_path_factory.mktemp("tree"), population, subject_key,
                    route_mode="tree", hop_timeout_ms=1000)
    yield running
    running.stop()


def tree_plan(alliance: InProcessAlliance, root: str, leaves: tuple[str, ...],
              **changes: Any) -> Any:
    """A TREE plan: ``root`` aggregates, ``leaves`` are its children (built by the planner's
    own tree function)."""
    members = (root, *leaves)
    hops = [Hop(m, f"127.0.0.1:{alliance.nodes[m].grpc_port}") for m in members]
    return dataclasses.replace(make_plan(alliance, members, **changes), mode=RouteMode.TREE,
                               route=tree_route(hops, fanout=len(leaves) or 1))


class TreeCalls:
    """Records every TREE hop a node serves: (member, hop index, caller)."""

    def __init__(self, alliance: InProcessAlliance) -> None:
        self.calls: list[tuple[str, int, str]] = []
        self._lock = threading.Lock()
        self._services: list[Any] = []
        for member, node in alliance.nodes.items():
            service = node.app.state.context.evaluations._contributions
            original = service._contribute_in_tree

            def spy(call: Any, plan: Any, caller: Any, deadline: Any, now: int,
                    _member: str = member, _original: Any = original) -> Any:
                with self._lock:
                    self.calls.append((_member, call.hop_index, caller.party_id))
                return _original(call, plan, caller, deadline, now)

            service._contribute_in_tree = spy
            self._services.append(service)

    def close(self) -> None:
        for service in self._services:  # the class's method shows through again
            del service._contribute_in_tree


def test_tree_evaluations_are_exact_and_aggregate_at_a_member_other_than_the_requester(
    tree_alliance: InProcessAlliance, population: Population
) -> None:
    calls = TreeCalls(tree_alliance)
    try:
        with httpx.Client(timeout=30, headers={"X-API-Key": API_KEY}) as http:
            for index in indices_with_records(population, 3)[:4]:
                calls.calls.clear()
                response = http.post(f"{tree_alliance.url('bank')}/v1/evaluations",
                                     json=body(population, index))
                assert response.status_code == 201, response.text
                report = response.json()
                expected = pooled_result(population, index)
                assert report["joint_logit"] == pytest.approx(expected.joint_logit, abs=1e-6)
                assert round(report["exposures"]["outstanding_debt"] * 100) == (
                    expected.exposures["outstanding_debt_cents"])
                assert report["coverage"] == {"asked": 3, "answered": 3, "skipped": []}
                # One root, called by the requester; the others called by the root.
                (root,) = [c for c in calls.calls if c[1] == 0]
                assert root[0] != "bank" and root[2] == "bank"
                leaves = sorted(c for c in calls.calls if c[1] != 0)
                assert [c[2] for c in leaves] == [root[0]] * 2
                assert {root[0], *(c[0] for c in leaves)} == {"finco", "shop", "telco"}
    finally:
        calls.close()


def test_a_leaf_that_is_down_is_skipped_and_the_rest_sum_exactly(
    tree_alliance: InProcessAlliance, population: Population, subject_key: SubjectKey
) -> None:
    index = next(i for i in indices_with_records(population, 3)
                 if population.institutions[3].has_record[i])  # telco knows them
    plan = tree_plan(tree_alliance, "finco", ("shop", "telco"))
    root = plan.route[0]
    down = Hop("telco", "127.0.0.1:9")  # telco's node does not answer there
    plan = dataclasses.replace(plan, route=(Hop("finco", root.endpoint,
                                                (root.children[0], down)),))
    result = forward(tree_alliance, plan, population, subject_key, index)
    assert [(o.member_id, o.answered, o.error_code) for o in result.outcomes] == [
        ("finco", True, ""), ("shop", True, ""), ("telco", False, "NODE_UNAVAILABLE")]
    total = decrypt_total(result.accumulator, requester_keypair(tree_alliance, "bank"))
    expected = sum(member_share(population, m, index)[0] for m in ("finco", "shop"))
    assert total.model_partial == pytest.approx(expected, abs=1e-6)
    assert total.outstanding_debt_cents == sum(
        member_share(population, m, index)[1] for m in ("finco", "shop"))


def forward(alliance: InProcessAlliance, plan: Any, population: Population,
            subject_key: SubjectKey, index: int) -> Any:
    signed = sign_plan(plan, coordinator_signer(alliance))
    pseudonym = pseudonymize(subject_key, "cn_resident_id", population.identifiers[index]).value
    forwarder: RouteForwarder = alliance.nodes["bank"].app.state.context.evaluations._forwarder
    return forwarder.forward(plan, signed, pseudonym, signed_consent(alliance, plan, pseudonym),
                             0, None, plan.expires_unix_ms)


def test_a_root_that_is_down_skips_the_whole_tree_and_the_requester_gets_a_typed_error(
    tree_alliance: InProcessAlliance, population: Population, subject_key: SubjectKey
) -> None:
    plan = tree_plan(tree_alliance, "finco", ("shop", "telco"))
    root = Hop("finco", "127.0.0.1:9", plan.route[0].children)  # nobody listens there
    plan = dataclasses.replace(plan, route=(root,))
    result = forward(tree_alliance, plan, population, subject_key, 3)
    assert result.accumulator is None  # nothing reached the requester
    assert [(o.member_id, o.answered, o.error_code) for o in result.outcomes] == [
        ("finco", False, "NODE_UNAVAILABLE"), ("shop", False, "NODE_UNAVAILABLE"),
        ("telco", False, "NODE_UNAVAILABLE")]


def test_the_root_withholds_a_sum_with_too_few_shares(
    tree_alliance: InProcessAlliance, population: Population, subject_key: SubjectKey
) -> None:
    plan = tree_plan(tree_alliance, "finco", ("shop",), fallback=FallbackPolicy(
        skip_unreachable=True, hop_timeout_ms=1000, min_answered=3))
    pseudonym = pseudonymize(subject_key, "cn_resident_id", population.identifiers[3]).value
    with channel_to(tree_alliance, "finco") as channel, pytest.raises(grpc.RpcError) as info:
        node_pb2_grpc.NodeStub(channel).Contribute(
            make_request(tree_alliance, plan, pseudonym), timeout=10)
    assert error_code(info.value) == "INSUFFICIENT_COVERAGE"


@pytest.mark.parametrize("case", ["requester calls a leaf", "a sibling calls a leaf",
                                  "the root gets an accumulator", "the requester as a parent",
                                  "not the addressed hop"])
def test_calls_that_break_the_tree_are_refused(
    tree_alliance: InProcessAlliance, population: Population, subject_key: SubjectKey,
    case: str,
) -> None:
    pseudonym = pseudonymize(subject_key, "cn_resident_id", population.identifiers[4]).value
    plan = tree_plan(tree_alliance, "finco", ("shop", "telco"))
    target, caller, hop_index, expected = {
        # A leaf's reply is one member's share: it must never go to the key holder.
        "requester calls a leaf": ("shop", "bank", 1, "PERMISSION_DENIED"),
        "a sibling calls a leaf": ("telco", "shop", 2, "PERMISSION_DENIED"),
        "the root gets an accumulator": ("finco", "bank", 0, "PERMISSION_DENIED"),
        "the requester as a parent": ("shop", "bank", 2, "PLAN_INVALID"),
        "not the addressed hop": ("shop", "finco", 2, "NOT_ON_ROUTE"),
    }[case]
    if case == "the requester as a parent":  # a forged shape: bank between the root and shop
        hops = [Hop(m, f"127.0.0.1:{tree_alliance.nodes[m].grpc_port}")
                for m in ("finco", "bank", "shop")]
        plan = dataclasses.replace(make_plan(tree_alliance, ("finco", "bank", "shop")),
                                   mode=RouteMode.TREE, route=tree_route(hops, fanout=1))
    request = make_request(tree_alliance, plan, pseudonym, hop_index=hop_index)
    if case == "the root gets an accumulator":
        key = requester_keypair(tree_alliance, "bank").public
        request.accumulator.CopyFrom(accumulator_to_pb(
            encrypt_contribution(ContributionVector(model_partial=1.0), key), key))
    with channel_to(tree_alliance, target, as_member=caller) as channel, \
            pytest.raises(grpc.RpcError) as info:
        node_pb2_grpc.NodeStub(channel).Contribute(request, timeout=10)
    assert error_code(info.value) == expected
