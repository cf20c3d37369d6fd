"""The Node gRPC service: translate, delegate to :class:`ContributionService`, translate back."""

from __future__ import annotations

import grpc

from fedcredit.clock import Clock
from fedcredit.transport import rpc_edge
from node.contribution import ContributionService
from node.serde import contribute_reply_to_pb, contribute_request_from_pb
from proto.v1 import node_pb2, node_pb2_grpc


class NodeServicer(node_pb2_grpc.NodeServicer):
    def __init__(self, service: ContributionService, clock: Clock) -> None:
        self._service = service
        self._clock = clock

    @rpc_edge
    def Contribute(  # noqa: N802 - gRPC method name
        self, request: node_pb2.ContributeRequest, context: grpc.ServicerContext
    ) -> node_pb2.ContributeReply:
        call = contribute_request_from_pb(request)
        remaining = context.time_remaining()
        caller_deadline = None if remaining is None else self._clock() + int(remaining * 1000)
        result = self._service.contribute(call, caller_deadline)
        return contribute_reply_to_pb(result.accumulator, result.outcomes, result.key)
