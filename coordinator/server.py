"""Wiring: settings → registry, planner, signer → a running gRPC server."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from coordinator.planner import PlanningPolicy, RoutePlanner
from coordinator.prober import LatencyProber
from coordinator.registry import MemberRegistry
from coordinator.servicer import CoordinatorServicer
from coordinator.settings import CoordinatorSettings
from fedcredit.clock import Clock, system_clock
from fedcredit.files import write_atomic, write_secret
from fedcredit.transport import create_server, require_plaintext_allowed, set_serving
from mpc.signing import Signer
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name


def load_or_create_signer(settings: CoordinatorSettings) -> Signer:
    path = settings.signing_key_path
    if path.exists():
        signer = Signer.from_pem(path.read_bytes())
    else:
        signer = Signer.generate()
        write_secret(path, signer.to_pem())
        log.info("created plan-signing key %s", path)
    write_atomic(settings.verify_key_path, signer.verifier.to_pem())
    return signer


@dataclass
class RunningCoordinator:
    server: grpc.Server
    port: int
    registry: MemberRegistry
    prober: LatencyProber

    def stop(self, grace_s: float = 2.0) -> None:
        self.prober.stop()
        self.server.stop(grace_s).wait()
        self.registry.close()


def start_coordinator(
    settings: CoordinatorSettings, clock: Clock = system_clock
) -> RunningCoordinator:
    require_plaintext_allowed(settings.insecure_dev, [settings.bind])
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    signer = load_or_create_signer(settings)
    registry = MemberRegistry(settings.registry_path, settings.stale_after_ms)
    planner = RoutePlanner(
        PlanningPolicy(
            plan_ttl_ms=settings.plan_ttl_ms,
            max_plan_ttl_ms=settings.max_plan_ttl_ms,
            hop_timeout_ms=settings.hop_timeout_ms,
            min_answered=settings.min_answered,
            allowed_purposes=settings.allowed_purposes,
        )
    )
    servicer = CoordinatorServicer(
        registry=registry,
        planner=planner,
        signer=signer,
        registration_token=settings.registration_token.get_secret_value(),
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        clock=clock,
        loopback_only=settings.insecure_dev,
    )
    server, port, health = create_server(settings.bind)
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(servicer, server)
    server.start()
    set_serving(health, [SERVICE_NAME])
    prober = LatencyProber(registry, settings.probe_interval_ms, clock)
    prober.start()
    log.info("coordinator listening on port %d", port)
    return RunningCoordinator(server=server, port=port, registry=registry, prober=prober)
