"""One party of a training session as its own process (``fedcredit train party``).

Start-up: load the party's table (guest and hosts) before anything else, so bad data fails
fast; start the Training gRPC server on a free loopback port; write ``ready.json`` with the
port; wait for the launcher's ``session.json`` (the spec with every party's address); run the
role. On success the party writes ``result.json`` (its own slice, and for the guest its private
metrics); on failure ``error.json`` with the stable code, after telling the other parties.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fedcredit.clock import system_clock
from fedcredit.errors import ConfigurationError, FedCreditError, TrainingAbortedError
from fedcredit.federation import Mailbox, Peer
from fedcredit.federation_grpc import GrpcTransport, PartyAddress, start_training_server
from fedcredit.files import write_atomic
from fedcredit.tls import IdentityHolder, TlsFiles, TlsIdentity
from fedcredit.training_spec import SessionSpec
from fedcredit.transcript import TranscriptInterceptor
from mpc.pki import CertRole
from node.training.party_data import PartyTable, read_csv
from node.training.roles import run_role
from node.training.settings import TrainingPartySettings

log = logging.getLogger(__name__)
STARTUP_TIMEOUT_S = 120.0


def _write_json(path: Path, doc: Any) -> None:
    write_atomic(path, json.dumps(doc, indent=2, default=str).encode())


def _wait_for_spec(path: Path, timeout_s: float) -> SessionSpec:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TrainingAbortedError(f"no session spec at {path} within {timeout_s:.0f} s")
        time.sleep(0.05)
    return SessionSpec.load(path)


def run_party(
    name: str, workdir: Path, data: Path | None, id_column: str | None,
    label_column: str | None, overlap_only: bool = False,
) -> int:
    """The whole life of one party process; returns the exit code."""
    party_dir = workdir / "parties" / name
    table: PartyTable | None = None
    try:
        if data is not None:
            if id_column is None:
                raise ConfigurationError("--id is required for a party with data")
            table = read_csv(data, id_column, label_column)
            for warning in table.warnings:
                log.warning("%s", warning)
        identity = IdentityHolder(TlsIdentity.load(TlsFiles(party_dir / "identity"),
                                                   system_clock()))
        settings = TrainingPartySettings()
        interceptors = (
            [TranscriptInterceptor(settings.transcript_dir / f"{name}.bin")]
            if settings.transcript_dir is not None else []
        )
        mailbox = Mailbox(name)
        roster = json.loads((workdir / "parties.json").read_text())
        roles: dict[str, str] = roster["roles"]
        addresses = {p: PartyAddress("", CertRole(r)) for p, r in roles.items()}
        server = start_training_server("127.0.0.1:0", str(roster["session_id"]), mailbox,
                                       identity, addresses, system_clock, interceptors)
    except (FedCreditError, OSError, KeyError, ValueError, ValidationError) as exc:
        error = exc if isinstance(exc, FedCreditError) else ConfigurationError(str(exc))
        _write_json(party_dir / "error.json", {"code": error.code.value, "detail": error.detail})
        log.error("%s", error.detail)
        return 2
    _write_json(party_dir / "ready.json", {"port": server.port})
    transport: GrpcTransport | None = None
    try:
        spec = _wait_for_spec(workdir / "session.json", STARTUP_TIMEOUT_S)
        parties = {
            p.name: PartyAddress(p.address, CertRole(roles[p.name])) for p in spec.parties
        }
        transport = GrpcTransport(spec.session_id, identity, parties, spec.timeout_s)
        peer = Peer(name, spec.names, mailbox, transport, spec.timeout_s, transport.is_alive)
        try:
            result = _run_role(peer, spec, table, overlap_only, party_dir)
        except BaseException as exc:
            peer.abort_all(exc)
            raise
        _write_json(party_dir / "result.json", result)
        return 0
    except FedCreditError as exc:
        _write_json(party_dir / "error.json", {"code": exc.code.value, "detail": exc.detail})
        log.error("%s: %s", exc.code.value, exc.detail)
        return 3
    except Exception as exc:  # a bug: say so in the report, keep the traceback in the log
        log.exception("unexpected failure")
        _write_json(party_dir / "error.json", {
            "code": "INTERNAL", "detail": f"{type(exc).__name__} at {name} (see its log)"})
        return 4
    finally:
        if transport is not None:
            transport.close()
        server.stop(0.5)


def _run_role(peer: Peer, spec: SessionSpec, table: PartyTable | None, overlap_only: bool,
              party_dir: Path) -> dict[str, Any]:
    if spec.party(peer.name).role == "arbiter":
        from coordinator.training.arbiter import run_arbiter

        return {"role": "arbiter", **asdict(run_arbiter(peer, spec))}
    if table is None:
        raise ConfigurationError(f"{peer.name} needs a data file")
    progress_file = party_dir / "progress.json"

    def progress(message: str) -> None:
        _write_json(progress_file, {"party": peer.name, "message": message})

    return run_role(peer, spec, table, overlap_only, progress)
