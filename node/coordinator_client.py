"""The node's side of the Coordinator service: registration, heartbeats, plans."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import grpc

from fedcredit.error_catalog import error_from_rpc
from fedcredit.errors import ErrorCode, FedCreditError
from fedcredit.protocol import Purpose, SignedPlan
from fedcredit.serde import public_key_to_pb, signed_plan_from_pb
from fedcredit.transport import create_channel
from mpc.paillier import PaillierPublicKey
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc

log = logging.getLogger(__name__)
Reply = TypeVar("Reply")


class CoordinatorClient:
    def __init__(self, address: str, member_id: str, token: str, timeout_ms: int) -> None:
        self._channel = create_channel(address)
        self._stub = coordinator_pb2_grpc.CoordinatorStub(self._channel)
        self._member_id = member_id
        self._token = token
        self._timeout_s = timeout_ms / 1000

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., Reply], request: object) -> Reply:
        try:
            return method(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            error = error_from_rpc(exc, default=ErrorCode.COORDINATOR_UNAVAILABLE)
            if error.code in (ErrorCode.NODE_UNAVAILABLE, ErrorCode.DEADLINE_EXCEEDED):
                error = FedCreditError(error.detail, code=ErrorCode.COORDINATOR_UNAVAILABLE)
            raise error from None

    def register(self, display_name: str, endpoint: str, key: PaillierPublicKey) -> int:
        reply = self._call(
            self._stub.Register,
            coordinator_pb2.RegisterRequest(
                member_id=self._member_id,
                display_name=display_name,
                endpoint=endpoint,
                paillier_public_key=public_key_to_pb(key),
                registration_token=self._token,
            ),
        )
        return reply.heartbeat_interval_ms

    def heartbeat(self) -> None:
        self._call(
            self._stub.Heartbeat,
            coordinator_pb2.HeartbeatRequest(
                member_id=self._member_id, registration_token=self._token
            ),
        )

    def plan(self, model_version: str, purpose: Purpose) -> SignedPlan:
        reply = self._call(
            self._stub.PlanEvaluation,
            coordinator_pb2.PlanRequest(
                requester_id=self._member_id,
                model_version=model_version,
                purpose=purpose.value,
                registration_token=self._token,
            ),
        )
        return signed_plan_from_pb(reply)


class Membership:
    """Keeps this node registered: registers (retrying while the coordinator is down), then
    heartbeats; re-registers if the coordinator forgot it."""

    def __init__(
        self,
        client: CoordinatorClient,
        display_name: str,
        endpoint: str,
        key: PaillierPublicKey,
        retry_s: float = 0.5,
    ) -> None:
        self._client = client
        self._args = (display_name, endpoint, key)
        self._retry_s = retry_s
        self._stop = threading.Event()
        self.registered = threading.Event()
        self._thread = threading.Thread(target=self._run, name="membership", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        interval_s = self._retry_s
        while not self._stop.is_set():
            try:
                if not self.registered.is_set():
                    interval_s = self._client.register(*self._args) / 1000
                    self.registered.set()
                    log.info("registered with the coordinator")
                else:
                    self._client.heartbeat()
            except FedCreditError as exc:
                if exc.code is ErrorCode.UNKNOWN_MEMBER:
                    self.registered.clear()
                log.warning("coordinator: %s (%s); retrying", exc.detail, exc.code.value)
                self._stop.wait(self._retry_s)
                continue
            self._stop.wait(interval_s)
