"""Coordinator protobuf ⇄ domain conversions."""

from __future__ import annotations

from coordinator.registry import MemberRecord, MemberStatus
from fedcredit.serde import public_key_to_pb
from proto.v1 import coordinator_pb2

_STATUS = {
    MemberStatus.ACTIVE: coordinator_pb2.MEMBER_STATUS_ACTIVE,
    MemberStatus.STALE: coordinator_pb2.MEMBER_STATUS_STALE,
}


def member_to_pb(member: MemberRecord) -> coordinator_pb2.Member:
    return coordinator_pb2.Member(
        member_id=member.member_id,
        display_name=member.display_name,
        endpoint=member.endpoint,
        paillier_public_key=public_key_to_pb(member.public_key),
        status=_STATUS[member.status],
        last_heartbeat_unix_ms=member.last_heartbeat_ms,
        latency_ms=member.latency_ms,
    )
