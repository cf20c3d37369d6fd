"""Wiring: settings → stores, keys, services → a running gRPC server and lender API."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from fastapi import FastAPI

from fedcredit.clock import Clock, system_clock
from fedcredit.errors import ConfigurationError
from fedcredit.files import write_atomic
from fedcredit.http_server import HttpServer
from fedcredit.tls import IdentityHolder, PeerCertificates, TlsIdentity
from fedcredit.transcript import TranscriptInterceptor, training_transcript
from fedcredit.transport import create_server, host_of, set_serving
from mpc.paillier import PaillierKeyPair
from mpc.pseudonym import SubjectKey
from node.api.app import create_app
from node.api.deps import ApiContext, HealthProbe
from node.api.metrics import ApiMetrics
from node.api.portfolio import PORTFOLIO_PATH
from node.api_keys import ApiKeyStore
from node.audit_trail import AuditTrail
from node.blacklist import SubjectFlags
from node.contribution import ContributionService
from node.coordinator_client import CoordinatorClient
from node.directory import MemberDirectory
from node.evaluation import EvaluationService
from node.keystore import load_or_create_keypair
from node.membership import Membership
from node.models import ModelCatalog
from node.obfuscator_pools import ObfuscatorPools
from node.portfolio import PortfolioService
from node.portfolio_hop import PortfolioHop
from node.portfolio_jobs import JobStore
from node.product_catalog import CatalogCopy, active_in
from node.replay import SeenPlans
from node.reports import EvaluationStore
from node.route import PeerChannels, RouteForwarder
from node.servicer import NodeServicer
from node.settings import NodeSettings
from node.store import open_store
from node.training.member_session import MemberTraining, TrainingRole
from proto.v1 import node_pb2, node_pb2_grpc
from scoring.lending_policy import LendingPolicy, PolicyError, default_policy, load_policy

log = logging.getLogger(__name__)
HTTP_STARTUP_TIMEOUT_S = 10.0
SERVICE_NAME = node_pb2.DESCRIPTOR.services_by_name["Node"].full_name


@dataclass
class NodeRuntime:
    settings: NodeSettings
    grpc_server: grpc.Server
    grpc_port: int
    app: FastAPI
    membership: Membership
    closers: list[Callable[[], None]] = field(default_factory=list)
    http: HttpServer | None = None
    stopped: bool = False

    @property
    def http_port(self) -> int:
        return self.http.bound_port if self.http is not None else 0

    def bind_http(self) -> int:
        assert self.http is not None
        return self.http.bind()

    def serve_http_forever(self) -> None:
        """Serve the API in this thread until SIGINT/SIGTERM (CLI use)."""
        assert self.http is not None
        self.http.bind()
        self.write_ready_file()
        self.http.serve_forever()

    def start_http_in_thread(self) -> int:
        """Serve the API from a background thread (tests, embedded use); returns the port."""
        assert self.http is not None
        return self.http.start_in_thread()

    def write_ready_file(self) -> None:
        if self.settings.ready_file is not None:
            doc = {"grpc_port": self.grpc_port, "http_port": self.http_port}
            write_atomic(self.settings.ready_file, json.dumps(doc).encode())

    def stop(self) -> None:
        """Stop serving and close everything; safe to call twice."""
        if self.stopped:
            return
        self.stopped = True
        if self.http is not None:
            self.http.stop()
        self.membership.stop()
        self.grpc_server.stop(2).wait()
        for close in reversed(self.closers):
            close()


def start_node(settings: NodeSettings, clock: Clock = system_clock) -> NodeRuntime:
    """Start the gRPC service and membership; the HTTP API is started by the caller."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    identity = IdentityHolder(TlsIdentity.load(settings.identity_files, clock()),
                              settings.identity_files)
    if identity.current.party_id != settings.member_id:
        raise ConfigurationError(f"the identity in {settings.identity_files.directory} is "
                                 f"{identity.current.party_id}'s, not {settings.member_id}'s")
    keypair: PaillierKeyPair = load_or_create_keypair(
        settings.paillier_key_path, settings.paillier_key_bits
    )
    subject_key = SubjectKey.from_hex(settings.subject_key.get_secret_value())
    store = open_store(settings.feature_store_location, settings.member_id)
    active = store.active()
    if active is None:
        log.warning("node %s: no feature snapshot is active; it answers every lookup with "
                    "'no record' until one is loaded (fedcredit node load-features)",
                    settings.member_id)
    else:
        log.info("node %s: serving feature snapshot %s (%d subjects)", settings.member_id,
                 active.snapshot_id, active.subjects)
    reports = EvaluationStore(settings.evaluation_store_path)
    models = ModelCatalog(settings.model_dir, settings.member_id)
    coordinator = CoordinatorClient(
        settings.coordinator_address, identity, settings.coordinator_timeout_ms
    )
    directory = MemberDirectory(identity.current.ca_certificate, coordinator.directory, clock)
    peers = PeerChannels(identity)
    forwarder = RouteForwarder(peers, directory, clock)
    audit = AuditTrail(settings.audit_store_path, settings.member_id, coordinator, directory,
                       clock, flush_interval_s=settings.audit_flush_interval_ms / 1000,
                       sync=settings.audit_outbox_sync)
    flags = SubjectFlags(settings.blacklist_store_path, clock)
    obfuscators = ObfuscatorPools(settings.obfuscator_pool_size,
                                  lambda: directory.requester_keys(settings.member_id))
    contributions = ContributionService(
        member_id=settings.member_id,
        directory=directory,
        store=store,
        models=models,
        forwarder=forwarder,
        allowed_purposes=settings.allowed_purposes,
        seen=SeenPlans(started_ms=clock()),
        audit=audit,
        clock=clock,
        flags=flags,
        obfuscators=obfuscators,
    )
    transcript = ([TranscriptInterceptor(settings.transcript_file)]
                  if settings.transcript_file is not None else [])
    server, port, health = create_server(settings.grpc_bind, identity.server_credentials(),
                                         interceptors=transcript)
    training = MemberTraining(
        settings.member_id,
        TrainingRole(settings.training_enabled, settings.training_labels,
                     settings.training_label_column),
        store, subject_key, identity, settings.model_dir, settings.training_dir,
        host_of(settings.grpc_bind), host_of(settings.coordinator_address), clock,
        [TranscriptInterceptor(training_transcript(settings.transcript_file))]
        if settings.transcript_file is not None else [],
    )
    node_pb2_grpc.add_NodeServicer_to_server(
        NodeServicer(contributions, PeerCertificates(identity.current.ca_certificate), directory,
                     clock, training, PortfolioHop(
                         settings.member_id, contributions, store, models, forwarder,
                         settings.allowed_purposes, audit, flags, clock)),
        server,
    )
    server.start()
    set_serving(health, [SERVICE_NAME])
    endpoint = settings.advertise_endpoint or f"{host_of(settings.grpc_bind)}:{port}"
    products = CatalogCopy(coordinator.products, active_in(directory),
                           settings.product_refresh_ms)
    membership = Membership(
        coordinator, directory, identity, settings.display_name or settings.member_id, endpoint,
        keypair.public, renew_before_ms=settings.renew_before_days * 86_400_000, clock=clock,
        products=products,
    )
    membership.start()
    audit.start()
    obfuscators.start()
    policy = lending_policy_from(settings.lending_policy)
    evaluations = EvaluationService(
        member_id=settings.member_id,
        subject_key=subject_key,
        keypair=keypair,
        identity=identity,
        contributions=contributions,
        audit=audit,
        coordinator=coordinator,
        forwarder=forwarder,
        store=store,
        models=models,
        reports=reports,
        model_version=settings.model_version,
        allowed_purposes=settings.allowed_purposes,
        clock=clock,
        policy=policy,
        products=products,
    )
    portfolio_jobs = JobStore(settings.portfolio_dir)
    portfolios = PortfolioService(
        member_id=settings.member_id,
        subject_key=subject_key,
        identity=identity,
        contributions=contributions,
        audit=audit,
        coordinator=coordinator,
        forwarder=forwarder,
        store=store,
        models=models,
        flags=flags,
        jobs=portfolio_jobs,
        model_version=settings.model_version,
        allowed_purposes=settings.allowed_purposes,
        clock=clock,
        max_subjects=settings.portfolio_max_subjects,
        chunks_in_flight=settings.portfolio_chunks_in_flight,
        chunk_subjects=settings.portfolio_chunk_subjects,
    )
    api_keys = ApiKeyStore(settings.api_key_store_path, clock)
    api_workers = ThreadPoolExecutor(settings.api_workers, thread_name_prefix="lender-api")
    if not api_keys.list():
        log.warning("node %s: no lender API keys yet; create one with `fedcredit node api-keys "
                    "create`", settings.member_id)
    context = ApiContext(
        evaluations=evaluations,
        portfolios=portfolios,
        api_keys=api_keys,
        metrics=ApiMetrics(),
        health=HealthProbe(
            member_id=settings.member_id,
            registered=membership.registered.is_set,
            subjects=store.count,
            catalog_version=lambda: products.version,
        ),
        clock=clock,
        blocking=api_workers,
    )
    app = create_app(context, settings.max_request_bytes,
                     {PORTFOLIO_PATH: settings.portfolio_max_request_bytes})
    log.info("node %s: gRPC on port %d, advertised as %s", settings.member_id, port, endpoint)
    return NodeRuntime(
        settings=settings,
        grpc_server=server,
        grpc_port=port,
        app=app,
        membership=membership,
        closers=[portfolios.close, portfolio_jobs.close, obfuscators.stop, store.close,
                 reports.close, flags.close, forwarder.close, peers.close, coordinator.close,
                 api_keys.close, audit.stop, api_workers.shutdown],
        http=HttpServer(app, settings.http_host, settings.http_port, "lender API"),
    )


def lending_policy_from(path: Path | None) -> LendingPolicy:
    if path is None:
        return default_policy()
    try:
        return load_policy(path.read_text(), path.name)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the lending policy {path}: {exc.strerror}"
                                 ) from None
    except PolicyError as exc:
        raise ConfigurationError(str(exc)) from None
