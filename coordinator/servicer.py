"""The Coordinator gRPC service: a thin adapter over the registry and the planner."""

from __future__ import annotations

import hmac
import re

import grpc

from coordinator.planner import RoutePlanner
from coordinator.registry import MemberRegistry
from coordinator.serde import member_to_pb
from fedcredit.clock import Clock
from fedcredit.errors import ErrorCode, FedCreditError, InvalidRequestError
from fedcredit.plans import sign_plan
from fedcredit.protocol import Purpose
from fedcredit.serde import public_key_from_pb, signed_plan_to_pb
from fedcredit.transport import is_loopback, rpc_edge
from mpc.signing import Signer
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc, plan_pb2

MEMBER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    def __init__(
        self,
        registry: MemberRegistry,
        planner: RoutePlanner,
        signer: Signer,
        registration_token: str,
        heartbeat_interval_ms: int,
        clock: Clock,
        loopback_only: bool,
    ) -> None:
        self._registry = registry
        self._planner = planner
        self._signer = signer
        self._token = registration_token.encode()
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._clock = clock
        self._loopback_only = loopback_only

    def _authenticate(self, token: str) -> None:
        if not hmac.compare_digest(token.encode(), self._token):
            raise FedCreditError("registration token refused", code=ErrorCode.REGISTRATION_REFUSED)

    @rpc_edge
    def Register(  # noqa: N802 - gRPC method name
        self, request: coordinator_pb2.RegisterRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.RegisterReply:
        self._authenticate(request.registration_token)
        if not MEMBER_ID.match(request.member_id):
            raise InvalidRequestError("member_id must match [a-z0-9][a-z0-9-]{1,62}")
        if not request.endpoint or (self._loopback_only and not is_loopback(request.endpoint)):
            raise InvalidRequestError("endpoint must be a loopback host:port in dev mode")
        key = public_key_from_pb(request.paillier_public_key)
        self._registry.register(
            request.member_id,
            request.display_name or request.member_id,
            request.endpoint,
            key,
            self._clock(),
        )
        return coordinator_pb2.RegisterReply(
            member_id=request.member_id, heartbeat_interval_ms=self._heartbeat_interval_ms
        )

    @rpc_edge
    def Heartbeat(  # noqa: N802
        self, request: coordinator_pb2.HeartbeatRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.HeartbeatReply:
        self._authenticate(request.registration_token)
        now = self._clock()
        self._registry.heartbeat(request.member_id, now)
        return coordinator_pb2.HeartbeatReply(server_time_unix_ms=now)

    @rpc_edge
    def ListMembers(  # noqa: N802
        self, request: coordinator_pb2.ListMembersRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.ListMembersReply:
        members = self._registry.members(self._clock())
        return coordinator_pb2.ListMembersReply(members=[member_to_pb(m) for m in members])

    @rpc_edge
    def PlanEvaluation(  # noqa: N802
        self, request: coordinator_pb2.PlanRequest, context: grpc.ServicerContext
    ) -> plan_pb2.SignedPlan:
        self._authenticate(request.registration_token)
        purpose = Purpose.parse(request.purpose)
        if not request.model_version:
            raise InvalidRequestError("model_version is required")
        now = self._clock()
        requester = self._registry.get(request.requester_id, now)
        plan = self._planner.plan(
            requester,
            self._registry.members(now),
            model_version=request.model_version,
            purpose=purpose,
            now_ms=now,
        )
        return signed_plan_to_pb(sign_plan(plan, self._signer))
