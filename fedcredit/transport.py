"""gRPC plumbing shared by every server and client: limits, health, errors at the edge.

Until the alliance trust plane lands (mutual TLS), the only transport is plaintext gRPC, and
it is allowed only when a service explicitly runs in dev mode with every address on loopback.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable, Iterable
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
_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.enable_retries", 0),
]
#: Without this, a second server on a taken port silently shares it with the first.
_SERVER_OPTIONS = [*_OPTIONS, ("grpc.so_reuseport", 0)]


def host_of(address: str) -> str:
    """The host part of ``host:port`` / ``[v6]:port``."""
    if address.startswith("["):
        return address[1 : address.index("]")]
    return address.rsplit(":", 1)[0] if ":" in address else address


def is_loopback(address: str) -> bool:
    host = host_of(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_plaintext_allowed(insecure_dev: bool, addresses: Iterable[str]) -> None:
    """Refuse to run plaintext gRPC unless explicitly in dev mode and on loopback only."""
    if not insecure_dev:
        raise FedCreditError(
            "mutual TLS is not available yet; set insecure_dev=true (dev only, loopback only)",
            code=ErrorCode.INSECURE_TRANSPORT_REFUSED,
        )
    outside = [a for a in addresses if a and not is_loopback(a)]
    if outside:
        raise FedCreditError(
            "plaintext gRPC refuses non-loopback addresses: " + ", ".join(outside),
            code=ErrorCode.INSECURE_TRANSPORT_REFUSED,
        )


def create_server(
    bind: str, *, max_workers: int = 64
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A server bound to ``bind`` (port 0 picks one) with gRPC health checking registered.

    In a CHAIN each hop's handler thread waits while the rest of the route works, so a node
    serves at most ``max_workers`` concurrent evaluations passing through it.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers), options=_SERVER_OPTIONS
    )
    try:
        port = server.add_insecure_port(bind)
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


def create_channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=_OPTIONS)


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
