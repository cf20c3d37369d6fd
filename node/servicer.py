"""The Node gRPC service: authenticate the caller, translate, delegate, translate back."""

from __future__ import annotations

import grpc

from fedcredit.clock import Clock
from fedcredit.errors import PermissionDeniedError
from fedcredit.tls import PeerCertificates
from fedcredit.training_spec import SessionSpec
from fedcredit.transport import rpc_edge
from mpc.pki import CertifiedIdentity, CertRole
from node.contribution import ContributionService
from node.directory import MemberDirectory
from node.portfolio_hop import PortfolioHop
from node.serde import (
    contribute_reply_to_pb,
    contribute_request_from_pb,
    open_portfolio_from_pb,
    portfolio_chunk_from_pb,
    portfolio_reply_to_pb,
)
from node.training.member_session import MemberTraining
from proto.v1 import node_pb2, node_pb2_grpc


class NodeServicer(node_pb2_grpc.NodeServicer):
    def __init__(self, service: ContributionService, peers: PeerCertificates,
                 directory: MemberDirectory, clock: Clock,
                 training: MemberTraining | None = None,
                 portfolio: PortfolioHop | None = None) -> None:
        self._service = service
        self._portfolio = portfolio
        self._training = training
        self._peers = peers
        self._directory = directory
        self._clock = clock

    @rpc_edge
    def Contribute(  # noqa: N802 - gRPC method name
        self, request: node_pb2.ContributeRequest, context: grpc.ServicerContext
    ) -> node_pb2.ContributeReply:
        caller = self._member(context)
        call = contribute_request_from_pb(request)
        result = self._service.contribute(call, caller, self._caller_deadline(context))
        return contribute_reply_to_pb(result.accumulator, result.outcomes, result.key)

    @rpc_edge
    def OpenPortfolio(  # noqa: N802 - gRPC method name
        self, request: node_pb2.OpenPortfolioRequest, context: grpc.ServicerContext
    ) -> node_pb2.OpenPortfolioReply:
        caller = self._member(context)
        self._portfolio_hop().open(open_portfolio_from_pb(request), caller)
        return node_pb2.OpenPortfolioReply()

    @rpc_edge
    def ContributePortfolio(  # noqa: N802 - gRPC method name
        self, request: node_pb2.PortfolioChunkRequest, context: grpc.ServicerContext
    ) -> node_pb2.PortfolioChunkReply:
        caller = self._member(context)
        call = portfolio_chunk_from_pb(request)
        final, outcomes = self._portfolio_hop().contribute(call, caller,
                                                           self._caller_deadline(context))
        return portfolio_reply_to_pb(final, outcomes)

    def _member(self, context: grpc.ServicerContext) -> CertifiedIdentity:
        """Who is calling, before anything else is even parsed: an active member, presenting a
        certificate the directory lists (not revoked, not superseded and expired)."""
        caller = self._peers.identify(context, self._clock())
        self._directory.authorize_peer(caller)
        return caller

    def _portfolio_hop(self) -> PortfolioHop:
        if self._portfolio is None:
            raise PermissionDeniedError("this node does not take part in portfolio jobs")
        return self._portfolio

    def _caller_deadline(self, context: grpc.ServicerContext) -> int | None:
        remaining = context.time_remaining()
        return None if remaining is None else self._clock() + int(remaining * 1000)

    @rpc_edge
    def JoinTraining(  # noqa: N802 - gRPC method name
        self, request: node_pb2.JoinTrainingRequest, context: grpc.ServicerContext
    ) -> node_pb2.JoinTrainingReply:
        caller = self._peers.identify(context, self._clock())
        if caller.role is not CertRole.COORDINATOR:
            raise PermissionDeniedError("only the coordinator starts training sessions")
        if self._training is None:
            raise PermissionDeniedError("this node does not take part in federated training")
        spec = SessionSpec.from_json(request.session_json)
        port, rows = self._training.join(spec, request.arbiter_port)
        return node_pb2.JoinTrainingReply(port=port, rows=rows)
