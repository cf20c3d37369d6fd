"""gRPC plumbing shared by every server and client: TLS, limits, health, errors at the edge.

There is no plaintext transport: every server takes TLS credentials (mutual TLS for the
Coordinator and Node services, server-authenticated TLS for enrollment), every channel
names the party it expects at the other end (see :mod:`fedcredit.tls`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedcredit.error_catalog import ERROR_CODE_METADATA_KEY, grpc_status
from fedcredit.errors import ConfigurationError, ErrorCode, FedCreditError

log = logging.getLogger(__name__)

#: Explicit limits on every channel and server. An evaluation message is a few KiB (eight
#: 512-byte ciphertexts and a signed plan); 1 MiB leaves room for TREE fan-in and packing.
MAX_MESSAGE_BYTES = 1 * 1024 * 1024
#: Training moves whole encrypted columns (a CKKS weight set is ~20 MB, a Paillier vector of
#: 20k rows ~10 MB): its own servers and channels allow this much, nothing else does.
MAX_TRAINING_MESSAGE_BYTES = 512 * 1024 * 1024


def _options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.enable_retries", 0),
    ]




def host_of(address: str) -> str:
    """The host part of ``host:port`` / ``[v6]:port``."""
    if address.startswith("["):
        return address[1 : address.index("]")]
    return address.rsplit(":", 1)[0] if ":" in address else address


def create_server(
    bind: str, credentials: grpc.ServerCredentials, *, max_workers: int = 64,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A server bound to ``bind`` (port 0 picks one) with gRPC health checking registered.

    In a CHAIN each hop's handler thread waits while the rest of the route works, so a node
    serves at most ``max_workers`` concurrent evaluations passing through it.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        # so_reuseport off: else a second server on a taken port silently shares it.
        options=[*_options(max_message_bytes), ("grpc.so_reuseport", 0)],
        interceptors=list(interceptors),
    )
    try:
        port = server.add_secure_port(bind, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigurationError(f"cannot bind gRPC server to {bind} (in use or invalid)")
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return server, port, health_servicer


def set_serving(health_servicer: health.HealthServicer, services: Iterable[str]) -> None:
    for name in ("", *services):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


def create_channel(
    target: str, credentials: grpc.ChannelCredentials, server_name: tuple[str, str],
    *, max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> grpc.Channel:
    """A TLS channel to ``target`` that accepts only the party ``server_name`` names
    (:func:`fedcredit.tls.target_name_option`)."""
    return grpc.secure_channel(
        target, credentials, options=[*_options(max_message_bytes), server_name]
    )


def check_health(channel: grpc.Channel, timeout_s: float, service: str = "") -> bool:
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


F = TypeVar("F", bound=Callable[..., Any])


def rpc_edge(method: F) -> F:
    """Servicer-method decorator: typed errors become a status plus the stable code."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except FedCreditError as exc:
            context.set_trailing_metadata(((ERROR_CODE_METADATA_KEY, exc.code.value),))
            context.abort(grpc_status(exc), exc.detail)
        except Exception:
            log.exception("unhandled error in %s", method.__name__)
            context.set_trailing_metadata(((ERROR_CODE_METADATA_KEY, ErrorCode.INTERNAL.value),))
            context.abort(grpc.StatusCode.INTERNAL, "internal error")

    return wrapper  # type: ignore[return-value]
