"""Wiring: settings → database, CA, registry, admission, ledger → running gRPC servers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from coordinator import admission as admission_schema
from coordinator import model_registry as model_registry_schema
from coordinator import policy as policy_schema
from coordinator import product_catalog as product_catalog_schema
from coordinator import registry as registry_schema
from coordinator.admission import AdmissionService
from coordinator.api import AdminContext, create_admin_app
from coordinator.audit_intake import AuditIntake
from coordinator.authority import AuthorityPaths, load_authority
from coordinator.ledger import AuditLedger
from coordinator.model_registry import ModelRegistry
from coordinator.planner import RoutePlanner
from coordinator.policy import PolicyStore
from coordinator.prober import LatencyProber
from coordinator.product_catalog import ProductCatalog
from coordinator.registry import MemberRegistry
from coordinator.servicer import CoordinatorServicer, EnrollmentServicer
from coordinator.settings import CoordinatorSettings
from coordinator.training import runs as training_runs_schema
from coordinator.training.runs import TrainingRuns
from fedcredit.clock import Clock, system_clock
from fedcredit.http_server import HttpServer, TlsFilesForHttp
from fedcredit.sqlite import SqliteDatabase
from fedcredit.tls import IdentityHolder, PeerCertificates
from fedcredit.transcript import TranscriptInterceptor, training_transcript
from fedcredit.transport import create_server, host_of, set_serving
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name
ENROLLMENT_SERVICE_NAME = coordinator_pb2.DESCRIPTOR.services_by_name["Enrollment"].full_name
SCHEMA = (registry_schema.SCHEMA + admission_schema.SCHEMA + policy_schema.SCHEMA
          + model_registry_schema.SCHEMA + training_runs_schema.SCHEMA
          + product_catalog_schema.SCHEMA)


@dataclass
class CoordinatorCore:
    """The coordinator's state and services, without servers (the admin API shares them)."""

    db: SqliteDatabase
    registry: MemberRegistry
    policies: PolicyStore
    admission: AdmissionService
    ledger: AuditLedger
    identity: IdentityHolder
    #: Trained models and each requester's active one; training registers in-process.
    models: ModelRegistry
    #: Training runs the coordinator orchestrates (as the arbiter) over the members' stores.
    training: TrainingRuns
    #: The members' loan products, published by admins, fetched by every node.
    products: ProductCatalog

    def close(self) -> None:
        self.db.close()


def open_core(settings: CoordinatorSettings, clock: Clock = system_clock) -> CoordinatorCore:
    now = clock()
    authority = load_authority(settings.data_dir, now, settings.coordinator_certificate_days)
    db = SqliteDatabase(settings.database_path, SCHEMA)
    ledger = AuditLedger(db, authority.identity.signer)
    registry = MemberRegistry(db, settings.stale_after_ms)
    registry.ensure_coordinator_certificate(authority.identity.certified,
                                            authority.identity.certificate_pem, now)
    policies = PolicyStore(db, settings.initial_policy(), now)
    admission = AdmissionService(registry, policies, authority.ca,
                                 ledger, clock)
    identity = IdentityHolder(authority.identity)
    models = ModelRegistry(db, ledger)
    training = TrainingRuns(
        db, ledger, registry, models, identity, host_of(settings.bind), clock,
        [TranscriptInterceptor(training_transcript(settings.transcript_file))]
        if settings.transcript_file is not None else [])
    return CoordinatorCore(db=db, registry=registry, policies=policies, admission=admission,
                           ledger=ledger, identity=identity, models=models, training=training,
                           products=ProductCatalog(db, ledger, registry))


@dataclass
class RunningCoordinator:
    core: CoordinatorCore
    server: grpc.Server
    port: int
    enrollment_server: grpc.Server
    enrollment_port: int
    prober: LatencyProber
    admin: HttpServer

    @property
    def admin_port(self) -> int:
        return self.admin.bound_port

    def ports(self) -> dict[str, int]:
        return {"grpc_port": self.port, "enroll_port": self.enrollment_port,
                "admin_port": self.admin_port}

    @property
    def registry(self) -> MemberRegistry:
        return self.core.registry

    def stop(self, grace_s: float = 2.0) -> None:
        self.admin.stop()
        self.prober.stop()
        self.enrollment_server.stop(grace_s).wait()
        self.server.stop(grace_s).wait()
        self.core.close()


def start_coordinator(
    settings: CoordinatorSettings, clock: Clock = system_clock
) -> RunningCoordinator:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    core = open_core(settings, clock)
    identity = core.identity
    servicer = CoordinatorServicer(
        registry=core.registry,
        admission=core.admission,
        policies=core.policies,
        models=core.models,
        products=core.products,
        planner=RoutePlanner(),
        identity=identity,
        peers=PeerCertificates(identity.current.ca_certificate),
        intake=AuditIntake(core.ledger),
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        clock=clock,
    )
    transcript = ([TranscriptInterceptor(settings.transcript_file)]
                  if settings.transcript_file is not None else [])
    server, port, health = create_server(settings.bind, identity.server_credentials(),
                                         interceptors=transcript)
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(servicer, server)
    enrollment, enrollment_port, enrollment_health = create_server(
        settings.enroll_bind, identity.server_credentials(require_client_auth=False),
        max_workers=8, interceptors=transcript)
    coordinator_pb2_grpc.add_EnrollmentServicer_to_server(
        EnrollmentServicer(core.admission, identity), enrollment)
    admin_host, _, admin_port = settings.admin_bind.rpartition(":")
    paths = AuthorityPaths(settings.data_dir)
    admin = HttpServer(
        create_admin_app(AdminContext.from_core(core, settings, clock),
                         settings.admin_max_request_bytes),
        admin_host.strip("[]") or "127.0.0.1", int(admin_port or 0), "admin API",
        tls=TlsFilesForHttp(keyfile=paths.identity.key, certfile=paths.identity.certificate))
    admin.bind()
    server.start()
    enrollment.start()
    admin.start_in_thread()
    set_serving(health, [SERVICE_NAME])
    set_serving(enrollment_health, [ENROLLMENT_SERVICE_NAME])
    prober = LatencyProber(core.registry, identity, settings.probe_interval_ms, clock)
    prober.start()
    log.info("coordinator: members on port %d (mutual TLS), enrollment on port %d, admin API "
             "on port %d (HTTPS)", port, enrollment_port, admin.bound_port)
    return RunningCoordinator(core=core, server=server, port=port, enrollment_server=enrollment,
                              enrollment_port=enrollment_port, prober=prober, admin=admin)
