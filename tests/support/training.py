"""Run a whole training session in one process (threads, in-process or gRPC transport)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from coordinator.training.arbiter import run_arbiter
from fedcredit.federation import LocalTransport, Mailbox, Peer, Transport
from fedcredit.training_spec import BinningSpec, PartySpec, SessionSpec
from mpc.vector_he import EngineName
from node.training.guest import run_guest
from node.training.host import run_host
from node.training.party_data import PartyTable, from_frame
from scoring.logistic import GdSettings

ROOT = Path(__file__).resolve().parents[2]
UCI = ROOT / "data" / "uci"


def uci_frames(rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    guest = pd.read_csv(UCI / "default_credit_hetero_guest.csv", dtype=str, nrows=rows)
    host = pd.read_csv(UCI / "default_credit_hetero_host.csv", dtype=str, nrows=rows)
    return guest, host


def make_spec(engine: EngineName, hosts: list[str], **overrides: Any) -> SessionSpec:
    parties = [PartySpec("guest", "guest", ""), PartySpec("arbiter", "arbiter", "")]
    parties += [PartySpec(h, "host", "") for h in hosts]
    base: dict[str, Any] = {
        "session_id": "test", "engine": engine, "parties": tuple(parties),
        "binning": BinningSpec(engine="exact", min_bin_size=30), "split_seed": 11,
        "gd": GdSettings(max_epochs=12), "timeout_s": 60.0,
    }
    base.update(overrides)
    return SessionSpec(**base)


@dataclass
class SessionOutcome:
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)


def run_in_process(
    spec: SessionSpec, guest: PartyTable, hosts: Mapping[str, PartyTable],
    transport: LocalTransport | None = None,
    before_host: Callable[[str, Peer], None] | None = None,
) -> SessionOutcome:
    transport = transport or LocalTransport()
    peers = {}
    for name in spec.names:
        transport.mailboxes[name] = Mailbox(name)
        peers[name] = Peer(name, spec.names, transport.mailboxes[name], transport,
                           spec.timeout_s, transport.is_alive)
    return _run_threads(spec, guest, hosts, peers, before_host)


def _run_threads(spec: SessionSpec, guest: PartyTable, hosts: Mapping[str, PartyTable],
                 peers: Mapping[str, Peer],
                 before_host: Callable[[str, Peer], None] | None = None) -> SessionOutcome:
    outcome = SessionOutcome()

    def run(name: str, job: Callable[[], Any]) -> None:
        try:
            outcome.results[name] = job()
        except BaseException as exc:
            outcome.errors[name] = exc
            peers[name].abort_all(exc)

    jobs: dict[str, Callable[[], Any]] = {
        spec.arbiter: lambda: run_arbiter(peers[spec.arbiter], spec),
        spec.guest: lambda: run_guest(peers[spec.guest], spec, guest),
    }
    for name, table in hosts.items():
        def host_job(name: str = name, table: PartyTable = table) -> Any:
            if before_host is not None:
                before_host(name, peers[name])
            return run_host(peers[name], spec, table)

        jobs[name] = host_job
    threads = [threading.Thread(target=run, args=(n, j), daemon=True) for n, j in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=spec.timeout_s * 3)
    return outcome


def run_with_transports(spec: SessionSpec, guest: PartyTable, hosts: Mapping[str, PartyTable],
                        transports: Mapping[str, Transport], mailboxes: Mapping[str, Mailbox],
                        alive: Mapping[str, Callable[[str], bool]]) -> SessionOutcome:
    peers = {
        name: Peer(name, spec.names, mailboxes[name], transports[name], spec.timeout_s,
                   alive[name])
        for name in spec.names
    }
    return _run_threads(spec, guest, hosts, peers)


def table(frame: pd.DataFrame, name: str, label: str | None = None) -> PartyTable:
    return from_frame(frame, name, "id", label)
