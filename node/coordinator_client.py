"""The node's side of the Coordinator service: announce, heartbeats, directory, plans, renewal,
the product catalog.

All over mutual TLS with this member's identity; the channel accepts only a server whose
certificate names the coordinator. A renewed identity gets a new channel.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from fedcredit.audit import EntryDraft, Receipt, SignedTreeHead
from fedcredit.error_catalog import error_from_rpc
from fedcredit.errors import CertificateError, ErrorCode, FedCreditError
from fedcredit.protocol import BatchTerms, Purpose, SignedPlan
from fedcredit.serde import (
    batch_terms_to_pb,
    public_key_from_pb,
    public_key_to_pb,
    receipt_from_pb,
    signed_plan_from_pb,
    tree_head_from_pb,
)
from fedcredit.tls import IdentityHolder, target_name_option
from fedcredit.transport import create_channel
from mpc.paillier import PaillierPublicKey
from mpc.pki import CertRole
from node.directory import DirectoryCertificate, DirectoryMember, DirectoryView
from node.product_catalog import CatalogView
from node.serde import product_catalog_from_pb
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc

log = logging.getLogger(__name__)
COORDINATOR_ID = "coordinator"


def directory_from_pb(msg: coordinator_pb2.Directory) -> DirectoryView:
    def certs(items: object) -> tuple[DirectoryCertificate, ...]:
        return tuple(DirectoryCertificate(c.serial, c.pem, c.not_after_unix_ms)
                     for c in items)  # type: ignore[attr-defined]

    members = tuple(
        DirectoryMember(
            member_id=m.member_id,
            display_name=m.display_name,
            endpoint=m.endpoint,
            public_key=(public_key_from_pb(m.paillier_public_key)
                        if m.HasField("paillier_public_key") else None),
            active=m.membership == coordinator_pb2.MEMBERSHIP_ACTIVE,
            membership=coordinator_pb2.Membership.Name(m.membership).removeprefix("MEMBERSHIP_"),
            certificates=certs(m.certificates),
        )
        for m in msg.members
    )
    return DirectoryView(msg.version, members, certs(msg.coordinator_certificates))


def coordinator_error(exc: grpc.RpcError) -> FedCreditError:
    """A failed call to the coordinator as a typed error; transport trouble of any kind is
    COORDINATOR_UNAVAILABLE (not NODE_UNAVAILABLE: it is the coordinator that is missing)."""
    error = error_from_rpc(exc, default=ErrorCode.COORDINATOR_UNAVAILABLE)
    if error.code in (ErrorCode.NODE_UNAVAILABLE, ErrorCode.DEADLINE_EXCEEDED):
        error = FedCreditError(error.detail, code=ErrorCode.COORDINATOR_UNAVAILABLE)
    return error


class CoordinatorClient:
    def __init__(self, address: str, identity: IdentityHolder, timeout_ms: int) -> None:
        self._address = address
        self._identity = identity
        self._timeout_s = timeout_ms / 1000
        self._lock = threading.Lock()
        self._generation = -1
        self._channel: grpc.Channel | None = None
        self._stub: coordinator_pb2_grpc.CoordinatorStub | None = None

    @property
    def identity(self) -> IdentityHolder:
        return self._identity

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None

    def _current_stub(self) -> coordinator_pb2_grpc.CoordinatorStub:
        with self._lock:
            if self._stub is None or self._generation != self._identity.generation:
                # The old channel is not closed here: calls in flight on it (heartbeat, plans)
                # must finish; it is left to the garbage collector (renewals are rare).
                self._generation = self._identity.generation
                self._channel = create_channel(
                    self._address, self._identity.channel_credentials(),
                    target_name_option(COORDINATOR_ID, CertRole.COORDINATOR))
                self._stub = coordinator_pb2_grpc.CoordinatorStub(self._channel)
            return self._stub

    def _call(self, name: str, request: object) -> Any:
        if time.time() * 1000 >= self._identity.current.certified.not_after_ms:
            # The coordinator would only drop the connection; say what is actually wrong.
            raise CertificateError("this member's certificate has expired; it must rejoin "
                                   "(certificates renew automatically while they are valid)")
        method: Callable[..., Any] = getattr(self._current_stub(), name)
        try:
            return method(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise coordinator_error(exc) from None

    def announce(self, display_name: str, endpoint: str, key: PaillierPublicKey) -> int:
        request = coordinator_pb2.AnnounceRequest(
            display_name=display_name, endpoint=endpoint, paillier_public_key=public_key_to_pb(key))
        reply: coordinator_pb2.AnnounceReply = self._call("Announce", request)
        return reply.heartbeat_interval_ms

    def heartbeat(self, applied_version: int) -> int:
        request = coordinator_pb2.HeartbeatRequest(applied_directory_version=applied_version)
        reply: coordinator_pb2.HeartbeatReply = self._call("Heartbeat", request)
        return reply.directory_version

    def directory(self) -> DirectoryView:
        reply: coordinator_pb2.Directory = self._call("GetDirectory",
                                                      coordinator_pb2.DirectoryRequest())
        return directory_from_pb(reply)

    def products(self, known_version: int) -> CatalogView | None:
        """The product catalog, or None if ``known_version`` is the current one."""
        reply: coordinator_pb2.ProductCatalog = self._call(
            "GetProducts", coordinator_pb2.ProductsRequest(known_version=known_version))
        return product_catalog_from_pb(reply)

    def plan(self, model_version: str, purpose: Purpose, *, chain: bool = False,
             batch: BatchTerms | None = None) -> SignedPlan:
        """A signed plan; ``chain``: a CHAIN whatever the policy's mode (the fallback after a
        TREE root failed); ``batch``: a portfolio job's plan."""
        reply = self._call("PlanEvaluation", coordinator_pb2.PlanRequest(
            model_version=model_version, purpose=purpose.value, chain=chain,
            batch=None if batch is None else batch_terms_to_pb(batch)))
        return signed_plan_from_pb(reply)

    def plan_inquiry(self, model_version: str, purpose: Purpose, consent: EntryDraft, *,
                     chain: bool = False, held_versions: Sequence[str] = ()
                     ) -> tuple[SignedPlan, Receipt]:
        """A signed plan for ``consent.query_id`` (proposed by this requester) and the receipt
        of its consent entry, recorded in one commit with the plan."""
        reply: coordinator_pb2.PlannedInquiry = self._call(
            "PlanInquiry", coordinator_pb2.InquiryRequest(
                plan=coordinator_pb2.PlanRequest(model_version=model_version,
                                                 purpose=purpose.value, chain=chain),
                query_id=consent.query_id or "", consent=_audit_record(consent),
                held_model_versions=list(held_versions)))
        return signed_plan_from_pb(reply.plan), receipt_from_pb(reply.consent_receipt)

    def renew(self, csr_pem: bytes) -> bytes:
        reply: coordinator_pb2.RenewReply = self._call(
            "RenewCertificate", coordinator_pb2.RenewRequest(csr_pem=csr_pem))
        return reply.certificate_pem

    def pending_join_requests(self) -> list[coordinator_pb2.JoinTicket]:
        reply: coordinator_pb2.ListJoinRequestsReply = self._call(
            "ListJoinRequests", coordinator_pb2.ListJoinRequestsRequest())
        return list(reply.requests)

    def vote(self, request_id: str, approve: bool) -> coordinator_pb2.JoinTicket:
        reply: coordinator_pb2.JoinTicket = self._call(
            "Vote", coordinator_pb2.VoteRequest(request_id=request_id, approve=approve))
        return reply

    # -- the audit ledger ----------------------------------------------------------------------
    def record_audit(self, drafts: Sequence[EntryDraft]) -> list[Receipt]:
        request = coordinator_pb2.AuditSubmission(records=[_audit_record(d) for d in drafts])
        reply: coordinator_pb2.AuditReceipts = self._call("RecordAudit", request)
        return [receipt_from_pb(r) for r in reply.receipts]

    def audit_proofs(
        self, indices: Sequence[int], old_sizes: Sequence[int]
    ) -> tuple[SignedTreeHead, dict[int, tuple[bytes, ...]], dict[int, tuple[bytes, ...]]]:
        reply: coordinator_pb2.AuditProofs = self._call(
            "GetAuditProofs",
            coordinator_pb2.AuditProofRequest(indices=list(indices), old_sizes=list(old_sizes)))
        return (tree_head_from_pb(reply.head),
                {p.at: tuple(p.hashes) for p in reply.inclusion},
                {p.at: tuple(p.hashes) for p in reply.consistency})

    def consent_tags(self, since_ms: int, until_ms: int) -> list[coordinator_pb2.ConsentTag]:
        reply: coordinator_pb2.ConsentTags = self._call(
            "ListConsentTags",
            coordinator_pb2.ConsentTagsRequest(since_unix_ms=since_ms, until_unix_ms=until_ms))
        return list(reply.tags)

    def consent_entries(self, indices: Sequence[int]) -> list[coordinator_pb2.ConsentEntry]:
        reply: coordinator_pb2.ConsentEntries = self._call(
            "GetConsentEntries", coordinator_pb2.ConsentEntriesRequest(indices=list(indices)))
        return list(reply.entries)


def _audit_record(draft: EntryDraft) -> coordinator_pb2.AuditRecord:
    return coordinator_pb2.AuditRecord(kind=draft.kind.value, query_id=draft.query_id or "",
                                       subject_tag=draft.subject_tag or b"",
                                       body_json=draft.body_json.decode())
