"""The Coordinator and Enrollment gRPC services: thin adapters over registry, admission,
planner and ledger. Every Coordinator call is authenticated by the caller's alliance
certificate (mutual TLS) and checked against the registry: an unknown, suspended or revoked
member gets a typed refusal on its very next call.
"""

from __future__ import annotations

import hashlib
import uuid

import grpc

from coordinator.admission import AdmissionService, JoinState
from coordinator.audit_intake import AuditIntake, SubmittedRecord
from coordinator.model_registry import ModelRegistry
from coordinator.planner import RoutePlanner
from coordinator.policy import PolicyStore
from coordinator.product_catalog import ProductCatalog
from coordinator.registry import MemberRegistry
from coordinator.serde import directory_to_pb, product_catalog_to_pb, ticket_to_pb
from fedcredit.audit import EntryDraft, EntryKind
from fedcredit.clock import Clock
from fedcredit.errors import InvalidRequestError, ModelUnavailableError, PermissionDeniedError
from fedcredit.plans import sign_plan
from fedcredit.protocol import Plan, Purpose, SignedPlan, tree_positions
from fedcredit.serde import (
    batch_terms_from_pb,
    public_key_from_pb,
    receipt_to_pb,
    signed_plan_to_pb,
    tree_head_to_pb,
)
from fedcredit.tls import IdentityHolder, PeerCertificates
from fedcredit.transport import rpc_edge
from mpc.pki import CertifiedIdentity
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc, plan_pb2

MAX_ENDPOINT_CHARS = 255
MAX_PROOFS = 1_000


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    def __init__(
        self,
        registry: MemberRegistry,
        admission: AdmissionService,
        policies: PolicyStore,
        models: ModelRegistry,
        products: ProductCatalog,
        planner: RoutePlanner,
        identity: IdentityHolder,
        peers: PeerCertificates,
        intake: AuditIntake,
        heartbeat_interval_ms: int,
        clock: Clock,
    ) -> None:
        self._registry = registry
        self._admission = admission
        self._policies = policies
        self._models = models
        self._products = products
        self._planner = planner
        self._identity = identity
        self._peers = peers
        self._intake = intake
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._clock = clock

    def _member(self, context: grpc.ServicerContext) -> CertifiedIdentity:
        identity = self._peers.identify(context, self._clock())
        self._registry.authorize_member(identity)
        return identity

    @rpc_edge
    def Announce(  # noqa: N802 - gRPC method name
        self, request: coordinator_pb2.AnnounceRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.AnnounceReply:
        caller = self._member(context)
        if not request.endpoint or len(request.endpoint) > MAX_ENDPOINT_CHARS:
            raise InvalidRequestError("endpoint must be a host:port")
        key = public_key_from_pb(request.paillier_public_key)
        version = self._registry.announce(
            caller.party_id, request.display_name[:200] or caller.party_id, request.endpoint,
            key, self._clock())
        return coordinator_pb2.AnnounceReply(
            heartbeat_interval_ms=self._heartbeat_interval_ms, directory_version=version)

    @rpc_edge
    def Heartbeat(  # noqa: N802
        self, request: coordinator_pb2.HeartbeatRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.HeartbeatReply:
        caller = self._member(context)
        now = self._clock()
        version = self._registry.heartbeat(caller.party_id, request.applied_directory_version, now)
        return coordinator_pb2.HeartbeatReply(server_time_unix_ms=now, directory_version=version)

    @rpc_edge
    def GetDirectory(  # noqa: N802
        self, request: coordinator_pb2.DirectoryRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.Directory:
        self._member(context)
        return directory_to_pb(self._registry.directory(self._clock()))

    @rpc_edge
    def GetProducts(  # noqa: N802
        self, request: coordinator_pb2.ProductsRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.ProductCatalog:
        self._member(context)
        return product_catalog_to_pb(self._products.snapshot(), request.known_version)

    @rpc_edge
    def PlanEvaluation(  # noqa: N802
        self, request: coordinator_pb2.PlanRequest, context: grpc.ServicerContext
    ) -> plan_pb2.SignedPlan:
        caller = self._member(context)
        now = self._clock()
        plan = self._plan(caller.party_id, request, now)
        signed = sign_plan(plan, self._identity.current.signer)
        # Durable before the plan is handed out: no evaluation runs without its ledger entry.
        self._intake.ledger.append(plan_entry(plan, signed), now_ms=now)
        return signed_plan_to_pb(signed)

    @rpc_edge
    def PlanInquiry(  # noqa: N802
        self, request: coordinator_pb2.InquiryRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.PlannedInquiry:
        caller = self._member(context)
        if request.plan.HasField("batch"):
            raise InvalidRequestError("a portfolio job is planned with PlanEvaluation")
        # Once only: the ledger keeps plans unique by query id (a second one is refused there).
        query_id = proposed_query_id(request.query_id)
        now = self._clock()
        plan = self._plan(caller.party_id, request.plan, now, query_id=query_id,
                          held_versions=frozenset(request.held_model_versions))
        record = request.consent
        consent = self._intake.consent_with_plan(caller.party_id, SubmittedRecord(
            record.kind, record.query_id, record.subject_tag, record.body_json), plan)
        signed = sign_plan(plan, self._identity.current.signer)
        # Plan and consent in one commit, durable before the plan is handed out.
        _, receipt = self._intake.ledger.append_many([plan_entry(plan, signed), consent],
                                                     now_ms=now)
        return coordinator_pb2.PlannedInquiry(plan=signed_plan_to_pb(signed),
                                              consent_receipt=receipt_to_pb(receipt))

    def _plan(self, requester_id: str, request: coordinator_pb2.PlanRequest, now: int, *,
              query_id: str | None = None, held_versions: frozenset[str] | None = None) -> Plan:
        purpose = Purpose.parse(request.purpose)
        # Empty: the requester's active model in the registry. The plan names the version, so
        # every hop scores with the same one.
        model_version = self._models.resolve(requester_id, request.model_version)
        if held_versions is not None and not request.model_version and (
            model_version not in held_versions
        ):
            raise ModelUnavailableError(
                f"the active model version {model_version} is not installed at the requester, "
                "or has no intercept there (only the member that trained it with its labels "
                "requests with it)")
        _, policy = self._policies.current()
        if request.chain:  # the requester's TREE root failed: a CHAIN skips failing members
            policy = policy.model_copy(update={"route_mode": "chain"})
        directory = self._registry.directory(now)
        requester = next((m for m in directory.members if m.member_id == requester_id), None)
        if requester is None:
            requester = self._registry.get(requester_id, now)
        return self._planner.plan(
            requester,
            directory.members,
            policy=policy,
            directory_version=directory.version,
            model_version=model_version,
            purpose=purpose,
            now_ms=now,
            batch=batch_terms_from_pb(request.batch) if request.HasField("batch") else None,
            query_id=query_id,
        )

    @rpc_edge
    def RenewCertificate(  # noqa: N802
        self, request: coordinator_pb2.RenewRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.RenewReply:
        caller = self._member(context)
        pem = self._admission.renew(caller.party_id, request.csr_pem)
        return coordinator_pb2.RenewReply(certificate_pem=pem)

    @rpc_edge
    def ListJoinRequests(  # noqa: N802
        self, request: coordinator_pb2.ListJoinRequestsRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.ListJoinRequestsReply:
        self._member(context)
        ca_pem = self._identity.current.ca_pem
        return coordinator_pb2.ListJoinRequestsReply(requests=[
            ticket_to_pb(r, ca_pem) for r in self._admission.list(JoinState.PENDING)
        ])

    @rpc_edge
    def Vote(  # noqa: N802
        self, request: coordinator_pb2.VoteRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.JoinTicket:
        caller = self._member(context)
        record = self._admission.vote(request.request_id, caller.party_id, request.approve)
        return ticket_to_pb(record, self._identity.current.ca_pem)


    # -- the audit ledger, for members -------------------------------------------------------
    @rpc_edge
    def RecordAudit(  # noqa: N802
        self, request: coordinator_pb2.AuditSubmission, context: grpc.ServicerContext
    ) -> coordinator_pb2.AuditReceipts:
        caller = self._member(context)
        records = [SubmittedRecord(r.kind, r.query_id, r.subject_tag, r.body_json)
                   for r in request.records]
        receipts = self._intake.record(caller.party_id, records, self._clock())
        return coordinator_pb2.AuditReceipts(receipts=[receipt_to_pb(r) for r in receipts])

    @rpc_edge
    def GetAuditProofs(  # noqa: N802
        self, request: coordinator_pb2.AuditProofRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.AuditProofs:
        self._member(context)
        if len(request.indices) + len(request.old_sizes) > MAX_PROOFS:
            raise InvalidRequestError(f"at most {MAX_PROOFS} proofs per call")
        ledger = self._intake.ledger
        head = ledger.tree_head()
        # What cannot be proved against the current head is left out: the member's check then
        # fails exactly those receipts (a log that shrank or forked), not the whole request.
        return coordinator_pb2.AuditProofs(
            head=tree_head_to_pb(head),
            inclusion=[coordinator_pb2.ProofPath(
                at=i, hashes=ledger.inclusion_proof(i, head.size).hashes)
                for i in request.indices if i < head.size],
            consistency=[coordinator_pb2.ProofPath(
                at=old, hashes=ledger.consistency_proof(old, head.size).hashes)
                for old in request.old_sizes if 0 < old <= head.size],
        )

    @rpc_edge
    def ListConsentTags(  # noqa: N802
        self, request: coordinator_pb2.ConsentTagsRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.ConsentTags:
        self._member(context)
        tags = self._intake.ledger.consent_tags(request.since_unix_ms, request.until_unix_ms)
        return coordinator_pb2.ConsentTags(tags=[
            coordinator_pb2.ConsentTag(index=t.index, query_id=t.query_id or "",
                                       subject_tag=t.subject_tag or b"") for t in tags])

    @rpc_edge
    def GetConsentEntries(  # noqa: N802
        self, request: coordinator_pb2.ConsentEntriesRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.ConsentEntries:
        self._member(context)
        if len(request.indices) > MAX_PROOFS:
            raise InvalidRequestError(f"at most {MAX_PROOFS} entries per call")
        out = []
        for index in request.indices:
            entry = self._intake.ledger.entry(index)
            if entry.kind is not EntryKind.CONSENT:
                raise PermissionDeniedError("members read consent entries only")
            out.append(coordinator_pb2.ConsentEntry(
                index=entry.index, requester_id=entry.actor,
                purpose=str(entry.body.get("purpose", "")), created_unix_ms=entry.created_ms,
                query_id=entry.query_id or ""))
        return coordinator_pb2.ConsentEntries(entries=out)


class EnrollmentServicer(coordinator_pb2_grpc.EnrollmentServicer):
    """Open to anyone who trusts the alliance CA: filing a request grants nothing by itself."""

    def __init__(self, admission: AdmissionService, identity: IdentityHolder) -> None:
        self._admission = admission
        self._identity = identity

    @rpc_edge
    def RequestToJoin(  # noqa: N802
        self, request: coordinator_pb2.JoinRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.JoinTicket:
        record = self._admission.request_to_join(request.csr_pem, request.display_name,
                                                 request.contact)
        return ticket_to_pb(record, self._identity.current.ca_pem)

    @rpc_edge
    def GetJoinStatus(  # noqa: N802
        self, request: coordinator_pb2.JoinStatusRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.JoinTicket:
        if not request.request_id or len(request.request_id) > 64:
            raise InvalidRequestError("request_id is required")
        return ticket_to_pb(self._admission.get(request.request_id), self._identity.current.ca_pem)


def plan_entry(plan: Plan, signed: SignedPlan) -> EntryDraft:
    """The ledger's PLAN entry: who asked, the route, the terms, the signed plan's digest."""
    return EntryDraft(
        kind=EntryKind.PLAN, actor=plan.requester_id, query_id=plan.query_id, body={
            "query_id": plan.query_id,
            "requester_id": plan.requester_id,
            # Every member in hop-index order (a TREE's preorder); "mode" tells the shape.
            "route": [p.hop.member_id for p in tree_positions(plan.route)],
            "mode": plan.mode.value,
            "purpose": plan.purpose.value,
            "model_version": plan.model_version,
            "issued_ms": plan.issued_unix_ms,
            "expires_ms": plan.expires_unix_ms,
            "directory_version": plan.directory_version,
            "plan_sha256": hashlib.sha256(signed.body).hexdigest(),
            **({} if plan.batch is None else {"batch": {
                "subjects": plan.batch.subjects, "chunks": plan.batch.chunks,
                "key_sha256": plan.batch.key_sha256.hex()}}),
        })


def proposed_query_id(value: str) -> str:
    """A requester's proposed query id: the canonical text of a random (version 4) UUID."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise InvalidRequestError("the query id must be a random UUID") from None
    if parsed.version != 4 or str(parsed) != value:
        raise InvalidRequestError("the query id must be a random UUID in canonical form")
    return value
