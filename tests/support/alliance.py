"""An alliance run in-process: a real coordinator and real nodes (gRPC + HTTP on port 0)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from coordinator.authority import init_alliance
from coordinator.server import RunningCoordinator, start_coordinator
from coordinator.settings import CoordinatorSettings
from fedcredit.clock import Clock, system_clock
from fedcredit.demo.population import Population, write_member_files
from mpc.pseudonym import SubjectKey
from node.api_keys import ApiKeyStore, ApiScope
from node.feature_loader import load_features
from node.join import Applicant, JoinClient, JoinState
from node.server import NodeRuntime, start_node
from node.settings import NodeSettings
from node.store import open_store

API_KEY = "integration-lender-api-key"


@dataclass
class InProcessAlliance:
    workdir: Path
    population: Population
    subject_key: SubjectKey
    coordinator: RunningCoordinator
    coordinator_settings: CoordinatorSettings
    nodes: dict[str, NodeRuntime] = field(default_factory=dict)

    def url(self, member_id: str) -> str:
        return f"http://127.0.0.1:{self.nodes[member_id].http_port}"

    def node_settings(self, member_id: str, **overrides: Any) -> NodeSettings:
        doc: dict[str, Any] = {
            "environment": "dev",
            "member_id": member_id,
            "data_dir": self.workdir / member_id,
            "grpc_bind": "127.0.0.1:0",
            "http_port": 0,
            "coordinator_address": f"127.0.0.1:{self.coordinator.port}",
            "coordinator_enroll_address": f"127.0.0.1:{self.coordinator.enrollment_port}",
            "ca_file": self.coordinator_settings.ca_certificate_path,
            "subject_key": self.subject_key.secret.hex(),
            "model_dir": self.workdir / "inputs" / member_id / "models",
            "model_version": "v1",  # the population's seed slices, installed by hand
            "coordinator_timeout_ms": 2000,
            # Every node of this alliance shares one process (and its GIL): small pools keep
            # their refill at start-up from crowding out the coordinator's replies.
            "obfuscator_pool_size": 8,
        }
        doc.update(overrides)
        return NodeSettings(**doc)

    def admit(self, member_id: str, **overrides: Any) -> NodeSettings:
        """Take ``member_id`` through the admission flow: its key and CSR, a join request over
        the Enrollment service, an admin's approval quoting the fingerprint, the certificate."""
        settings = self.node_settings(member_id, **overrides)
        if settings.identity_files.exists():
            return settings
        ca_pem = self.coordinator_settings.ca_certificate_path.read_bytes()
        client = JoinClient(settings.coordinator_enroll_address, ca_pem)
        try:
            applicant = Applicant(member_id, settings.identity_files, client, ca_pem,
                                  system_clock)
            pending = applicant.step(member_id, "ops@" + member_id)
            self.coordinator.core.admission.decide(
                pending.request_id, True, "test-admin", fingerprint=pending.fingerprint)
            assert applicant.step(member_id, "").state is JoinState.APPROVED
        finally:
            client.close()
        return settings

    def start_node(
        self, member_id: str, clock: Clock = system_clock, **overrides: Any
    ) -> NodeRuntime:
        settings = self.admit(member_id, **overrides)
        keys = ApiKeyStore(settings.api_key_store_path)
        try:
            if not keys.list():  # the lender app's key, kept through the hashed store
                keys.import_plaintext("tests", API_KEY, list(ApiScope))
        finally:
            keys.close()
        store = open_store(settings.feature_store_location, member_id)
        try:
            load_features(self.workdir / "inputs" / member_id / "features.csv", store,
                          self.subject_key, member_id=member_id,
                          snapshot_root=settings.snapshot_root)
        finally:
            store.close()
        runtime = start_node(settings, clock)
        runtime.start_http_in_thread()
        self.nodes[member_id] = runtime
        return runtime

    def stored_reports(self, member_id: str) -> int:
        """How many evaluation reports the member's node has persisted."""
        count: int = self.nodes[member_id].app.state.context.evaluations._reports.count()
        return count

    def drain_audit_outboxes(self, timeout_s: float = 10) -> None:
        """Until every node's audit outbox is empty: entries of earlier evaluations (sent in
        batches, up to a flush interval later) are in the ledger, and no more are on the way
        unless something new happens."""
        deadline = time.monotonic() + timeout_s
        while any(node.app.state.context.evaluations._audit.pending()
                  for node in self.nodes.values()):
            assert time.monotonic() < deadline, "audit outboxes did not drain"
            time.sleep(0.02)

    def wait_warm(self, timeout_s: float = 30) -> None:
        """Until every node's obfuscator pools are full: the refillers' start-up work (a DJN
        table per key, then the pools) is done, so it does not compete with the first
        evaluations and heartbeats of nodes sharing this one process."""
        deadline = time.monotonic() + timeout_s
        for member, node in self.nodes.items():
            pools = node.app.state.context.evaluations._contributions._obfuscators
            if pools is None:
                continue
            while not (pools.pools() and all(p.full for p in pools.pools())):
                assert time.monotonic() < deadline, f"{member}'s obfuscator pools never filled"
                time.sleep(0.05)

    def wait_active(self, member_ids: set[str], timeout_s: float = 20,
                    heard_since_ms: int = 0) -> None:
        """Until every member in ``member_ids`` is plannable (and, with ``heard_since_ms``,
        has heartbeated since then: a restarted coordinator remembers old heartbeats)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = int(time.time() * 1000)
            active = {m.member_id for m in self.coordinator.registry.members(now)
                      if m.plannable and m.last_heartbeat_ms >= heard_since_ms}
            if member_ids <= active:
                return
            time.sleep(0.05)
        raise AssertionError(f"members not active: {member_ids}")

    def wait_confirmed(self, version: int, timeout_s: float = 10) -> None:
        """Until every online member enforces directory ``version`` (what an admin's suspend
        waits for before it returns)."""
        deadline = time.monotonic() + timeout_s
        while self.coordinator.registry.unconfirmed(version, int(time.time() * 1000)):
            if time.monotonic() > deadline:
                raise AssertionError(f"directory version {version} not confirmed")
            time.sleep(0.05)

    def stop(self) -> None:
        for runtime in self.nodes.values():
            runtime.stop()
        self.coordinator.stop(0)


def start_alliance(
    workdir: Path,
    population: Population,
    subject_key: SubjectKey,
    nodes: dict[str, dict[str, Any]] | None = None,
    **coordinator: Any,
) -> InProcessAlliance:
    """Every member of ``population`` as a real node; ``nodes`` holds per-member keyword
    arguments for :meth:`InProcessAlliance.start_node` (settings overrides, a ``clock``)."""
    write_member_files(population, workdir / "inputs")
    if not (workdir / "coordinator" / "ca" / "ca.key").exists():
        init_alliance(workdir / "coordinator", "test", system_clock())
    settings = CoordinatorSettings(
        environment="dev",
        bind="127.0.0.1:0",
        enroll_bind="127.0.0.1:0",
        admin_bind="127.0.0.1:0",
        data_dir=workdir / "coordinator",
        heartbeat_interval_ms=200,
        stale_after_ms=1500,
        probe_interval_ms=coordinator.pop("probe_interval_ms", 500),
        hop_timeout_ms=coordinator.pop("hop_timeout_ms", 2000),
        **coordinator,
    )
    running = start_coordinator(settings)
    alliance = InProcessAlliance(workdir, population, subject_key, running, settings)
    try:
        for inst in population.institutions:
            member = inst.profile.member_id
            alliance.start_node(member, **(nodes or {}).get(member, {}))
        alliance.wait_active({i.profile.member_id for i in population.institutions})
        alliance.wait_warm()
    except BaseException:
        alliance.stop()
        raise
    return alliance


def consent(days: float = 30, purpose: str = "origination") -> dict[str, str]:
    expires = datetime.now(UTC) + timedelta(days=days)
    return {"purpose": purpose, "expires_at": expires.isoformat(), "reference": "c-1"}


def body(population: Population, index: int, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "applicant": {"id_type": "cn_resident_id", "identifier": population.identifiers[index]},
        "consent": consent(),
        "requested_amount": 20000,
        "term_months": 24,
    }
    doc.update(changes)
    return doc


def member_share(population: Population, member: str, index: int) -> tuple[float, int, int]:
    """One member's plaintext share for subject ``index``: partial logit, debt in cents, and
    whether it has a record (what its node encrypts)."""
    inst = next(i for i in population.institutions if i.profile.member_id == member)
    if not inst.has_record[index]:
        return 0.0, 0, 0
    partial = population.models[member].partial_logit(
        {k: float(v[index]) for k, v in inst.features.items()})
    return partial, int(inst.exposures["outstanding_debt_cents"][index]), 1


def indices_with_records(population: Population, minimum: int) -> list[int]:
    counts = np.sum([inst.has_record for inst in population.institutions], axis=0)
    return [int(i) for i in np.flatnonzero(counts >= minimum)]
