"""Members that are down or hang mid-route: skipped per the plan's fallbacks, or a clear error."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from fedcredit.demo.population import Population, pooled_result
from fedcredit.plans import sign_plan
from fedcredit.protocol import Hop
from fedcredit.serde import public_key_to_pb
from fedcredit.tls import IdentityHolder, TlsIdentity
from fedcredit.transport import create_server, set_serving
from mpc.paillier import PaillierKeyPair
from mpc.pseudonym import SubjectKey, pseudonymize
from mpc.secure_sum import decrypt_total
from node.route import RouteForwarder
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc, node_pb2, node_pb2_grpc
from tests.support.alliance import (
    InProcessAlliance,
    body,
    indices_with_records,
    member_share,
    start_alliance,
)
from tests.support.grpc_calls import (
    coordinator_channel,
    coordinator_signer,
    make_plan,
    now_ms,
    requester_keypair,
    signed_consent,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_alliance(
    tmp_path: Path, population: Population, subject_key: SubjectKey
) -> Iterator[InProcessAlliance]:
    # Short hop budgets keep the hanging-member tests quick; each must still cover a healthy
    # hop's work (14 Paillier encryptions, ~0.2 s, more while the other test worker runs
    # Spark), or healthy members time out too.
    running = start_alliance(tmp_path, population, subject_key, hop_timeout_ms=1000)
    yield running
    running.stop()


def evaluate(alliance: InProcessAlliance, population: Population, index: int) -> httpx.Response:
    from tests.support.alliance import API_KEY

    return httpx.post(f"{alliance.url('bank')}/v1/evaluations", json=body(population, index),
                      headers={"X-API-Key": API_KEY}, timeout=30)


def test_a_member_down_mid_route_is_skipped_and_reported(
    fresh_alliance: InProcessAlliance, population: Population
) -> None:
    index = next(i for i in indices_with_records(population, 3)
                 if population.institutions[3].has_record[i])  # telco knows them
    # telco's Node service dies; its process still heartbeats, so the plan includes it.
    fresh_alliance.nodes["telco"].grpc_server.stop(0).wait()
    response = evaluate(fresh_alliance, population, index)
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["coverage"] == {
        "asked": 3, "answered": 2,
        "skipped": [{"member_id": "telco", "error_code": "NODE_UNAVAILABLE"}],
    }
    expected = pooled_result(population, index)
    partial, debt, has = member_share(population, "telco", index)
    assert has == 1
    assert report["joint_logit"] == pytest.approx(expected.joint_logit - partial, abs=1e-6)
    assert round(report["exposures"]["outstanding_debt"] * 100) == (
        expected.exposures["outstanding_debt_cents"] - debt)
    assert report["institutions_with_records"] == expected.institutions_with_records - 1


def test_all_other_members_down_is_a_clear_error_and_persists_nothing(
    fresh_alliance: InProcessAlliance, population: Population
) -> None:
    for member in ("finco", "shop", "telco"):
        fresh_alliance.nodes[member].grpc_server.stop(0).wait()
    response = evaluate(fresh_alliance, population, 5)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_COVERAGE"
    assert "0 of 3 members answered" in error["detail"]
    assert fresh_alliance.stored_reports("bank") == 0


def test_members_that_stop_heartbeating_leave_the_plan(
    fresh_alliance: InProcessAlliance, population: Population
) -> None:
    for member in ("shop", "telco"):
        fresh_alliance.nodes[member].stop()
    deadline = time.monotonic() + 10
    while True:
        response = evaluate(fresh_alliance, population, 7)
        if response.status_code == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # One other member left, and policy requires two: refused before anything is sent.
    assert response.json()["error"]["code"] == "INSUFFICIENT_COVERAGE"


class Sloth(node_pb2_grpc.NodeServicer):
    """A real member whose Node service hangs far past any hop budget."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def Contribute(self, request: node_pb2.ContributeRequest,  # noqa: N802
                   context: grpc.ServicerContext) -> node_pb2.ContributeReply:
        self.release.wait(30)
        return node_pb2.ContributeReply()

    def JoinTraining(self, request: node_pb2.JoinTrainingRequest,  # noqa: N802
                     context: grpc.ServicerContext) -> node_pb2.JoinTrainingReply:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not a training party")

    def OpenPortfolio(self, request: node_pb2.OpenPortfolioRequest,  # noqa: N802
                      context: grpc.ServicerContext) -> node_pb2.OpenPortfolioReply:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "no portfolio jobs here")

    def ContributePortfolio(self, request: node_pb2.PortfolioChunkRequest,  # noqa: N802
                            context: grpc.ServicerContext) -> node_pb2.PortfolioChunkReply:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "no portfolio jobs here")


@pytest.fixture
def sloth(fresh_alliance: InProcessAlliance, other_keypair: PaillierKeyPair) -> Iterator[int]:
    """A hanging member, registered with the coordinator; yields its gRPC port."""
    servicer = Sloth()
    settings = fresh_alliance.admit("sloth")  # a real member: admitted, with a certificate
    identity = IdentityHolder(TlsIdentity.load(settings.identity_files, now_ms()))
    server, port, health = create_server("127.0.0.1:0", identity.server_credentials())
    node_pb2_grpc.add_NodeServicer_to_server(servicer, server)
    server.start()
    set_serving(health, ["fedcredit.v1.Node"])
    with coordinator_channel(fresh_alliance, identity) as channel:
        coordinator_pb2_grpc.CoordinatorStub(channel).Announce(coordinator_pb2.AnnounceRequest(
            endpoint=f"127.0.0.1:{port}",
            paillier_public_key=public_key_to_pb(other_keypair.public)), timeout=5)
    yield port
    servicer.release.set()
    server.stop(0)


def test_a_hanging_member_times_out_and_the_rest_still_answer(
    fresh_alliance: InProcessAlliance, population: Population, sloth: int
) -> None:
    index = indices_with_records(population, 3)[1]
    started = time.monotonic()
    response = evaluate(fresh_alliance, population, index)
    elapsed = time.monotonic() - started
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["coverage"]["answered"] == 3
    assert report["coverage"]["skipped"] == [
        {"member_id": "sloth", "error_code": "DEADLINE_EXCEEDED"}]
    assert report["joint_logit"] == pytest.approx(
        pooled_result(population, index).joint_logit, abs=1e-6)
    assert elapsed < 10  # bounded by hop budgets, not by the sloth


def test_the_requester_waits_out_a_hung_first_hop_within_the_plan_lifetime(
    fresh_alliance: InProcessAlliance, population: Population, subject_key: SubjectKey,
    sloth: int,
) -> None:
    """The worst place to hang is the first hop: it eats the requester's whole first wait.
    A plan lives exactly as long as the planner allows (route_lifetime_ms), and that must be
    enough for the rest of the route afterwards."""
    index = indices_with_records(population, 3)[2]
    base = make_plan(fresh_alliance, ("finco", "shop", "telco"))
    fallback = base.fallback
    route = (Hop("sloth", f"127.0.0.1:{sloth}"), *base.route)
    now = now_ms()
    plan = dataclasses.replace(base, route=route, issued_unix_ms=now,
                               expires_unix_ms=now + fallback.route_lifetime_ms(len(route)))
    signed = sign_plan(plan, coordinator_signer(fresh_alliance))
    pseudonym = pseudonymize(subject_key, "cn_resident_id", population.identifiers[index]).value
    bank = fresh_alliance.nodes["bank"].app.state.context.evaluations
    forwarder: RouteForwarder = bank._forwarder
    result = forwarder.forward(plan, signed, pseudonym,
                               signed_consent(fresh_alliance, plan, pseudonym), 0, None,
                               plan.expires_unix_ms)
    assert [(o.member_id, o.answered) for o in result.outcomes] == [
        ("sloth", False), ("finco", True), ("shop", True), ("telco", True)]
    assert result.accumulator is not None
    total = decrypt_total(result.accumulator, requester_keypair(fresh_alliance, "bank"))
    bank_partial, _, _ = member_share(population, "bank", index)
    expected = pooled_result(population, index).joint_logit - bank_partial
    assert total.model_partial + population.models["bank"].intercept == pytest.approx(
        expected, abs=1e-6)


def test_coordinator_outage_fails_fast_and_the_alliance_recovers_by_itself(
    fresh_alliance: InProcessAlliance, population: Population
) -> None:

    from coordinator.server import start_coordinator

    port = fresh_alliance.coordinator.port
    fresh_alliance.coordinator.stop(0)
    started = time.monotonic()
    response = evaluate(fresh_alliance, population, 3)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "COORDINATOR_UNAVAILABLE"
    assert time.monotonic() - started < 5
    # Back on the same address (its database intact): members find it again on their own.
    settings = fresh_alliance.coordinator_settings.model_copy(
        update={"bind": f"127.0.0.1:{port}"})
    restarted = now_ms()
    fresh_alliance.coordinator = start_coordinator(settings)
    fresh_alliance.wait_active({"bank", "finco", "shop", "telco"}, heard_since_ms=restarted)
    response = evaluate(fresh_alliance, population, 3)
    assert response.status_code == 201, response.text
    assert response.json()["coverage"]["answered"] == 3
