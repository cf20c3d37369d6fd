"""The trust plane against real servers: certificates, suspension, revocation, renewal, consent
policy, replay — each refusal a typed error, each leaving nothing behind."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator.registry import Membership
from fedcredit.demo.population import Population, pooled_result
from fedcredit.tls import IdentityHolder, TlsIdentity, target_name_option
from fedcredit.transport import create_channel
from mpc.pki import (
    CertificateAuthority,
    CertRole,
    certificate_to_pem,
    create_ca,
    create_csr,
    issue_certificate,
)
from mpc.pseudonym import SubjectKey, pseudonymize
from mpc.signing import Signer
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc, node_pb2_grpc
from tests.support.alliance import (
    API_KEY,
    InProcessAlliance,
    body,
    consent,
    indices_with_records,
    start_alliance,
)
from tests.support.grpc_calls import (
    channel_to,
    coordinator_channel,
    error_code,
    make_plan,
    make_request,
    member_identity,
    now_ms,
)

pytestmark = pytest.mark.integration
ROUTE = ("finco", "shop", "telco")


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory, population: Population,
          subject_key: SubjectKey) -> Iterator[InProcessAlliance]:
    running = start_alliance(tmp_path_factory.mktemp("trust"), population, subject_key)
    yield running
    running.stop()


@pytest.fixture
def pseudonym(population: Population, subject_key: SubjectKey) -> bytes:
    index = indices_with_records(population, 3)[0]
    return pseudonymize(subject_key, "cn_resident_id", population.identifiers[index]).value


def evaluate(alliance: InProcessAlliance, requester: str, doc: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{alliance.url(requester)}/v1/evaluations", json=doc,
                      headers={"X-API-Key": API_KEY}, timeout=30)


def refused(call: object, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)  # type: ignore[operator]
    return info.value


def health(channel: grpc.Channel) -> None:
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


def forged_credentials(ca: CertificateAuthority, member: str, start_ms: int, days: int,
                       trusted_ca_pem: bytes) -> grpc.ChannelCredentials:
    """TLS client credentials for ``member`` certified by ``ca``, trusting the alliance CA."""
    signer = Signer.generate()
    cert = issue_certificate(ca, member, CertRole.MEMBER, signer.private_key.public_key(),
                             start_ms, days)
    return grpc.ssl_channel_credentials(trusted_ca_pem, signer.to_pem(), certificate_to_pem(cert))


def channel_with(alliance: InProcessAlliance, credentials: grpc.ChannelCredentials,
                 member: str | None) -> grpc.Channel:
    """To ``member``'s Node service, or to the coordinator when ``member`` is None."""
    if member is None:
        return create_channel(f"127.0.0.1:{alliance.coordinator.port}", credentials,
                              target_name_option("coordinator", CertRole.COORDINATOR))
    return create_channel(f"127.0.0.1:{alliance.nodes[member].grpc_port}", credentials,
                          target_name_option(member, CertRole.MEMBER))


def test_key_files_are_private(trust: InProcessAlliance) -> None:
    files = [trust.node_settings("bank").identity_files.key,
             trust.coordinator_settings.data_dir / "ca" / "ca.key",
             trust.coordinator_settings.data_dir / "identity" / "identity.key"]
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_a_certificate_from_another_ca_never_reaches_a_handler(trust: InProcessAlliance) -> None:
    ca_pem = trust.coordinator_settings.ca_certificate_path.read_bytes()
    impostor = forged_credentials(create_ca("rogue", now_ms()), "bank", now_ms(), 1, ca_pem)
    for target in ("finco", None):
        with channel_with(trust, impostor, target) as channel:
            error = refused(health_pb2_grpc.HealthStub(channel).Check,
                            health_pb2.HealthCheckRequest())
        assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_an_expired_certificate_is_refused(trust: InProcessAlliance) -> None:
    from coordinator.authority import load_authority

    ca = load_authority(trust.coordinator_settings.data_dir, now_ms()).ca
    expired = forged_credentials(ca, "bank", now_ms() - 3 * 86_400_000, 1, ca.certificate_pem())
    with channel_with(trust, expired, "finco") as channel:
        error = refused(health_pb2_grpc.HealthStub(channel).Check,
                        health_pb2.HealthCheckRequest())
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    # A genuine certificate for the same member from the same CA passes the handshake.
    with channel_to(trust, "finco") as channel:
        health(channel)


def test_a_node_only_talks_to_the_member_the_plan_names(trust: InProcessAlliance) -> None:
    """finco's endpoint presented as shop's: the TLS name check refuses, a typed error."""
    bank = member_identity(trust, "bank")
    target = f"127.0.0.1:{trust.nodes['finco'].grpc_port}"
    with create_channel(target, bank.channel_credentials(),
                        target_name_option("shop", CertRole.MEMBER)) as channel:
        error = refused(health_pb2_grpc.HealthStub(channel).Check,
                        health_pb2.HealthCheckRequest())
    from fedcredit.error_catalog import error_from_rpc
    from fedcredit.errors import ErrorCode

    assert error_from_rpc(error, default=ErrorCode.NODE_UNAVAILABLE).code is (
        ErrorCode.CERTIFICATE_INVALID)


def test_a_revoked_certificate_is_refused_on_the_next_call(
    trust: InProcessAlliance, pseudonym: bytes
) -> None:
    # bank gets a second certificate (as in a renewal), which is then revoked.
    signer = Signer.generate()
    pem = trust.coordinator.core.admission.renew("bank", create_csr("bank", signer))
    ca_pem = trust.coordinator_settings.ca_certificate_path.read_bytes()
    second = IdentityHolder(TlsIdentity.from_pems(signer.to_pem(), pem, ca_pem, now_ms()))
    with channel_to(trust, "finco", identity=second) as channel:
        node_pb2_grpc.NodeStub(channel).Contribute(
            make_request(trust, make_plan(trust, ROUTE), pseudonym), timeout=10)
    # Like the admin API's revoke: returns once every online member enforces it.
    trust.wait_confirmed(trust.coordinator.core.admission.revoke_certificate(
        second.current.certified.serial, "test-admin", "key leaked"))
    with channel_to(trust, "finco", identity=second) as channel:
        error = refused(node_pb2_grpc.NodeStub(channel).Contribute,
                        make_request(trust, make_plan(trust, ROUTE), pseudonym))
    assert (error.code(), error_code(error)) == (grpc.StatusCode.UNAUTHENTICATED,
                                                 "CERTIFICATE_REVOKED")
    with coordinator_channel(trust, second) as channel:
        error = refused(coordinator_pb2_grpc.CoordinatorStub(channel).GetDirectory,
                        coordinator_pb2.DirectoryRequest())
    assert error_code(error) == "CERTIFICATE_REVOKED"
    # The member's other certificate still works.
    with channel_to(trust, "finco") as channel:
        node_pb2_grpc.NodeStub(channel).Contribute(
            make_request(trust, make_plan(trust, ROUTE), pseudonym), timeout=10)


def test_a_suspended_member_can_neither_call_nor_be_called(
    trust: InProcessAlliance, population: Population, pseudonym: bytes
) -> None:
    index = indices_with_records(population, 3)[1]
    old_plan = make_plan(trust, ROUTE)  # planned while shop was still active
    shop_plan = make_plan(trust, ("finco", "telco"), requester_id="shop")
    admission = trust.coordinator.core.admission
    version = admission.suspend("shop", "test-admin", "investigation")
    try:
        trust.wait_confirmed(version)
        # Calling: shop's own evaluation, and shop calling a peer directly with a fresh plan.
        response = evaluate(trust, "shop", body(population, index))
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "MEMBER_SUSPENDED"
        with channel_to(trust, "finco", as_member="shop") as channel:
            error = refused(node_pb2_grpc.NodeStub(channel).Contribute,
                            make_request(trust, shop_plan, pseudonym))
        assert (error.code(), error_code(error)) == (grpc.StatusCode.PERMISSION_DENIED,
                                                     "MEMBER_SUSPENDED")
        # Being called: new plans leave it out; a plan made before the suspension skips it.
        report = evaluate(trust, "bank", body(population, index)).json()
        assert report["coverage"]["asked"] == 2
        assert {"shop"}.isdisjoint(s["member_id"] for s in report["coverage"]["skipped"])
        forwarder = trust.nodes["bank"].app.state.context.evaluations._forwarder
        from fedcredit.plans import sign_plan
        from tests.support.grpc_calls import coordinator_signer, signed_consent

        result = forwarder.forward(
            old_plan, sign_plan(old_plan, coordinator_signer(trust)), pseudonym,
            signed_consent(trust, old_plan, pseudonym), 0, None, old_plan.expires_unix_ms)
        assert ("shop", False, "MEMBER_SUSPENDED") in {
            (o.member_id, o.answered, o.error_code) for o in result.outcomes}
    finally:
        trust.wait_confirmed(admission.reinstate("shop", "test-admin", "cleared"))
    trust.wait_active({"shop"})
    response = evaluate(trust, "shop", body(population, index))
    assert response.status_code == 201, response.text
    expected = pooled_result(population, index)
    assert response.json()["joint_logit"] == pytest.approx(expected.joint_logit, abs=1e-6)


def test_a_replayed_plan_is_refused(trust: InProcessAlliance, pseudonym: bytes) -> None:
    request = make_request(trust, make_plan(trust, ROUTE), pseudonym)
    with channel_to(trust, "finco") as channel:
        stub = node_pb2_grpc.NodeStub(channel)
        stub.Contribute(request, timeout=10)
        error = refused(stub.Contribute, request)
    assert (error.code(), error_code(error)) == (grpc.StatusCode.ALREADY_EXISTS, "PLAN_REPLAYED")


def test_only_the_requester_or_an_earlier_hop_may_call(
    trust: InProcessAlliance, pseudonym: bytes
) -> None:
    request = make_request(trust, make_plan(trust, ROUTE), pseudonym, hop_index=1)
    with channel_to(trust, "shop", as_member="telco") as channel:  # telco comes after shop
        error = refused(node_pb2_grpc.NodeStub(channel).Contribute, request)
    assert error_code(error) == "PERMISSION_DENIED"


def test_account_review_needs_an_existing_customer(
    trust: InProcessAlliance, population: Population
) -> None:
    bank = population.institutions[0]
    customer = next(i for i in indices_with_records(population, 3) if bank.has_record[i])
    stranger = next(i for i in range(len(population.identifiers)) if not bank.has_record[i])
    review = consent(purpose="account_review")
    for index, relationship, status, code in (
        (customer, "applicant", 403, "CONSENT_PURPOSE_NOT_ALLOWED"),
        (stranger, "existing_customer", 403, "CONSENT_PURPOSE_NOT_ALLOWED"),
        (customer, "existing_customer", 201, None),
    ):
        before = trust.stored_reports("bank")
        doc = body(population, index, consent={**review, "relationship": relationship})
        response = evaluate(trust, "bank", doc)
        assert response.status_code == status, response.text
        if code is not None:
            assert response.json()["error"]["code"] == code
            assert trust.stored_reports("bank") == before


def test_certificate_renewal_without_downtime(
    trust: InProcessAlliance, population: Population
) -> None:
    index = indices_with_records(population, 2)[3]
    membership = trust.nodes["telco"].membership
    old = trust.nodes["telco"].membership._identity.current.certified
    membership._renew_before_ms = 10**12  # everything is "about to expire"
    try:
        assert membership.renew_if_due()
    finally:
        membership._renew_before_ms = 30 * 86_400_000
    new = membership._identity.current.certified
    assert new.serial != old.serial and new.fingerprint != old.fingerprint
    on_disk = TlsIdentity.load(trust.node_settings("telco").identity_files, now_ms())
    assert on_disk.certified.serial == new.serial
    # Both directions keep working at once: telco requests, and telco serves on its route.
    for requester in ("telco", "bank"):
        response = evaluate(trust, requester, body(population, index))
        assert response.status_code == 201, response.text
        assert response.json()["coverage"]["skipped"] == []
    serials = {c.serial for c in trust.coordinator.registry.certificates("telco")}
    assert {old.serial, new.serial} <= serials


def test_membership_changes_are_durable_and_in_the_ledger(trust: InProcessAlliance) -> None:
    ledger = trust.coordinator.core.ledger
    kinds = [e.kind.value for e in ledger.entries(0, ledger.size())]
    assert kinds.count("admission") >= 4
    assert "suspension" in kinds and "reinstatement" in kinds and "revocation" in kinds
    assert trust.coordinator.registry.get("shop", now_ms()).membership is Membership.ACTIVE


def test_quorum_admission_survives_a_coordinator_restart(
    tmp_path: Path, population: Population, subject_key: SubjectKey
) -> None:
    """k-of-n: the admin approves, the coordinator restarts, a member's vote completes it."""
    from coordinator.policy import PolicyStore
    from coordinator.server import start_coordinator
    from node.join import Applicant, JoinClient, JoinState

    alliance = start_alliance(tmp_path, population, subject_key)
    try:
        core = alliance.coordinator.core
        _, policy = core.policies.current()
        with core.db.transaction() as conn:  # the founders are in; from now on, 1 vote too
            PolicyStore.replace(conn, policy.model_copy(update={"admission_quorum": 1}),
                                "test-admin", now_ms())
        settings = alliance.node_settings("newbank", data_dir=tmp_path / "newbank")
        ca_pem = alliance.coordinator_settings.ca_certificate_path.read_bytes()
        client = JoinClient(settings.coordinator_enroll_address, ca_pem)
        applicant = Applicant("newbank", settings.identity_files, client, ca_pem, now_ms)
        pending = applicant.step("New Bank", "ops@newbank")
        assert pending.approvals_required == 1
        alliance.coordinator.core.admission.decide(pending.request_id, True, "test-admin",
                                                   fingerprint=pending.fingerprint)
        assert applicant.step("New Bank", "").state is JoinState.PENDING
        client.close()
        port, enroll = alliance.coordinator.port, alliance.coordinator.enrollment_port
        alliance.coordinator.stop(0)
        alliance.coordinator = start_coordinator(alliance.coordinator_settings.model_copy(
            update={"bind": f"127.0.0.1:{port}", "enroll_bind": f"127.0.0.1:{enroll}"}))
        with coordinator_channel(alliance, member_identity(alliance, "finco")) as channel:
            stub = coordinator_pb2_grpc.CoordinatorStub(channel)
            pending_ids = [t.request_id for t in stub.ListJoinRequests(
                coordinator_pb2.ListJoinRequestsRequest(), timeout=5).requests]
            assert pending_ids == [pending.request_id]
            ticket = stub.Vote(coordinator_pb2.VoteRequest(request_id=pending.request_id,
                                                           approve=True), timeout=5)
            assert ticket.state == coordinator_pb2.JOIN_STATE_APPROVED
            error = refused(stub.Vote, coordinator_pb2.VoteRequest(
                request_id=pending.request_id, approve=True))
            assert error_code(error) == "RESOURCE_CONFLICT"
        client = JoinClient(settings.coordinator_enroll_address, ca_pem)
        applicant = Applicant("newbank", settings.identity_files, client, ca_pem, now_ms)
        assert applicant.step("New Bank", "").state is JoinState.APPROVED
        client.close()
        assert settings.identity_files.exists()
    finally:
        alliance.stop()
