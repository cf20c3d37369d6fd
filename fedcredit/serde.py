"""Protobuf ⇄ domain conversions for messages both services speak (plans, keys, ciphertexts).

Protobuf types stop here and in the per-service ``serde`` modules; nothing else imports
``_pb2`` modules except servicers and clients.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from fedcredit.audit import Receipt, SignedTreeHead
from fedcredit.errors import ErrorCode, InvalidRequestError, PlanError
from fedcredit.protocol import (
    BatchTerms,
    Consent,
    FallbackPolicy,
    Hop,
    HopOutcome,
    Plan,
    Purpose,
    Relationship,
    RouteMode,
    SignedConsent,
    SignedPlan,
)
from mpc.paillier import PaillierPublicKey
from mpc.secure_sum import EncryptedContribution
from proto.v1 import coordinator_pb2, crypto_pb2, node_pb2, plan_pb2

_MODE_TO_PB = {
    RouteMode.CHAIN: plan_pb2.ROUTE_MODE_CHAIN,
    RouteMode.TREE: plan_pb2.ROUTE_MODE_TREE,
}
_MODE_FROM_PB = {v: k for k, v in _MODE_TO_PB.items()}


def public_key_to_pb(key: PaillierPublicKey) -> crypto_pb2.PaillierPublicKey:
    return crypto_pb2.PaillierPublicKey(n=key.to_bytes(), hs=key.hs_bytes())


def public_key_from_pb(msg: crypto_pb2.PaillierPublicKey) -> PaillierPublicKey:
    return PaillierPublicKey.from_bytes(msg.n, hs=msg.hs)


def hop_to_pb(hop: Hop) -> plan_pb2.Hop:
    return plan_pb2.Hop(
        member_id=hop.member_id,
        endpoint=hop.endpoint,
        children=[hop_to_pb(c) for c in hop.children],
    )


def hop_from_pb(msg: plan_pb2.Hop) -> Hop:
    return Hop(
        member_id=msg.member_id,
        endpoint=msg.endpoint,
        children=tuple(hop_from_pb(c) for c in msg.children),
    )


def plan_to_bytes(plan: Plan) -> bytes:
    msg = plan_pb2.Plan(
        query_id=plan.query_id,
        requester_id=plan.requester_id,
        requester_key=public_key_to_pb(plan.requester_key),
        mode=_MODE_TO_PB[plan.mode],
        route=[hop_to_pb(h) for h in plan.route],
        issued_unix_ms=plan.issued_unix_ms,
        expires_unix_ms=plan.expires_unix_ms,
        model_version=plan.model_version,
        fallback=plan_pb2.FallbackPolicy(
            skip_unreachable=plan.fallback.skip_unreachable,
            hop_timeout_ms=plan.fallback.hop_timeout_ms,
            min_answered=plan.fallback.min_answered,
        ),
        purpose=plan.purpose.value,
        directory_version=plan.directory_version,
        requires_existing_customer=plan.requires_existing_customer,
        batch=None if plan.batch is None else batch_terms_to_pb(plan.batch),
    )
    return msg.SerializeToString(deterministic=True)


def batch_terms_to_pb(terms: BatchTerms) -> plan_pb2.BatchTerms:
    return plan_pb2.BatchTerms(subjects=terms.subjects, chunks=terms.chunks,
                               key_sha256=terms.key_sha256,
                               chunk_subjects=terms.chunk_subjects)


def batch_terms_from_pb(msg: plan_pb2.BatchTerms) -> BatchTerms:
    try:
        return BatchTerms(subjects=msg.subjects, chunks=msg.chunks, key_sha256=msg.key_sha256,
                          chunk_subjects=msg.chunk_subjects)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None


def plan_from_bytes(body: bytes) -> Plan:
    """Parse a plan body that has already passed signature verification."""
    try:
        msg = plan_pb2.Plan.FromString(body)
        return Plan(
            query_id=msg.query_id,
            requester_id=msg.requester_id,
            requester_key=public_key_from_pb(msg.requester_key),
            mode=_MODE_FROM_PB[msg.mode],
            route=tuple(hop_from_pb(h) for h in msg.route),
            issued_unix_ms=msg.issued_unix_ms,
            expires_unix_ms=msg.expires_unix_ms,
            model_version=msg.model_version,
            fallback=FallbackPolicy(
                skip_unreachable=msg.fallback.skip_unreachable,
                hop_timeout_ms=msg.fallback.hop_timeout_ms,
                min_answered=msg.fallback.min_answered,
            ),
            purpose=Purpose(msg.purpose),
            directory_version=msg.directory_version,
            requires_existing_customer=msg.requires_existing_customer,
            batch=batch_terms_from_pb(msg.batch) if msg.HasField("batch") else None,
        )
    except (DecodeError, KeyError, ValueError) as exc:
        raise PlanError("the plan body is malformed") from exc


def signed_plan_to_pb(signed: SignedPlan) -> plan_pb2.SignedPlan:
    return plan_pb2.SignedPlan(plan=signed.body, signature=signed.signature, key_id=signed.key_id)


def signed_plan_from_pb(msg: plan_pb2.SignedPlan) -> SignedPlan:
    return SignedPlan(body=msg.plan, signature=msg.signature, key_id=msg.key_id)


def accumulator_to_pb(
    acc: EncryptedContribution, key: PaillierPublicKey
) -> crypto_pb2.EncryptedVector:
    return crypto_pb2.EncryptedVector(
        key_fingerprint=acc.key_fingerprint,
        encoding_version=acc.encoding_version,
        ciphertexts=list(acc.to_wire(key)),
    )


def accumulator_from_pb(
    msg: crypto_pb2.EncryptedVector, key: PaillierPublicKey
) -> EncryptedContribution:
    return EncryptedContribution.from_wire(
        key, msg.key_fingerprint, msg.encoding_version, list(msg.ciphertexts)
    )


_RELATIONSHIP_TO_PB = {
    Relationship.APPLICANT: node_pb2.RELATIONSHIP_APPLICANT,
    Relationship.EXISTING_CUSTOMER: node_pb2.RELATIONSHIP_EXISTING_CUSTOMER,
}
_RELATIONSHIP_FROM_PB = {v: k for k, v in _RELATIONSHIP_TO_PB.items()}


def consent_to_bytes(consent: Consent) -> bytes:
    msg = node_pb2.Consent(
        query_id=consent.query_id,
        subject_pseudonym=consent.subject_pseudonym,
        requester_id=consent.requester_id,
        purpose=consent.purpose.value,
        issued_unix_ms=consent.issued_unix_ms,
        expires_unix_ms=consent.expires_unix_ms,
        reference_digest=consent.reference_digest,
        relationship=_RELATIONSHIP_TO_PB[consent.relationship],
    )
    return msg.SerializeToString(deterministic=True)


def consent_from_bytes(body: bytes) -> Consent:
    """Parse a consent body that has already passed signature verification."""
    try:
        msg = node_pb2.Consent.FromString(body)
        return Consent(
            query_id=msg.query_id,
            subject_pseudonym=msg.subject_pseudonym,
            requester_id=msg.requester_id,
            purpose=Purpose.parse(msg.purpose),
            issued_unix_ms=msg.issued_unix_ms,
            expires_unix_ms=msg.expires_unix_ms,
            reference_digest=msg.reference_digest,
            relationship=_RELATIONSHIP_FROM_PB[msg.relationship],
        )
    except (DecodeError, KeyError) as exc:
        raise InvalidRequestError("the consent body is malformed",
                                  code=ErrorCode.CONSENT_INVALID) from exc


def signed_consent_to_pb(signed: SignedConsent) -> node_pb2.SignedConsent:
    return node_pb2.SignedConsent(consent=signed.body, signature=signed.signature,
                                  key_id=signed.key_id)


def signed_consent_from_pb(msg: node_pb2.SignedConsent) -> SignedConsent:
    if not msg.consent:
        raise InvalidRequestError("consent is missing", code=ErrorCode.CONSENT_MISSING)
    return SignedConsent(body=msg.consent, signature=msg.signature, key_id=msg.key_id)


def outcome_to_pb(outcome: HopOutcome) -> node_pb2.HopOutcome:
    return node_pb2.HopOutcome(
        member_id=outcome.member_id,
        status=node_pb2.HOP_STATUS_ANSWERED if outcome.answered else node_pb2.HOP_STATUS_SKIPPED,
        error_code=outcome.error_code,
    )


def outcome_from_pb(msg: node_pb2.HopOutcome) -> HopOutcome:
    return HopOutcome(
        member_id=msg.member_id,
        answered=msg.status == node_pb2.HOP_STATUS_ANSWERED,
        error_code=msg.error_code,
    )


def tree_head_to_pb(head: SignedTreeHead) -> coordinator_pb2.SignedTreeHead:
    return coordinator_pb2.SignedTreeHead(size=head.size, root=head.root,
                                          timestamp_unix_ms=head.timestamp_ms,
                                          key_id=head.key_id, signature=head.signature)


def tree_head_from_pb(msg: coordinator_pb2.SignedTreeHead) -> SignedTreeHead:
    return SignedTreeHead(size=msg.size, root=msg.root, timestamp_ms=msg.timestamp_unix_ms,
                          key_id=msg.key_id, signature=msg.signature)


def receipt_to_pb(receipt: Receipt) -> coordinator_pb2.AuditReceipt:
    return coordinator_pb2.AuditReceipt(
        index=receipt.index, created_unix_ms=receipt.created_ms, leaf_hash=receipt.leaf_hash,
        tree_head=tree_head_to_pb(receipt.tree_head), inclusion=list(receipt.inclusion))


def receipt_from_pb(msg: coordinator_pb2.AuditReceipt) -> Receipt:
    return Receipt(index=msg.index, created_ms=msg.created_unix_ms, leaf_hash=msg.leaf_hash,
                   tree_head=tree_head_from_pb(msg.tree_head), inclusion=tuple(msg.inclusion))
