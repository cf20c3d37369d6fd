"""The Node and Coordinator gRPC services, called directly: contract and bad input."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedcredit.audit import EntryDraft, EntryKind, verify_receipt
from fedcredit.consents import consent_for_query, consent_ledger_body, sign_consent
from fedcredit.demo.population import Population, pooled_result
from fedcredit.errors import KeyTooShortError
from fedcredit.plans import sign_plan
from fedcredit.protocol import ConsentTerms, Purpose, Relationship
from fedcredit.serde import accumulator_to_pb, plan_to_bytes, signed_plan_to_pb
from fedcredit.tls import target_name_option
from mpc.contribution import ENCODING_VERSION, ContributionVector
from mpc.paillier import PaillierKeyPair
from mpc.pki import CertRole
from mpc.pseudonym import SubjectKey, ledger_subject_tag, pseudonymize
from mpc.secure_sum import decrypt_total, encrypt_contribution
from mpc.signing import PLAN_CONTEXT, Signer
from node.serde import contribute_reply_from_pb
from proto.v1 import (
    coordinator_pb2,
    coordinator_pb2_grpc,
    crypto_pb2,
    node_pb2,
    node_pb2_grpc,
    plan_pb2,
)
from tests.support.alliance import InProcessAlliance, indices_with_records
from tests.support.grpc_calls import (
    channel_to,
    coordinator_channel,
    coordinator_signer,
    error_code,
    make_plan,
    make_request,
    member_identity,
    now_ms,
    requester_keypair,
    signed_consent,
)

pytestmark = pytest.mark.integration
ROUTE = ("finco", "shop", "telco")


@pytest.fixture
def finco(alliance: InProcessAlliance) -> Iterator[node_pb2_grpc.NodeStub]:
    """finco's Node service, called as the bank (the requester) over mutual TLS."""
    channel = channel_to(alliance, "finco")
    yield node_pb2_grpc.NodeStub(channel)
    channel.close()


@pytest.fixture
def coordinator(alliance: InProcessAlliance) -> Iterator[coordinator_pb2_grpc.CoordinatorStub]:
    """The Coordinator service, called as the bank."""
    channel = coordinator_channel(alliance, member_identity(alliance, "bank"))
    yield coordinator_pb2_grpc.CoordinatorStub(channel)
    channel.close()


@pytest.fixture
def pseudonym(population: Population, subject_key: SubjectKey) -> bytes:
    index = indices_with_records(population, 3)[0]
    return pseudonymize(subject_key, "cn_resident_id", population.identifiers[index]).value


def expect(code: grpc.StatusCode, fedcredit_code: str, call: object, *args: object) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=10)  # type: ignore[operator]
    assert info.value.code() == code, info.value.details()
    assert error_code(info.value) == fedcredit_code


def test_a_valid_call_returns_the_encrypted_sum_of_the_rest_of_the_route(
    alliance: InProcessAlliance, population: Population, subject_key: SubjectKey,
    finco: node_pb2_grpc.NodeStub,
) -> None:
    index = indices_with_records(population, 3)[0]
    pseudo = pseudonymize(subject_key, "cn_resident_id", population.identifiers[index]).value
    plan = make_plan(alliance, ROUTE)
    reply = finco.Contribute(make_request(alliance, plan, pseudo), timeout=10)
    acc, outcomes = contribute_reply_from_pb(reply, plan.requester_key)
    assert [(o.member_id, o.answered) for o in outcomes] == [(m, True) for m in ROUTE]
    assert acc is not None
    total = decrypt_total(acc, requester_keypair(alliance, "bank"))
    # Everyone but the requester: pooled result minus the bank's own share.
    expected = pooled_result(population, index)
    bank = population.institutions[0]
    bank_debt = int(bank.exposures["outstanding_debt_cents"][index])
    bank_partial = population.models["bank"].partial_logit(
        {k: float(v[index]) for k, v in bank.features.items()}) if bank.has_record[index] else 0.0
    intercept = population.models["bank"].intercept
    assert total.model_partial == pytest.approx(
        expected.joint_logit - intercept - bank_partial, abs=1e-6)
    assert total.outstanding_debt_cents == expected.exposures["outstanding_debt_cents"] - bank_debt
    assert total.has_record == expected.institutions_with_records - int(bank.has_record[index])


def test_tampered_plan_signature(alliance: InProcessAlliance, finco: node_pb2_grpc.NodeStub,
                                 pseudonym: bytes) -> None:
    request = make_request(alliance, make_plan(alliance, ROUTE), pseudonym)
    request.plan.plan = request.plan.plan.replace(b"finco", b"fincp")
    expect(grpc.StatusCode.UNAUTHENTICATED, "PLAN_INVALID", finco.Contribute, request)
    forged = make_request(alliance, make_plan(alliance, ROUTE), pseudonym, signer=Signer.generate())
    expect(grpc.StatusCode.UNAUTHENTICATED, "PLAN_INVALID", finco.Contribute, forged)


def test_expired_plan(alliance: InProcessAlliance, finco: node_pb2_grpc.NodeStub,
                      pseudonym: bytes) -> None:
    plan = make_plan(alliance, ROUTE, issued_unix_ms=now_ms() - 20_000,
                     expires_unix_ms=now_ms() - 1)
    expect(grpc.StatusCode.FAILED_PRECONDITION, "PLAN_EXPIRED", finco.Contribute,
           make_request(alliance, plan, pseudonym))


def test_wrong_hop(alliance: InProcessAlliance, finco: node_pb2_grpc.NodeStub,
                   pseudonym: bytes) -> None:
    request = make_request(alliance, make_plan(alliance, ROUTE), pseudonym, hop_index=1)
    expect(grpc.StatusCode.PERMISSION_DENIED, "NOT_ON_ROUTE", finco.Contribute, request)


def test_consent_checks(alliance: InProcessAlliance, finco: node_pb2_grpc.NodeStub,
                        pseudonym: bytes) -> None:
    def request(**consent: Any) -> node_pb2.ContributeRequest:
        plan = make_plan(alliance, ROUTE)
        return make_request(alliance, plan, pseudonym,
                            consent=signed_consent(alliance, plan, pseudonym, **consent))

    expired = ConsentTerms(Purpose.ORIGINATION, now_ms() - 1, "c")
    expect(grpc.StatusCode.FAILED_PRECONDITION, "CONSENT_EXPIRED", finco.Contribute,
           request(terms=expired))
    other = ConsentTerms(Purpose.COLLECTIONS, now_ms() + 60_000, "c")
    expect(grpc.StatusCode.PERMISSION_DENIED, "CONSENT_PURPOSE_NOT_ALLOWED", finco.Contribute,
           request(terms=other))
    # Forged: signed by a key that is not the requester's certified one.
    expect(grpc.StatusCode.PERMISSION_DENIED, "CONSENT_INVALID", finco.Contribute,
           request(signer=Signer.generate()))
    # Genuine signature, but for another subject, another inquiry, or another requester.
    for change in ({"subject_pseudonym": b"\x07" * 32}, {"query_id": "q-other"},
                   {"requester_id": "shop"}):
        expect(grpc.StatusCode.PERMISSION_DENIED, "CONSENT_INVALID", finco.Contribute,
               request(**change))
    # A signed consent altered in transit.
    plan = make_plan(alliance, ROUTE)
    altered = make_request(alliance, plan, pseudonym)
    altered.consent.consent = altered.consent.consent.replace(b"origination", b"collections")
    expect(grpc.StatusCode.PERMISSION_DENIED, "CONSENT_INVALID", finco.Contribute, altered)
    missing = make_request(alliance, make_plan(alliance, ROUTE), pseudonym)
    missing.ClearField("consent")
    expect(grpc.StatusCode.FAILED_PRECONDITION, "CONSENT_MISSING", finco.Contribute, missing)


def test_a_plan_with_a_short_requester_key_is_refused(
    alliance: InProcessAlliance, finco: node_pb2_grpc.NodeStub, pseudonym: bytes
) -> None:
    body = plan_pb2.Plan.FromString(plan_to_bytes(make_plan(alliance, ROUTE)))
    body.requester_key.n = ((1 << 1023) + 1).to_bytes(128, "big")
    raw = body.SerializeToString()
    signer = coordinator_signer(alliance)
    request = make_request(alliance, make_plan(alliance, ROUTE), pseudonym)
    request.plan.CopyFrom(plan_pb2.SignedPlan(plan=raw, signature=signer.sign(PLAN_CONTEXT, raw),
                                              key_id=signer.verifier.key_id))
    expect(grpc.StatusCode.INVALID_ARGUMENT, "KEY_TOO_SHORT", finco.Contribute, request)


def test_accumulator_under_another_key(
    alliance: InProcessAlliance, pseudonym: bytes, other_keypair: PaillierKeyPair,
) -> None:
    """shop (hop 1), called by finco (hop 0) with an accumulator it cannot use."""
    plan = make_plan(alliance, ROUTE)
    request = make_request(alliance, plan, pseudonym, hop_index=1)
    foreign = encrypt_contribution(ContributionVector.zero(), other_keypair.public)
    request.accumulator.CopyFrom(accumulator_to_pb(foreign, other_keypair.public))
    with channel_to(alliance, "shop", as_member="finco") as channel:
        shop = node_pb2_grpc.NodeStub(channel)
        expect(grpc.StatusCode.INVALID_ARGUMENT, "KEY_MISMATCH", shop.Contribute, request)
        request.accumulator.CopyFrom(crypto_pb2.EncryptedVector(
            key_fingerprint=plan.requester_key.fingerprint(), encoding_version=ENCODING_VERSION,
            ciphertexts=[b"\x01"] * 8))
        expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", shop.Contribute, request)


def test_a_requester_cannot_hand_a_hop_its_own_accumulator(
    alliance: InProcessAlliance, pseudonym: bytes
) -> None:
    """The attack a requester could mount alone: an encryption of zero, sent to the last hop,
    would come back holding that member's share only."""
    plan = make_plan(alliance, ROUTE)
    request = make_request(alliance, plan, pseudonym, hop_index=2)
    forged = encrypt_contribution(ContributionVector.zero(), plan.requester_key)
    request.accumulator.CopyFrom(accumulator_to_pb(forged, plan.requester_key))
    with channel_to(alliance, "telco") as channel:  # as the bank, the requester
        expect(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED",
               node_pb2_grpc.NodeStub(channel).Contribute, request)
    # ... and a hop may not start a sum it should have received.
    with channel_to(alliance, "telco", as_member="shop") as channel:
        expect(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED",
               node_pb2_grpc.NodeStub(channel).Contribute,
               make_request(alliance, make_plan(alliance, ROUTE), pseudonym, hop_index=2))


def test_unknown_model_version_and_bad_pseudonym(
    alliance: InProcessAlliance, finco: node_pb2_grpc.NodeStub, pseudonym: bytes
) -> None:
    plan = make_plan(alliance, ROUTE, model_version="v999")
    expect(grpc.StatusCode.FAILED_PRECONDITION, "MODEL_VERSION_UNAVAILABLE", finco.Contribute,
           make_request(alliance, plan, pseudonym))
    expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", finco.Contribute,
           make_request(alliance, make_plan(alliance, ROUTE), b"short"))


def test_oversized_messages_are_refused(alliance: InProcessAlliance, pseudonym: bytes) -> None:
    target = f"127.0.0.1:{alliance.nodes['finco'].grpc_port}"
    request = make_request(alliance, make_plan(alliance, ROUTE), pseudonym)
    request.accumulator.ciphertexts.extend([b"\xff" * 4096] * 400)  # ~1.6 MiB
    # Our own channels refuse to send it ...
    with channel_to(alliance, "finco") as channel, pytest.raises(grpc.RpcError) as info:
        node_pb2_grpc.NodeStub(channel).Contribute(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # ... and the server refuses to receive it from a peer that would.
    options = [("grpc.max_send_message_length", 8 * 1024 * 1024),
               target_name_option("finco", CertRole.MEMBER)]
    credentials = member_identity(alliance, "bank").channel_credentials()
    with grpc.secure_channel(target, credentials, options=options) as channel, \
            pytest.raises(grpc.RpcError) as info:
        node_pb2_grpc.NodeStub(channel).Contribute(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_health_checking(alliance: InProcessAlliance) -> None:
    bank = member_identity(alliance, "bank")
    for channel, service in ((channel_to(alliance, "shop"), "fedcredit.v1.Node"),
                             (coordinator_channel(alliance, bank), "fedcredit.v1.Coordinator")):
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_coordinator_contract(
    alliance: InProcessAlliance, coordinator: coordinator_pb2_grpc.CoordinatorStub,
    other_keypair: PaillierKeyPair,
) -> None:
    good_key = crypto_pb2.PaillierPublicKey(n=other_keypair.public.to_bytes())
    short_key = crypto_pb2.PaillierPublicKey(n=((1 << 1023) + 1).to_bytes(128, "big"))
    expect(grpc.StatusCode.INVALID_ARGUMENT, "KEY_TOO_SHORT", coordinator.Announce,
           coordinator_pb2.AnnounceRequest(endpoint="127.0.0.1:9", paillier_public_key=short_key))
    expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", coordinator.Announce,
           coordinator_pb2.AnnounceRequest(endpoint="", paillier_public_key=good_key))
    expect(grpc.StatusCode.PERMISSION_DENIED, "CONSENT_PURPOSE_NOT_ALLOWED",
           coordinator.PlanEvaluation,
           coordinator_pb2.PlanRequest(model_version="v1", purpose="marketing"))
    expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", coordinator.PlanEvaluation,
           coordinator_pb2.PlanRequest(model_version="../v1", purpose="origination"))
    # Empty: the registry's active model for the caller, and none has been promoted.
    expect(grpc.StatusCode.FAILED_PRECONDITION, "MODEL_VERSION_UNAVAILABLE",
           coordinator.PlanEvaluation,
           coordinator_pb2.PlanRequest(model_version="", purpose="origination"))
    directory = coordinator.GetDirectory(coordinator_pb2.DirectoryRequest(), timeout=5)
    members = directory.members
    assert {m.member_id for m in members} >= {"bank", "finco", "shop", "telco"}
    assert all(m.status == coordinator_pb2.MEMBER_STATUS_ACTIVE for m in members)
    assert all(m.membership == coordinator_pb2.MEMBERSHIP_ACTIVE for m in members)
    assert all(len(m.paillier_public_key.n) >= 256 for m in members)
    assert all(len(m.certificates) == 1 for m in members)
    assert len(directory.coordinator_certificates) == 1
    assert directory.version == alliance.coordinator.registry.version()


def test_a_node_refuses_to_generate_a_short_key(alliance: InProcessAlliance, tmp_path) -> None:
    settings = alliance.admit("extra", data_dir=tmp_path, paillier_key_bits=1024)
    from node.server import start_node

    with pytest.raises(KeyTooShortError):
        start_node(settings)


def test_plans_from_the_coordinator_are_signed_and_exclude_the_requester(
    alliance: InProcessAlliance, coordinator: coordinator_pb2_grpc.CoordinatorStub,
) -> None:
    with coordinator_channel(alliance, member_identity(alliance, "shop")) as channel:
        signed = coordinator_pb2_grpc.CoordinatorStub(channel).PlanEvaluation(
            coordinator_pb2.PlanRequest(model_version="v1", purpose="origination"), timeout=5)
    from fedcredit.plans import verify_plan
    from fedcredit.serde import signed_plan_from_pb

    verifier = alliance.coordinator.core.identity.current.certified.verifier
    plan = verify_plan(signed_plan_from_pb(signed), verifier, now_ms())
    assert plan.requester_id == "shop"
    assert {h.member_id for h in plan.route} == {"bank", "finco", "telco"}
    assert plan.expires_unix_ms - plan.issued_unix_ms == alliance.coordinator_settings.plan_ttl_ms
    assert signed_plan_to_pb(sign_plan(plan, coordinator_signer(alliance))).plan == signed.plan


def test_a_hop_that_starts_the_sum_never_returns_a_single_share(
    alliance: InProcessAlliance, pseudonym: bytes
) -> None:
    """Calling the last hop directly with no accumulator would hand the requester one member's
    exact share; the starting hop withholds any sum with fewer than min_answered shares."""
    plan = make_plan(alliance, ROUTE)
    with channel_to(alliance, "telco") as channel:
        telco = node_pb2_grpc.NodeStub(channel)
        expect(grpc.StatusCode.UNAVAILABLE, "INSUFFICIENT_COVERAGE", telco.Contribute,
               make_request(alliance, plan, pseudonym, hop_index=2))
    # Two hops from the middle are enough for min_answered = 2 (a fresh plan: each plan acts
    # once per node).
    plan = make_plan(alliance, ROUTE)
    with channel_to(alliance, "shop") as channel:
        reply = node_pb2_grpc.NodeStub(channel).Contribute(
            make_request(alliance, plan, pseudonym, hop_index=1), timeout=10)
    assert [o.member_id for o in reply.outcomes] == ["shop", "telco"]


def inquiry(alliance: InProcessAlliance, subject_key: SubjectKey, pseudonym: bytes, *,
            purpose: Purpose = Purpose.ORIGINATION, relationship: str = "applicant",
            query_id: str | None = None, **changes: Any
            ) -> tuple[coordinator_pb2.InquiryRequest, EntryDraft]:
    """bank's plan request with its consent entry, as a requester sends it; ``changes``
    override the request's fields (the consent record's: ``consent_<field>``)."""
    query_id = query_id or str(uuid.uuid4())
    terms = ConsentTerms(purpose, now_ms() + 60_000, "loan-7", Relationship(relationship))
    record = consent_for_query(terms, query_id, "bank", pseudonym, now_ms())
    consent = sign_consent(record, member_identity(alliance, "bank").current.signer)
    draft = EntryDraft(kind=EntryKind.CONSENT, actor="bank", query_id=query_id,
                       subject_tag=ledger_subject_tag(subject_key, pseudonym, query_id),
                       body=consent_ledger_body(record, consent))
    record_fields: dict[str, Any] = {
        "kind": "consent", "query_id": query_id, "subject_tag": draft.subject_tag,
        "body_json": draft.body_json.decode()}
    request_fields: dict[str, Any] = {
        "plan": coordinator_pb2.PlanRequest(model_version="v1", purpose=purpose.value),
        "query_id": query_id}
    for key, value in changes.items():
        if key.startswith("consent_"):
            record_fields[key.removeprefix("consent_")] = value
        else:
            request_fields[key] = value
    request = coordinator_pb2.InquiryRequest(
        consent=coordinator_pb2.AuditRecord(**record_fields), **request_fields)
    return request, draft


def planned_or_consented(alliance: InProcessAlliance, since: int) -> list[EntryKind]:
    """Plan and consent entries recorded from ledger index ``since`` on (other entries, e.g.
    contribution digests from a node's outbox, may arrive meanwhile)."""
    ledger = alliance.coordinator.core.ledger
    return [e.kind for e in ledger.entries(since, ledger.size())
            if e.kind in (EntryKind.PLAN, EntryKind.CONSENT)]


def test_an_inquiry_plan_and_its_consent_commit_together(
    alliance: InProcessAlliance, coordinator: coordinator_pb2_grpc.CoordinatorStub,
    subject_key: SubjectKey, pseudonym: bytes,
) -> None:
    request, draft = inquiry(alliance, subject_key, pseudonym)
    reply = coordinator.PlanInquiry(request, timeout=10)
    from fedcredit.plans import verify_plan
    from fedcredit.serde import receipt_from_pb, signed_plan_from_pb

    verifier = alliance.coordinator.core.identity.current.certified.verifier
    plan = verify_plan(signed_plan_from_pb(reply.plan), verifier, now_ms())
    assert plan.query_id == request.query_id and plan.requester_id == "bank"
    receipt = receipt_from_pb(reply.consent_receipt)
    verify_receipt(receipt, draft, verifier)
    ledger = alliance.coordinator.core.ledger
    planned, consented = ledger.entry(receipt.index - 1), ledger.entry(receipt.index)
    assert (planned.kind, planned.query_id) == (EntryKind.PLAN, plan.query_id)
    assert (consented.kind, consented.subject_tag) == (EntryKind.CONSENT, draft.subject_tag)
    assert planned.created_ms == consented.created_ms  # one commit, one tree head
    assert ledger.tree_head(receipt.tree_head.size).size == receipt.index + 1

    # The query id is spent: the same one again is refused, and nothing more recorded.
    size = ledger.size()
    again, _ = inquiry(alliance, subject_key, pseudonym, query_id=request.query_id)
    expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", coordinator.PlanInquiry, again)
    assert planned_or_consented(alliance, size) == []


def test_a_bad_inquiry_is_refused_before_anything_is_recorded(
    alliance: InProcessAlliance, coordinator: coordinator_pb2_grpc.CoordinatorStub,
    subject_key: SubjectKey, pseudonym: bytes,
) -> None:
    ledger = alliance.coordinator.core.ledger
    size = ledger.size()
    _, good = inquiry(alliance, subject_key, pseudonym)
    body = json.loads(good.body_json)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    denied = grpc.StatusCode.PERMISSION_DENIED
    cases: list[tuple[grpc.StatusCode, str, dict[str, Any]]] = [
        (invalid, "INVALID_REQUEST", {"query_id": "not-a-uuid"}),
        (invalid, "INVALID_REQUEST", {"query_id": str(uuid.uuid1())}),  # not random
        (invalid, "INVALID_REQUEST", {"query_id": str(uuid.uuid4()).upper()}),
        (invalid, "INVALID_REQUEST", {"consent_query_id": str(uuid.uuid4())}),
        (invalid, "INVALID_REQUEST", {"consent_kind": "completion"}),
        (invalid, "INVALID_REQUEST", {"consent_subject_tag": b"\x01" * 31}),
        (invalid, "INVALID_REQUEST", {"consent_body_json": "[1, 2]"}),
        (invalid, "INVALID_REQUEST", {"consent_body_json": json.dumps({**body, "name": "x"})}),
        (invalid, "INVALID_REQUEST", {"plan": coordinator_pb2.PlanRequest(
            model_version="v1", purpose="origination",
            batch=plan_pb2.BatchTerms(subjects=10, chunks=1, chunk_subjects=10,
                                      key_sha256=b"\x00" * 32))}),
        # The consent says one purpose, the plan request another.
        (denied, "CONSENT_PURPOSE_NOT_ALLOWED", {"consent_body_json": json.dumps(
            {**body, "purpose": "account_review"})}),
        # A purpose the alliance policy does not allow at all.
        (denied, "CONSENT_PURPOSE_NOT_ALLOWED", {"plan": coordinator_pb2.PlanRequest(
            model_version="v1", purpose="marketing")}),
    ]
    for code, fedcredit_code, changes in cases:
        request, _ = inquiry(alliance, subject_key, pseudonym, **changes)
        expect(code, fedcredit_code, coordinator.PlanInquiry, request)
    # Account review is for existing customers only: an applicant's consent is refused.
    review, _ = inquiry(alliance, subject_key, pseudonym, purpose=Purpose.ACCOUNT_REVIEW)
    expect(denied, "CONSENT_PURPOSE_NOT_ALLOWED", coordinator.PlanInquiry, review)
    # Unpinned: no model promoted for bank, so nothing to plan with.
    unpinned, _ = inquiry(alliance, subject_key, pseudonym, plan=coordinator_pb2.PlanRequest(
        model_version="", purpose="origination"))
    expect(grpc.StatusCode.FAILED_PRECONDITION, "MODEL_VERSION_UNAVAILABLE",
           coordinator.PlanInquiry, unpinned)
    assert planned_or_consented(alliance, size) == []
