"""``fedcredit train local``: every party as its own process on loopback, from plain CSV files.

For experiments and benchmarks: the launcher makes a throwaway session CA and one mutual-TLS
identity per party (so the wire is the real one), starts the arbiter, the guest (the file with
the label column) and the hosts, waits, and — only when every party finished — writes the model
(each party's slice, a manifest with metrics and data fingerprints) and the report: metrics
table, ROC and KS plots, and a JSON summary. Because it holds every file, the launcher can also
fit the *pooled* reference model on the same bins and split, which the network itself never can.
If any party fails, the others are stopped and nothing is written but the logs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedcredit.clock import system_clock
from fedcredit.errors import (
    ErrorCode,
    FedCreditError,
    TrainingAbortedError,
    TrainingDataError,
)
from fedcredit.files import write_atomic
from fedcredit.launcher import ManagedProcess, fedcredit_command, spawn
from fedcredit.tls import TlsFiles
from fedcredit.training_spec import ARBITER, BinningSpec, PartySpec, SessionSpec
from mpc.pki import CertRole, certificate_to_pem, create_ca, issue_certificate
from mpc.signing import Signer
from mpc.vector_he import EngineName
from scoring.logistic import GdSettings

READY_TIMEOUT_S = 120.0
_NAME = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class LocalTrainingOptions:
    parties: tuple[Path, ...]
    id_column: str
    label_column: str
    out_dir: Path
    engine: EngineName = EngineName.CKKS
    test_fraction: float = 0.3
    valid_fraction: float = 0.2
    binning: BinningSpec = field(default_factory=BinningSpec)
    gd: GdSettings = field(default_factory=GdSettings)
    min_overlap: int = 100
    split_seed: int | None = None
    timeout_s: float = 600.0
    overlap_only: bool = False


@dataclass(frozen=True)
class PartyFile:
    name: str
    role: str
    path: Path


def _party_name(path: Path, taken: set[str]) -> str:
    base = _NAME.sub("-", path.stem.lower()).strip("-")[:40] or "party"
    if len(base) < 2:
        base = f"p-{base}"
    name, k = base, 2
    while name in taken or name == ARBITER:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def plan_parties(paths: Sequence[Path], id_column: str, label_column: str) -> list[PartyFile]:
    """Name the parties and find the guest: the one file whose header has the label column."""
    if len(paths) < 2:
        raise TrainingDataError("training needs at least two party files (a guest and a host)")
    headers = {}
    for path in paths:
        try:
            with path.open(newline="") as handle:
                headers[path] = next(csv.reader(handle), [])
        except FileNotFoundError:
            raise TrainingDataError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TrainingDataError(f"{path}: cannot be read ({type(exc).__name__})") from None
        if id_column not in headers[path]:
            raise TrainingDataError(f"{path.name}: id column {id_column!r} not found")
    guests = [p for p in paths if label_column in headers[p]]
    if len(guests) != 1:
        raise TrainingDataError(
            f"exactly one party file must hold the label column {label_column!r}; "
            f"found {len(guests)}"
        )
    taken: set[str] = set()
    return [
        PartyFile(_party_name(p, taken), "guest" if p == guests[0] else "host", p) for p in paths
    ]


def _issue_identities(workdir: Path, names: dict[str, str]) -> None:
    now = system_clock()
    ca = create_ca(f"fedcredit training session {workdir.name}", now, valid_days=7)
    for name, role in names.items():
        signer = Signer.generate()
        cert_role = CertRole.COORDINATOR if role == "arbiter" else CertRole.MEMBER
        cert = issue_certificate(ca, name, cert_role, signer.private_key.public_key(), now, 2)
        TlsFiles(workdir / "parties" / name / "identity").write(
            signer.to_pem(), certificate_to_pem(cert), ca.certificate_pem()
        )


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class SessionRun:
    workdir: Path
    spec: SessionSpec
    parties: list[PartyFile]
    results: dict[str, dict[str, Any]]
    seconds: float


def run_session(options: LocalTrainingOptions,
                on_progress: Callable[[dict[str, Any]], None] | None = None) -> SessionRun:
    """Start every party, wait for all; raise the root-cause error if any party failed."""
    started = time.monotonic()
    parties = plan_parties(options.parties, options.id_column, options.label_column)
    session_id = uuid.uuid4().hex[:12]
    workdir = options.out_dir / "session"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    roles = {p.name: p.role for p in parties} | {ARBITER: "arbiter"}
    cert_roles = {n: ("coordinator" if r == "arbiter" else "member") for n, r in roles.items()}
    _issue_identities(workdir, roles)
    write_atomic(workdir / "parties.json",
                 json.dumps({"session_id": session_id, "roles": cert_roles}).encode())
    procs: dict[str, ManagedProcess] = {}
    try:
        for name in roles:
            args = ["train", "party", "--workdir", str(workdir), "--name", name]
            pf = next((p for p in parties if p.name == name), None)
            if pf is not None:
                args += ["--data", str(pf.path), "--id", options.id_column]
                if pf.role == "guest":
                    args += ["--label", options.label_column]
            if options.overlap_only:
                args.append("--overlap-only")
            procs[name] = spawn(name, fedcredit_command(*args), {}, workdir / "logs")
        ports = _wait_ready(workdir, procs)
        spec = SessionSpec(
            session_id=session_id,
            engine=options.engine,
            parties=tuple(PartySpec(n, r, f"127.0.0.1:{ports[n]}") for n, r in roles.items()),
            gd=options.gd,
            binning=options.binning,
            test_fraction=options.test_fraction,
            valid_fraction=options.valid_fraction,
            min_overlap=options.min_overlap,
            split_seed=options.split_seed,
            timeout_s=options.timeout_s,
        )
        write_atomic(workdir / "session.json", spec.to_json().encode())
        _wait_all(workdir, procs, on_progress)
    finally:
        for proc in procs.values():
            proc.stop(5.0)
    results = {
        name: json.loads((workdir / "parties" / name / "result.json").read_text())
        for name in roles
    }
    return SessionRun(workdir, spec, parties, results, time.monotonic() - started)


def _party_error(workdir: Path, name: str) -> FedCreditError | None:
    path = workdir / "parties" / name / "error.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    try:
        code = ErrorCode(doc["code"])
    except (KeyError, ValueError):
        code = ErrorCode.INTERNAL
    return FedCreditError(f"{name}: {doc.get('detail', '')}", code=code)


def _root_cause(workdir: Path, procs: dict[str, ManagedProcess]) -> FedCreditError:
    errors = [e for n in procs if (e := _party_error(workdir, n)) is not None]
    for error in errors:
        if error.code is not ErrorCode.TRAINING_ABORTED:
            return error
    if errors:
        return errors[0]
    dead = [
        f"{n} ({_exit_text(p.popen.returncode)})"
        for n, p in procs.items() if p.popen.returncode not in (0, None)
    ]
    return TrainingAbortedError(f"{', '.join(dead) or 'a party'} stopped without a report")


def _exit_text(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _wait_ready(workdir: Path, procs: dict[str, ManagedProcess]) -> dict[str, int]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    ports: dict[str, int] = {}
    while len(ports) < len(procs):
        for name, proc in procs.items():
            ready = workdir / "parties" / name / "ready.json"
            if name not in ports and ready.exists():
                ports[name] = int(json.loads(ready.read_text())["port"])
            elif name not in ports and not proc.alive():
                raise _root_cause(workdir, procs)
        if time.monotonic() > deadline:
            raise TrainingAbortedError("parties did not start within "
                                       f"{READY_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
    return ports


def _wait_all(workdir: Path, procs: dict[str, ManagedProcess],
              on_progress: Callable[[dict[str, Any]], None] | None) -> None:
    progress_files = [workdir / "parties" / n / "progress.json" for n in procs]
    last: dict[Path, float] = {}
    while [p.alive() for p in procs.values()].count(True):  # poll every one of them
        failed = [n for n, p in procs.items() if p.popen.returncode not in (None, 0)]
        if failed:
            # Give the others a moment to receive the abort and exit on their own.
            grace = time.monotonic() + 10.0
            while any(p.alive() for p in procs.values()) and time.monotonic() < grace:
                time.sleep(0.1)
            raise _root_cause(workdir, procs)
        if on_progress is not None:
            for path in progress_files:
                try:
                    mtime = path.stat().st_mtime
                except FileNotFoundError:
                    continue
                if last.get(path) != mtime:
                    last[path] = mtime
                    try:
                        on_progress(json.loads(path.read_text()))
                    except (OSError, json.JSONDecodeError):
                        pass
        time.sleep(0.1)
    if any(p.popen.returncode != 0 for p in procs.values()):
        raise _root_cause(workdir, procs)


def write_model(run: SessionRun, out_dir: Path, summary: dict[str, Any]) -> Path:
    """The model directory, atomically: every party's slice plus a manifest."""
    final = out_dir / "model"
    staging = out_dir / ".model.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name, result in run.results.items():
        if "slice" in result:
            write_atomic(staging / f"{name}.json", json.dumps(result["slice"], indent=2).encode())
    manifest = {
        "session_id": run.spec.session_id,
        "engine": run.spec.engine.value,
        "created_unix_ms": system_clock(),
        "parties": [
            {"name": p.name, "role": p.role,
             "features": [f["name"] for f in run.results[p.name]["slice"]["features"]],
             "data_sha256": _fingerprint(p.path)}
            for p in run.parties
        ],
        "metrics": summary,
    }
    write_atomic(staging / "manifest.json", json.dumps(manifest, indent=2).encode())
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    return final
