"""Joining the alliance: make an identity key, file a join request, collect the certificate.

The key never leaves the node: the request carries a CSR, and the admins approve the key by its
fingerprint, which the institution reads out to them over another channel. Running the command
again resumes the same request (same key, same fingerprint) until it is decided.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import grpc

from fedcredit.errors import ConflictError, PermissionDeniedError
from fedcredit.files import write_json, write_secret
from fedcredit.tls import TlsFiles, TlsIdentity, server_only_channel_credentials, target_name_option
from fedcredit.transport import create_channel
from mpc.pki import CertRole, create_csr, load_certificate
from mpc.signing import Signer
from node.coordinator_client import coordinator_error
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc

PENDING_KEY = "pending.key"
PENDING_REQUEST = "join-request.json"


class JoinState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"


@dataclass(frozen=True)
class JoinProgress:
    state: JoinState
    request_id: str
    fingerprint: str
    approvals: int
    approvals_required: int
    admin_approved: bool


class JoinClient:
    """The applicant's side of the Enrollment service (server-authenticated TLS only)."""

    def __init__(self, address: str, ca_pem: bytes, timeout_s: float = 5.0) -> None:
        self._channel = create_channel(address, server_only_channel_credentials(ca_pem),
                                       target_name_option("coordinator", CertRole.COORDINATOR))
        self._stub = coordinator_pb2_grpc.EnrollmentStub(self._channel)
        self._timeout_s = timeout_s

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., coordinator_pb2.JoinTicket],
              request: object) -> coordinator_pb2.JoinTicket:
        try:
            return method(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise coordinator_error(exc) from None

    def request(self, csr_pem: bytes, display_name: str,
                contact: str) -> coordinator_pb2.JoinTicket:
        return self._call(self._stub.RequestToJoin, coordinator_pb2.JoinRequest(
            csr_pem=csr_pem, display_name=display_name, contact=contact))

    def status(self, request_id: str) -> coordinator_pb2.JoinTicket:
        return self._call(self._stub.GetJoinStatus,
                          coordinator_pb2.JoinStatusRequest(request_id=request_id))


def _progress(ticket: coordinator_pb2.JoinTicket, state: JoinState) -> JoinProgress:
    return JoinProgress(state, ticket.request_id, ticket.key_fingerprint, ticket.approvals,
                        ticket.approvals_required, ticket.admin_approved)


class Applicant:
    """One institution's join, resumable across runs through files in its identity dir."""

    def __init__(self, member_id: str, files: TlsFiles, client: JoinClient, ca_pem: bytes,
                 clock: Callable[[], int]) -> None:
        self._member_id = member_id
        self._files = files
        self._client = client
        self._ca_pem = ca_pem
        self._clock = clock
        load_certificate(ca_pem)  # a typed error now, not a TLS failure later

    @property
    def _pending_key(self) -> Signer:
        path = self._files.directory / PENDING_KEY
        if not path.exists():
            write_secret(path, Signer.generate().to_pem())
        return Signer.from_pem(path.read_bytes())

    def step(self, display_name: str, contact: str) -> JoinProgress:
        """File the request (or look it up) once; install the certificate if it was approved."""
        if self._files.exists():
            raise ConflictError(f"{self._files.directory} already holds an alliance identity")
        signer = self._pending_key
        saved = self._files.directory / PENDING_REQUEST
        if saved.exists():
            ticket = self._client.status(json.loads(saved.read_text())["request_id"])
        else:
            ticket = self._client.request(create_csr(self._member_id, signer), display_name,
                                          contact)
            write_json(saved, {"request_id": ticket.request_id,
                               "key_fingerprint": ticket.key_fingerprint})
        if ticket.state == coordinator_pb2.JOIN_STATE_REJECTED:
            saved.unlink(missing_ok=True)
            (self._files.directory / PENDING_KEY).unlink(missing_ok=True)
            raise PermissionDeniedError(f"the join request was rejected: {ticket.reason}")
        if ticket.state != coordinator_pb2.JOIN_STATE_APPROVED:
            return _progress(ticket, JoinState.PENDING)
        identity = TlsIdentity.from_pems(signer.to_pem(), ticket.certificate_pem, self._ca_pem,
                                         self._clock())
        self._files.write(identity.key_pem, identity.certificate_pem, identity.ca_pem)
        saved.unlink(missing_ok=True)
        (self._files.directory / PENDING_KEY).unlink(missing_ok=True)
        return _progress(ticket, JoinState.APPROVED)

    def wait(self, display_name: str, contact: str, timeout_s: float, poll_s: float,
             on_progress: Callable[[JoinProgress], None]) -> JoinProgress:
        deadline = time.monotonic() + timeout_s
        last: JoinProgress | None = None
        while True:
            progress = self.step(display_name, contact)
            if progress != last:
                on_progress(progress)
                last = progress
            if progress.state is JoinState.APPROVED:
                return progress
            if time.monotonic() >= deadline:
                return progress
            time.sleep(poll_s)
