"""A member node's part in a training session the coordinator runs.

The coordinator calls ``Node.JoinTraining`` with the session spec (party names, roles,
hyper-parameters) and its own training port. The member checks that it takes part in training
(``FEDCREDIT_NODE_TRAINING_ENABLED``) and is named in the spec, builds its table from its active
feature snapshot (the guest adds its labels file), starts a mutual-TLS training server for the
session and answers with its port; a failure there is the reply. The session then runs in a
background thread: the coordinator (the arbiter) sends the parties' addresses, the member runs
its role, writes its own slice into its model directory as ``<version>.json`` and tells the
arbiter the slice's SHA-256, feature names and training-data fingerprint (the guest adds its
test metrics). Only then can the coordinator register the model. One session at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from fedcredit.clock import Clock
from fedcredit.errors import (
    ConflictError,
    FedCreditError,
    InvalidRequestError,
    PermissionDeniedError,
    TrainingDataError,
)
from fedcredit.federation import Mailbox, Peer, pack, unpack
from fedcredit.federation_grpc import (
    GrpcTransport,
    PartyAddress,
    TrainingServer,
    host_port,
    party_roles,
    start_training_server,
)
from fedcredit.files import write_atomic, write_json
from fedcredit.tls import IdentityHolder
from fedcredit.training_spec import DONE_TAG, ROSTER_TAG, SessionSpec
from mpc.pki import CertRole
from mpc.pseudonym import SubjectKey
from node.store import FeatureStore
from node.training.member_data import MemberTable, member_table
from node.training.roles import run_role

log = logging.getLogger(__name__)
#: A new session waits this long for the previous one to finish closing.
FINISH_WAIT_S = 5.0
#: The test metrics the guest reports to the registry (not its book's default rate).
REPORTED_METRICS = ("auc", "ks", "n")


def slice_bytes(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class TrainingRole:
    """What this member lets the alliance do with its data."""

    enabled: bool
    labels: Path | None
    label_column: str


class MemberTraining:
    def __init__(
        self, member_id: str, role: TrainingRole, store: FeatureStore, key: SubjectKey,
        identity: IdentityHolder, model_dir: Path, work_dir: Path, bind_host: str,
        coordinator_host: str, clock: Clock,
        interceptors: Sequence[grpc.ServerInterceptor] = (),
    ) -> None:
        self._member_id = member_id
        self._role = role
        self._store = store
        self._key = key
        self._identity = identity
        self._model_dir = model_dir
        self._work_dir = work_dir
        self._bind_host = bind_host
        self._coordinator_host = coordinator_host
        self._clock = clock
        self._interceptors = tuple(interceptors)
        self._lock = threading.Lock()
        self._running: str | None = None
        self.last_thread: threading.Thread | None = None

    def join(self, spec: SessionSpec, arbiter_port: int) -> tuple[int, int]:
        """Accept or refuse the session; returns (training port, rows in the table)."""
        if not self._role.enabled:
            raise PermissionDeniedError(
                f"{self._member_id} does not take part in federated training "
                "(FEDCREDIT_NODE_TRAINING_ENABLED is false)")
        if self._member_id not in spec.names:
            raise InvalidRequestError(f"{self._member_id} is not a party of this session")
        if not 0 < arbiter_port < 65536:
            raise InvalidRequestError("the arbiter's port is invalid")
        mine = spec.party(self._member_id).role
        if mine not in ("guest", "host"):
            raise InvalidRequestError(f"a member cannot play the {mine} role")
        finishing = self.last_thread
        if finishing is not None:  # a session that just failed is still closing: let it
            finishing.join(FINISH_WAIT_S)
        with self._lock:
            if self._running is not None:
                raise ConflictError(f"{self._member_id} is already training in session "
                                    f"{self._running}")
            self._running = spec.session_id
        try:
            table = self._table(mine)
            mailbox = Mailbox(self._member_id)
            server = start_training_server(host_port(self._bind_host, 0), spec.session_id, mailbox,
                                           self._identity, party_roles(spec), self._clock,
                                           self._interceptors)
        except BaseException:
            with self._lock:
                self._running = None
            raise
        for warning in table.table.warnings:
            log.warning("training %s: %s", spec.session_id, warning)
        thread = threading.Thread(
            target=self._session, args=(spec, table, mailbox, server, arbiter_port),
            name=f"training-{spec.session_id}", daemon=True)
        self.last_thread = thread
        thread.start()
        return server.port, table.table.rows

    def _table(self, role: str) -> MemberTable:
        if role == "guest":
            if self._role.labels is None:
                raise TrainingDataError(
                    f"{self._member_id} holds no labels (FEDCREDIT_NODE_TRAINING_LABELS): it "
                    "cannot be the guest")
            return member_table(self._store, self._role.labels, self._role.label_column,
                                self._key)
        return member_table(self._store)

    def _session(self, spec: SessionSpec, table: MemberTable, mailbox: Mailbox,
                 server: TrainingServer, arbiter_port: int) -> None:
        session_dir = self._work_dir / spec.session_id
        arbiter = spec.arbiter
        parties = party_roles(spec)
        parties[arbiter] = PartyAddress(host_port(self._coordinator_host, arbiter_port),
                                        CertRole.COORDINATOR)
        # Until the roster arrives only the arbiter's address is known.
        transport = GrpcTransport(spec.session_id, self._identity,
                                  {arbiter: parties[arbiter]}, spec.timeout_s)
        peer = Peer(self._member_id, spec.names, mailbox, transport, spec.timeout_s,
                    transport.is_alive)
        try:
            meta, _ = unpack(peer.recv(arbiter, ROSTER_TAG))
            transport = self._with_roster(spec, meta, parties, transport)
            peer = Peer(self._member_id, spec.names, mailbox, transport, spec.timeout_s,
                        transport.is_alive)
            result = run_role(peer, spec, table.table, progress=self._progress(session_dir))
            self._finish(peer, spec, table, result, session_dir)
        except BaseException as exc:
            peer.abort_all(exc)
            code = exc.code.value if isinstance(exc, FedCreditError) else "INTERNAL"
            detail = exc.detail if isinstance(exc, FedCreditError) else type(exc).__name__
            if not isinstance(exc, FedCreditError):
                log.exception("training session %s failed", spec.session_id)
            else:
                log.error("training session %s: %s: %s", spec.session_id, code, detail)
            write_json(session_dir / "error.json", {"code": code, "detail": detail})
        finally:
            transport.close()
            server.stop(0.5)
            with self._lock:
                self._running = None

    def _with_roster(self, spec: SessionSpec, meta: dict[str, Any],
                     parties: dict[str, PartyAddress], old: GrpcTransport) -> GrpcTransport:
        addresses = meta.get("addresses")
        if not isinstance(addresses, dict) or set(addresses) != set(spec.names) - {spec.arbiter}:
            raise InvalidRequestError("the arbiter's roster does not match the session")
        for name, address in addresses.items():
            if not isinstance(address, str) or not address:
                raise InvalidRequestError("malformed address in the roster")
            if name != spec.arbiter:
                parties[name] = PartyAddress(address, CertRole.MEMBER)
        old.close()
        return GrpcTransport(spec.session_id, self._identity, parties, spec.timeout_s)

    def _progress(self, session_dir: Path) -> Callable[[str], None]:
        def write(message: str) -> None:
            write_json(session_dir / "progress.json", {"message": message})
        return write

    def _finish(self, peer: Peer, spec: SessionSpec, table: MemberTable,
                result: dict[str, Any], session_dir: Path) -> None:
        """Install the slice, keep the private report, tell the arbiter what to register."""
        version = spec.model_version
        document = slice_bytes(result["slice"])
        write_atomic(self._model_dir / f"{version}.json", document)
        private = {k: v for k, v in result.items() if k != "slice"}
        write_json(session_dir / "result.json", private)  # split ids and test scores stay here
        if result["role"] == "guest":  # the lender's own pictures of its held-out split
            from fedcredit.train_report import write_plots

            write_plots(session_dir, np.asarray(result["test_labels"]),
                        {"federated": np.asarray(result["test_scores"])})
        done: dict[str, Any] = {
            "version": version,
            "sha256": hashlib.sha256(document).hexdigest(),
            "features": [f["name"] for f in result["slice"]["features"]],
            "fingerprint": table.fingerprint,
        }
        if result["role"] == "guest":
            guest_only = result.get("guest_only") or {}
            done["metrics"] = {
                **{f"test_{k}": result["metrics"][k] for k in REPORTED_METRICS},
                **{f"guest_only_{k}": guest_only[k] for k in REPORTED_METRICS if k in guest_only},
                "best_epoch": result["best_epoch"], "epochs": len(result["history"]),
                **{f"overlap_{host}": count for host, count in result["overlap"].items()},
            }
        try:
            peer.send(spec.arbiter, DONE_TAG, pack(done))
        except BaseException:
            (self._model_dir / f"{version}.json").unlink(missing_ok=True)  # never registered
            raise
        log.info("training session %s: slice %s installed", spec.session_id, version)
