"""Coordinator protobuf ⇄ domain conversions."""

from __future__ import annotations

from coordinator.admission import JoinRequestRecord, JoinState
from coordinator.product_catalog import CatalogSnapshot, amount_text
from coordinator.registry import (
    CertificateRecord,
    DirectorySnapshot,
    MemberRecord,
    Membership,
    MemberStatus,
)
from fedcredit.serde import public_key_to_pb
from proto.v1 import coordinator_pb2
from scoring.products import Product

_STATUS = {
    MemberStatus.ACTIVE: coordinator_pb2.MEMBER_STATUS_ACTIVE,
    MemberStatus.STALE: coordinator_pb2.MEMBER_STATUS_STALE,
}
_MEMBERSHIP = {
    Membership.ACTIVE: coordinator_pb2.MEMBERSHIP_ACTIVE,
    Membership.SUSPENDED: coordinator_pb2.MEMBERSHIP_SUSPENDED,
    Membership.REVOKED: coordinator_pb2.MEMBERSHIP_REVOKED,
}
_JOIN_STATE = {
    JoinState.PENDING: coordinator_pb2.JOIN_STATE_PENDING,
    JoinState.APPROVED: coordinator_pb2.JOIN_STATE_APPROVED,
    JoinState.REJECTED: coordinator_pb2.JOIN_STATE_REJECTED,
}


def certificate_to_pb(cert: CertificateRecord) -> coordinator_pb2.Certificate:
    return coordinator_pb2.Certificate(serial=cert.serial, pem=cert.pem,
                                       not_after_unix_ms=cert.not_after_ms)


def member_to_pb(member: MemberRecord) -> coordinator_pb2.Member:
    msg = coordinator_pb2.Member(
        member_id=member.member_id,
        display_name=member.display_name,
        endpoint=member.endpoint,
        status=_STATUS[member.status],
        last_heartbeat_unix_ms=member.last_heartbeat_ms,
        latency_ms=member.latency_ms,
        membership=_MEMBERSHIP[member.membership],
        certificates=[certificate_to_pb(c) for c in member.certificates],
    )
    if member.public_key is not None:
        msg.paillier_public_key.CopyFrom(public_key_to_pb(member.public_key))
    return msg


def directory_to_pb(directory: DirectorySnapshot) -> coordinator_pb2.Directory:
    return coordinator_pb2.Directory(
        version=directory.version,
        members=[member_to_pb(m) for m in directory.members],
        coordinator_certificates=[certificate_to_pb(c)
                                  for c in directory.coordinator_certificates],
    )


def ticket_to_pb(record: JoinRequestRecord, ca_pem: bytes) -> coordinator_pb2.JoinTicket:
    return coordinator_pb2.JoinTicket(
        request_id=record.request_id,
        member_id=record.member_id,
        state=_JOIN_STATE[record.state],
        key_fingerprint=record.fingerprint,
        approvals=len(record.approvals),
        approvals_required=record.approvals_required,
        admin_approved=record.admin_approved_by is not None,
        reason=record.reason,
        certificate_pem=record.certificate_pem or b"",
        ca_certificate_pem=ca_pem,
        display_name=record.display_name,
        created_unix_ms=record.created_ms,
    )


def product_to_pb(product: Product) -> coordinator_pb2.LoanProduct:
    return coordinator_pb2.LoanProduct(
        product_id=product.product_id, member_id=product.member_id, name=product.name,
        min_amount=amount_text(product.min_amount), max_amount=amount_text(product.max_amount),
        terms_months=list(product.terms_months), apr=amount_text(product.apr),
        disbursement_days=product.disbursement_days,
        eligible_grades=sorted(g.value for g in product.eligible_grades))


def product_catalog_to_pb(catalog: CatalogSnapshot,
                          known_version: int) -> coordinator_pb2.ProductCatalog:
    """The whole catalog, or only its version when the member already holds it."""
    if catalog.version == known_version:
        return coordinator_pb2.ProductCatalog(version=catalog.version, unchanged=True)
    return coordinator_pb2.ProductCatalog(
        version=catalog.version, products=[product_to_pb(r.product) for r in catalog.products])
