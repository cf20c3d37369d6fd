"""The training wire: a ``Training`` gRPC service per party, mutual TLS, one mailbox each.

The sender of every message is the party named by the caller's certificate (checked against
the session's party list and role), never a field of the message. Channels allow
:data:`~fedcredit.transport.MAX_TRAINING_MESSAGE_BYTES`; a delivery retries an unreachable peer
for up to :data:`CONNECT_TIMEOUT_S`, so parties may start in any order (a refused certificate
fails at once); a party waiting on a peer probes
the peer's health and gives up after a few failed probes instead of waiting out the session
timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

from fedcredit.clock import Clock
from fedcredit.error_catalog import error_from_rpc
from fedcredit.errors import ErrorCode, InvalidRequestError, PermissionDeniedError
from fedcredit.federation import Mailbox
from fedcredit.tls import IdentityHolder, PeerCertificates, target_name_option
from fedcredit.training_spec import ARBITER, SessionSpec
from fedcredit.transport import (
    MAX_TRAINING_MESSAGE_BYTES,
    check_health,
    create_channel,
    create_server,
    rpc_edge,
    set_serving,
)
from mpc.pki import CertRole
from proto.v1 import training_pb2, training_pb2_grpc

SERVICE_NAME = "fedcredit.v1.Training"
#: How long a delivery keeps retrying a party that is not reachable (yet).
CONNECT_TIMEOUT_S = 30.0
MAX_TAG = 64


@dataclass(frozen=True)
class PartyAddress:
    address: str
    role: CertRole


def party_roles(spec: SessionSpec) -> dict[str, PartyAddress]:
    """Who may send in a session, with the certificate role each must present (addresses
    unknown yet)."""
    return {
        p.name: PartyAddress("", CertRole.COORDINATOR if p.role == ARBITER else CertRole.MEMBER)
        for p in spec.parties
    }


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TrainingServicer(training_pb2_grpc.TrainingServicer):
    def __init__(self, session_id: str, mailbox: Mailbox, parties: Mapping[str, PartyAddress],
                 peers: PeerCertificates, clock: Clock) -> None:
        self._session_id = session_id
        self._mailbox = mailbox
        self._parties = dict(parties)
        self._peers = peers
        self._clock = clock

    @rpc_edge
    def Deliver(  # noqa: N802 - gRPC method name
        self, request: training_pb2.TrainingMessage, context: grpc.ServicerContext
    ) -> training_pb2.DeliverReply:
        caller = self._peers.identify(context, self._clock())
        expected = self._parties.get(caller.party_id)
        if expected is None or expected.role != caller.role:
            raise PermissionDeniedError(f"{caller.party_id} is not a party of this session")
        if request.session_id != self._session_id:
            raise InvalidRequestError("message for another training session")
        if not request.tag or len(request.tag) > MAX_TAG:
            raise InvalidRequestError("missing or oversized step tag")
        self._mailbox.put(caller.party_id, request.tag, request.payload)
        return training_pb2.DeliverReply()


class GrpcTransport:
    """Delivers to the other parties over mutual TLS; one channel per party, reused."""

    def __init__(self, session_id: str, identity: IdentityHolder,
                 parties: Mapping[str, PartyAddress], call_timeout_s: float,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self._session_id = session_id
        self._connect_timeout = connect_timeout_s
        self._identity = identity
        self._parties = dict(parties)
        self._timeout = call_timeout_s
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def _channel(self, party: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(party)
            if channel is None:
                target = self._parties[party]
                channel = create_channel(
                    target.address, self._identity.channel_credentials(),
                    target_name_option(party, target.role),
                    max_message_bytes=MAX_TRAINING_MESSAGE_BYTES,
                )
                self._channels[party] = channel
            return channel

    def deliver(self, recipient: str, sender: str, tag: str, payload: bytes) -> None:
        if recipient not in self._parties:
            raise InvalidRequestError(f"{recipient!r} is not a party of this session")
        stub = training_pb2_grpc.TrainingStub(self._channel(recipient))
        message = training_pb2.TrainingMessage(session_id=self._session_id, tag=tag,
                                               payload=payload)
        deadline = time.monotonic() + self._connect_timeout
        pause = 0.05
        while True:
            try:
                stub.Deliver(message, timeout=self._timeout)
                return
            except grpc.RpcError as exc:
                error = error_from_rpc(exc, default=ErrorCode.NODE_UNAVAILABLE)
                # Not up yet (parties start in any order): retry for a while. Anything else —
                # a refused certificate, a refused message — is final.
                if error.code is not ErrorCode.NODE_UNAVAILABLE or time.monotonic() > deadline:
                    raise error from None
            time.sleep(pause)
            pause = min(1.0, pause * 2)

    def is_alive(self, party: str) -> bool:
        return check_health(self._channel(party), 2.0, SERVICE_NAME)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


@dataclass
class TrainingServer:
    server: grpc.Server
    port: int

    def stop(self, grace_s: float = 1.0) -> None:
        self.server.stop(grace_s).wait()


def start_training_server(
    bind: str, session_id: str, mailbox: Mailbox, identity: IdentityHolder,
    parties: Mapping[str, PartyAddress], clock: Clock,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> TrainingServer:
    server, port, health = create_server(
        bind, identity.server_credentials(), max_workers=16,
        max_message_bytes=MAX_TRAINING_MESSAGE_BYTES, interceptors=interceptors,
    )
    training_pb2_grpc.add_TrainingServicer_to_server(
        TrainingServicer(session_id, mailbox, parties,
                         PeerCertificates(identity.current.ca_certificate), clock),
        server,
    )
    server.start()
    set_serving(health, [SERVICE_NAME])
    return TrainingServer(server, port)
