"""Training runs the coordinator orchestrates over the members' own feature stores.

An admin starts a run (``POST /v1/training-runs``, ``fedcredit train --config``). The
coordinator checks that the guest and hosts are active members, starts its own training server,
invites every party (``Node.JoinTraining``: each builds its table from its active snapshot, the
guest adds its labels, and answers with its training port), sends every party the roster of
addresses, then plays the arbiter (:mod:`coordinator.training.arbiter`). When every party has
installed its slice and reported its digest, the model is registered in the
:class:`~coordinator.model_registry.ModelRegistry` (and promoted if the run asked for it). A
failure anywhere aborts every party and registers nothing; the run says which step failed and
why. Runs are rows of ``training_runs``; a run interrupted by a coordinator restart is marked
failed when the coordinator starts again.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import grpc

from coordinator.authority import COORDINATOR_ID
from coordinator.ledger import AuditLedger
from coordinator.model_registry import ModelDraft, ModelRegistry, SliceRecord
from coordinator.registry import MemberRegistry
from coordinator.training.arbiter import run_arbiter
from fedcredit.audit import EntryDraft, EntryKind
from fedcredit.clock import Clock
from fedcredit.error_catalog import error_from_rpc
from fedcredit.errors import (
    ConflictError,
    ErrorCode,
    FedCreditError,
    InvalidRequestError,
    ResourceNotFoundError,
    UnavailableError,
)
from fedcredit.federation import Mailbox, Peer, pack, unpack
from fedcredit.federation_grpc import (
    GrpcTransport,
    PartyAddress,
    host_port,
    party_roles,
    start_training_server,
)
from fedcredit.sqlite import SqliteDatabase
from fedcredit.tls import IdentityHolder, target_name_option
from fedcredit.training_spec import (
    ARBITER,
    DONE_TAG,
    ROSTER_TAG,
    BinningSpec,
    PartySpec,
    SessionSpec,
)
from fedcredit.transport import create_channel, host_of
from mpc.pki import CertRole
from mpc.vector_he import EngineName
from proto.v1 import node_pb2, node_pb2_grpc
from scoring.logistic import GdSettings

log = logging.getLogger(__name__)
#: A party answers JoinTraining once its table is loaded (the guest reads its labels too).
JOIN_TIMEOUT_S = 300.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS training_runs (
    run_id TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL,
    stage TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    model_version TEXT,
    error_code TEXT,
    error_detail TEXT,
    summary TEXT NOT NULL DEFAULT '{}'
);
"""
_COLUMNS = ("run_id, actor, config, state, stage, created_ms, finished_ms, model_version, "
            "error_code, error_detail, summary")


class RunState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class TrainingRunConfig:
    """What an admin asks for; everything else about the session follows from it."""

    guest: str
    hosts: tuple[str, ...]
    engine: EngineName = EngineName.CKKS
    binning: BinningSpec = field(default_factory=BinningSpec)
    gd: GdSettings = field(default_factory=GdSettings)
    test_fraction: float = 0.3
    valid_fraction: float = 0.2
    min_overlap: int = 100
    split_seed: int | None = None
    timeout_s: float = 600.0
    paillier_bits: int = 2048
    promote: bool = False

    def session(self, session_id: str) -> SessionSpec:
        """The spec every party gets (addresses travel later, in the roster)."""
        parties = (PartySpec(COORDINATOR_ID, ARBITER, ""), PartySpec(self.guest, "guest", ""),
                   *(PartySpec(h, "host", "") for h in self.hosts))
        return SessionSpec(
            session_id=session_id, engine=self.engine, parties=parties, gd=self.gd,
            binning=self.binning, test_fraction=self.test_fraction,
            valid_fraction=self.valid_fraction, min_overlap=self.min_overlap,
            split_seed=self.split_seed, timeout_s=self.timeout_s,
            paillier_bits=self.paillier_bits,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainingRun:
    run_id: str
    actor: str
    config: Mapping[str, Any]
    state: RunState
    stage: str
    created_ms: int
    finished_ms: int | None
    model_version: str | None
    error_code: str | None
    error_detail: str | None
    summary: Mapping[str, Any]


def _run(row: Sequence[Any]) -> TrainingRun:
    return TrainingRun(
        run_id=row[0], actor=row[1], config=json.loads(row[2]), state=RunState(row[3]),
        stage=row[4], created_ms=row[5], finished_ms=row[6], model_version=row[7],
        error_code=row[8], error_detail=row[9], summary=json.loads(row[10]),
    )


def new_session_id(now_ms: int) -> str:
    stamp = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


class TrainingRuns:
    def __init__(self, db: SqliteDatabase, ledger: AuditLedger, members: MemberRegistry,
                 models: ModelRegistry, identity: IdentityHolder, bind_host: str, clock: Clock,
                 interceptors: Sequence[grpc.ServerInterceptor] = ()) -> None:
        self._db = db
        self._ledger = ledger
        self._members = members
        self._models = models
        self._identity = identity
        self._bind_host = bind_host
        self._clock = clock
        self._interceptors = tuple(interceptors)
        self._lock = threading.Lock()
        self.threads: dict[str, threading.Thread] = {}
        # A run that was going when the coordinator stopped cannot resume: say so.
        db.execute(
            "UPDATE training_runs SET state=?, stage=?, error_code=?, error_detail=?, "
            "finished_ms=? WHERE state=?",
            (RunState.FAILED.value, "interrupted", ErrorCode.TRAINING_ABORTED.value,
             "the coordinator stopped during the session; nothing was registered",
             clock(), RunState.RUNNING.value))

    # -- admin ------------------------------------------------------------------------------
    def start(self, config: TrainingRunConfig, actor: str) -> TrainingRun:
        """Check the parties, record the run and start it in the background."""
        now = self._clock()
        self._check_parties(config, now)
        run_id = new_session_id(now)
        spec = config.session(run_id)  # validates roles, fractions, key size
        with self._lock:
            busy = self._db.one("SELECT run_id FROM training_runs WHERE state=?",
                                (RunState.RUNNING.value,))
            if busy is not None:
                raise ConflictError(f"training run {busy[0]} is still running; one at a time")
            with self._db.transaction() as conn:  # the run and its ledger entry, together
                conn.execute(
                    f"INSERT INTO training_runs ({_COLUMNS}) VALUES (?,?,?,?,?,?,NULL,NULL,NULL,"
                    "NULL,'{}')",
                    (run_id, actor, json.dumps(config.to_dict(), default=str),
                     RunState.RUNNING.value, "inviting the parties", now))
                self._ledger.append(EntryDraft(EntryKind.TRAINING_STARTED, actor, {
                    "run_id": run_id, "guest": config.guest, "hosts": list(config.hosts),
                    "engine": config.engine.value, "model_version": spec.model_version,
                }), now_ms=now, conn=conn)
            thread = threading.Thread(target=self._execute, args=(run_id, config, spec, actor),
                                      name=f"training-run-{run_id}", daemon=True)
            self.threads[run_id] = thread
            thread.start()
        return self.get(run_id)

    def get(self, run_id: str) -> TrainingRun:
        row = self._db.one(f"SELECT {_COLUMNS} FROM training_runs WHERE run_id=?", (run_id,))
        if row is None:
            raise ResourceNotFoundError(f"no training run {run_id!r}")
        return _run(row)

    def list(self) -> list[TrainingRun]:
        return [_run(r) for r in self._db.all(
            f"SELECT {_COLUMNS} FROM training_runs ORDER BY created_ms DESC")]

    def wait(self, run_id: str, timeout_s: float | None = None) -> TrainingRun:
        """Until the run has ended (tests, embedded use)."""
        thread = self.threads.get(run_id)
        if thread is not None:
            thread.join(timeout_s)
        return self.get(run_id)

    # -- the run ----------------------------------------------------------------------------
    def _check_parties(self, config: TrainingRunConfig, now_ms: int) -> None:
        names = (config.guest, *config.hosts)
        if not config.hosts:
            raise InvalidRequestError("a training run needs at least one host")
        if len(set(names)) != len(names):
            raise InvalidRequestError("the guest and the hosts must be distinct members")
        for name in names:
            member = self._members.get(name, now_ms)  # unknown → UNKNOWN_MEMBER
            if not member.plannable:
                raise UnavailableError(f"{name} is not an active, reachable member "
                                       f"({member.membership.value}, {member.status.value})")

    def _stage(self, run_id: str, stage: str) -> None:
        self._db.execute("UPDATE training_runs SET stage=? WHERE run_id=?", (stage, run_id))

    def _execute(self, run_id: str, config: TrainingRunConfig, spec: SessionSpec,
                 actor: str) -> None:
        mailbox = Mailbox(COORDINATOR_ID)
        parties = party_roles(spec)
        server = start_training_server(host_port(self._bind_host, 0), spec.session_id, mailbox,
                                       self._identity, parties, self._clock, self._interceptors)
        transport: GrpcTransport | None = None
        try:
            rows = self._invite(spec, server.port, parties)
            transport = GrpcTransport(spec.session_id, self._identity, parties, spec.timeout_s)
            peer = Peer(COORDINATOR_ID, spec.names, mailbox, transport, spec.timeout_s,
                        transport.is_alive)
            roster = pack({"addresses": {n: parties[n].address for n in spec.names
                                         if n != COORDINATOR_ID}})
            for name in (spec.guest, *spec.hosts):
                peer.send(name, ROSTER_TAG, roster)
            self._stage(run_id, "aligning and binning")
            arbiter = run_arbiter(peer, spec, progress=lambda m: self._stage(run_id, m))
            self._stage(run_id, "collecting the slices")
            draft, metrics = self._draft(peer, spec, config)
            record = self._models.register(draft, actor, self._clock())
            if config.promote:
                record = self._models.promote(record.version, actor, self._clock())
            summary = {"rows": rows, "epochs": arbiter.epochs, "best_epoch": arbiter.best_epoch,
                       "seconds": round(arbiter.seconds, 3), "arbiter_bytes_sent":
                       arbiter.bytes_sent, "metrics": metrics, "model_status":
                       record.status.value}
            self._db.execute(
                "UPDATE training_runs SET state=?, stage=?, finished_ms=?, model_version=?, "
                "summary=? WHERE run_id=?",
                (RunState.SUCCEEDED.value, "done", self._clock(), record.version,
                 json.dumps(summary), run_id))
            log.info("training run %s: registered model %s", run_id, record.version)
        except BaseException as exc:
            self._abort(spec, parties, mailbox, transport, exc)
            error = exc if isinstance(exc, FedCreditError) else None
            if error is None:
                log.exception("training run %s failed", run_id)
            self._db.execute(
                "UPDATE training_runs SET state=?, finished_ms=?, error_code=?, error_detail=? "
                "WHERE run_id=?",
                (RunState.FAILED.value, self._clock(),
                 error.code.value if error else ErrorCode.INTERNAL.value,
                 error.detail if error else f"{type(exc).__name__} at the coordinator",
                 run_id))
        finally:
            if transport is not None:
                transport.close()
            server.stop(0.5)

    def _abort(self, spec: SessionSpec, parties: dict[str, PartyAddress], mailbox: Mailbox,
               transport: GrpcTransport | None, error: BaseException) -> None:
        """Tell every party that has joined (its address is known) why the run stops."""
        if transport is None:
            joined = {n: a for n, a in parties.items() if a.address}
            transport = GrpcTransport(spec.session_id, self._identity, joined, 5.0)
        try:
            Peer(COORDINATOR_ID, spec.names, mailbox, transport, 5.0).abort_all(error)
        finally:
            transport.close()

    def _invite(self, spec: SessionSpec, arbiter_port: int,
                parties: dict[str, PartyAddress]) -> dict[str, int]:
        """JoinTraining at every party, guest first; fills in their training addresses."""
        now = self._clock()
        body = spec.to_json()
        rows: dict[str, int] = {}
        for name in (spec.guest, *spec.hosts):
            member = self._members.get(name, now)
            channel = create_channel(member.endpoint, self._identity.channel_credentials(),
                                     target_name_option(name, CertRole.MEMBER))
            try:
                reply = node_pb2_grpc.NodeStub(channel).JoinTraining(
                    node_pb2.JoinTrainingRequest(session_json=body, arbiter_port=arbiter_port),
                    timeout=JOIN_TIMEOUT_S)
            except grpc.RpcError as exc:
                error = error_from_rpc(exc, default=ErrorCode.NODE_UNAVAILABLE)
                raise type(error)(f"{name} did not join: {error.detail}",
                                  code=error.code) from None
            finally:
                channel.close()
            parties[name] = PartyAddress(host_port(host_of(member.endpoint), reply.port),
                                         CertRole.MEMBER)
            rows[name] = int(reply.rows)
        return rows

    def _draft(self, peer: Peer, spec: SessionSpec, config: TrainingRunConfig
               ) -> tuple[ModelDraft, dict[str, float]]:
        version = spec.model_version
        slices: list[SliceRecord] = []
        fingerprints: dict[str, str] = {}
        metrics: dict[str, float] = {}
        for name in (spec.guest, *spec.hosts):
            meta, _ = unpack(peer.recv(name, DONE_TAG))
            try:
                if meta["version"] != version:
                    raise ValueError("wrong version")
                slices.append(SliceRecord(
                    member_id=name, role=spec.party(name).role, sha256=str(meta["sha256"]),
                    features=tuple(str(f) for f in meta["features"])))
                fingerprints[name] = str(meta["fingerprint"])
                if name == spec.guest:
                    metrics = {str(k): float(v) for k, v in meta["metrics"].items()}
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise InvalidRequestError(f"{name} reported a malformed slice "
                                          f"({type(exc).__name__})") from exc
        draft = ModelDraft(version=version, requester_id=spec.guest, engine=config.engine.value,
                           session_id=spec.session_id, slices=tuple(slices), metrics=metrics,
                           fingerprints=fingerprints)
        return draft, metrics
