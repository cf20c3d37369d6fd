"""Start a coordinator and member nodes as separate processes on loopback.

Used by ``fedcredit demo``, the end-to-end tests and the benchmark, so that all three run the
same topology the same way. Every process binds port 0 and reports its ports through a ready
file; logs go to ``<workdir>/logs``. :meth:`LocalAlliance.stop` terminates everything (SIGTERM,
then SIGKILL after a grace period) and is safe to call twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedcredit.admin_client import AdminClient
from fedcredit.errors import ConfigurationError, FedCreditError

STARTUP_TIMEOUT_S = 60.0
#: How long a stopped process may take to shut down cleanly before it is killed.
STOP_GRACE_S = 8.0
log = logging.getLogger(__name__)


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """SIGTERM, then SIGKILL after ``grace_s``; the exit code (negative: killed by signal)."""
        return stop_all({self.name: self}, grace_s)[self.name]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_all(procs: Mapping[str, ManagedProcess], grace_s: float = STOP_GRACE_S
             ) -> dict[str, int]:
    """SIGTERM to every process at once, then SIGKILL whoever is still up after ``grace_s``
    (so shutting down N processes takes one grace period, not N); each one's exit code."""
    for proc in procs.values():
        if proc.alive():
            proc.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    codes = {}
    for name, proc in procs.items():
        try:
            proc.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s of SIGTERM: killed", name, grace_s)
            proc.popen.kill()
            proc.popen.wait(5)
        codes[name] = proc.popen.returncode
    return codes


def fedcredit_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedcredit.cli", *args]


def spawn(name: str, args: list[str], env: Mapping[str, str], logs: Path) -> ManagedProcess:
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    handle = log_path.open("ab")
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    popen = subprocess.Popen(args, env=full_env, stdout=handle, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    handle.close()
    return ManagedProcess(name=name, popen=popen, log_path=log_path)


def wait_ready(
    proc: ManagedProcess, ready_file: Path, timeout_s: float = STARTUP_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready_file.exists():
            proc.ports = json.loads(ready_file.read_text())
            return
        if not proc.alive():
            raise ConfigurationError(
                f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
            )
        time.sleep(0.05)
    raise ConfigurationError(f"{proc.name} did not become ready:\n{proc.log_tail()}")


@dataclass(frozen=True)
class NodeSpec:
    member_id: str
    display_name: str
    #: A per-subject feature file to load before starting (``node load-features``); None when
    #: the node's store was loaded beforehand (e.g. with a snapshot from ``node ingest``).
    features_file: Path | None
    model_dir: Path
    #: What the node asks for as requester: a version of slices installed by hand in
    #: ``model_dir``, or empty for the coordinator registry's active model.
    model_version: str = ""


@dataclass
class LocalAlliance:
    """A coordinator and nodes as child processes; use as a context manager."""

    workdir: Path
    nodes: list[NodeSpec]
    subject_key_hex: str
    api_key: str
    extra_coordinator_env: dict[str, str] = field(default_factory=dict)
    #: Per-member environment overrides (e.g. an advertised endpoint behind a proxy).
    node_env_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    coordinator: ManagedProcess | None = None
    node_procs: dict[str, ManagedProcess] = field(default_factory=dict)

    # -- environment of each service (also what docker-compose.yml sets) --------------------
    def coordinator_env(self) -> dict[str, str]:
        data = self.workdir / "coordinator"
        return {
            "FEDCREDIT_COORDINATOR_ENVIRONMENT": "dev",
            "FEDCREDIT_COORDINATOR_BIND": "127.0.0.1:0",
            "FEDCREDIT_COORDINATOR_ENROLL_BIND": "127.0.0.1:0",
            "FEDCREDIT_COORDINATOR_ADMIN_BIND": "127.0.0.1:0",
            "FEDCREDIT_COORDINATOR_DATA_DIR": str(data),
            "FEDCREDIT_COORDINATOR_HEARTBEAT_INTERVAL_MS": "500",
            "FEDCREDIT_COORDINATOR_STALE_AFTER_MS": "2000",
            "FEDCREDIT_COORDINATOR_PROBE_INTERVAL_MS": "1000",
            "FEDCREDIT_COORDINATOR_READY_FILE": str(data / "ready.json"),
            **self.extra_coordinator_env,
        }

    def node_env(self, spec: NodeSpec) -> dict[str, str]:
        data = self.workdir / spec.member_id
        ports = self.coordinator.ports if self.coordinator is not None else {}
        return {
            "FEDCREDIT_NODE_ENVIRONMENT": "dev",
            "FEDCREDIT_NODE_MEMBER_ID": spec.member_id,
            "FEDCREDIT_NODE_DISPLAY_NAME": spec.display_name,
            "FEDCREDIT_NODE_DATA_DIR": str(data),
            "FEDCREDIT_NODE_GRPC_BIND": "127.0.0.1:0",
            "FEDCREDIT_NODE_HTTP_PORT": "0",
            "FEDCREDIT_NODE_COORDINATOR_ADDRESS": f"127.0.0.1:{ports.get('grpc_port', 0)}",
            "FEDCREDIT_NODE_COORDINATOR_ENROLL_ADDRESS":
                f"127.0.0.1:{ports.get('enroll_port', 0)}",
            "FEDCREDIT_NODE_CA_FILE": str(self.ca_file),
            "FEDCREDIT_NODE_CONTACT": f"ops@{spec.member_id}.example",
            "FEDCREDIT_NODE_SUBJECT_KEY": self.subject_key_hex,
            "FEDCREDIT_NODE_MODEL_DIR": str(spec.model_dir),
            "FEDCREDIT_NODE_MODEL_VERSION": spec.model_version,
            "FEDCREDIT_NODE_READY_FILE": str(data / "ready.json"),
            **self.node_env_overrides.get(spec.member_id, {}),
        }

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def coordinator_port(self) -> int:
        assert self.coordinator is not None
        return self.coordinator.ports["grpc_port"]

    @property
    def ca_file(self) -> Path:
        return self.workdir / "coordinator" / "ca.crt"

    @property
    def admin_token_file(self) -> Path:
        return self.workdir / "coordinator" / "admin-token"

    def admin(self) -> AdminClient:
        """The admin API, as the alliance's first admin (HTTPS, verified against the CA)."""
        assert self.coordinator is not None
        return AdminClient(f"https://127.0.0.1:{self.coordinator.ports['admin_port']}",
                           self.ca_file, self.admin_token_file.read_text().strip())

    def http_url(self, member_id: str) -> str:
        return f"http://127.0.0.1:{self.node_procs[member_id].ports['http_port']}"

    def run_cli(self, args: list[str], env: Mapping[str, str], what: str,
                stdin: str | None = None) -> str:
        result = subprocess.run(fedcredit_command(*args), env={**os.environ, **env,
                                "PYTHONUNBUFFERED": "1"}, input=stdin, capture_output=True,
                                text=True, check=False)
        if result.returncode != 0:
            raise ConfigurationError(f"{what} failed:\n{result.stderr}{result.stdout}")
        return result.stdout

    def start(self) -> LocalAlliance:
        logs = self.workdir / "logs"
        env = self.coordinator_env()
        if not self.ca_file.exists():
            self.run_cli(["alliance", "init", "--data-dir", env["FEDCREDIT_COORDINATOR_DATA_DIR"],
                          "--name", "demo"], env, "alliance init")
        Path(env["FEDCREDIT_COORDINATOR_READY_FILE"]).unlink(missing_ok=True)
        self.coordinator = spawn("coordinator", fedcredit_command("coordinator", "serve"), env,
                                 logs)
        wait_ready(self.coordinator, Path(env["FEDCREDIT_COORDINATOR_READY_FILE"]))
        for spec in self.nodes:
            self.start_node(spec)
        self.wait_registered({s.member_id for s in self.nodes})
        return self

    def load_features(self, spec: NodeSpec) -> None:
        self.run_cli(["node", "load-features", str(spec.features_file)], self.node_env(spec),
                     f"{spec.member_id}: load-features")

    def admit(self, spec: NodeSpec) -> None:
        """The admission flow, as an institution and an admin would run it: ``node join``
        files the request and waits; the admin approves it through the admin API, quoting the
        key fingerprint the institution reads out; the node installs its certificate."""
        identity = self.workdir / spec.member_id / "identity"
        if (identity / "identity.crt").exists():
            return
        env = self.node_env(spec)
        join = spawn(f"{spec.member_id}-join", fedcredit_command("node", "join", "--wait",
                                                                 "--timeout", "60"),
                     env, self.workdir / "logs")
        request_file = identity / "join-request.json"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not request_file.exists():
            if not join.alive() or time.monotonic() > deadline:
                join.stop()
                raise ConfigurationError(f"{spec.member_id}: node join did not file a request:"
                                         f"\n{join.log_tail()}")
            time.sleep(0.05)
        request = json.loads(request_file.read_text())
        self.admin().call("POST", f"/v1/join-requests/{request['request_id']}/approve",
                          body={"fingerprint": request["key_fingerprint"]})
        try:
            code = join.popen.wait(STARTUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = join.stop()
        if code != 0:
            raise ConfigurationError(f"{spec.member_id}: node join exited {code}:\n"
                                     f"{join.log_tail()}")

    def issue_api_key(self, spec: NodeSpec) -> None:
        """The lender application's key, kept hashed in the node's key store (imported with
        ``node api-keys import`` unless the store already accepts it, e.g. on a re-run)."""
        from node.api_keys import ApiKeyStore, ApiScope

        path = self.workdir / spec.member_id / "api-keys.sqlite3"
        if path.exists():
            store = ApiKeyStore(path)
            try:
                now = int(time.time() * 1000)
                store.authenticate(self.api_key, ApiScope.EVALUATIONS_CREATE, now)
                return
            except FedCreditError:
                pass
            finally:
                store.close()
        name = "lender-" + hashlib.sha256(self.api_key.encode()).hexdigest()[:8]
        self.run_cli(["node", "api-keys", "import", "--name", name,
                      "--scope", "evaluations:create", "--scope", "evaluations:read",
                      "--scope", "inquiries:read"], self.node_env(spec),
                     f"{spec.member_id}: api-keys import", stdin=self.api_key)

    def start_node(self, spec: NodeSpec, load: bool = True) -> ManagedProcess:
        self.admit(spec)
        self.issue_api_key(spec)
        if load and spec.features_file is not None:
            self.load_features(spec)
        env = self.node_env(spec)
        ready = Path(env["FEDCREDIT_NODE_READY_FILE"])
        ready.unlink(missing_ok=True)
        proc = spawn(spec.member_id, fedcredit_command("node", "serve"), env, self.workdir / "logs")
        self.node_procs[spec.member_id] = proc
        wait_ready(proc, ready)
        return proc

    def members(self) -> list[dict[str, Any]]:
        """The member list from the admin API."""
        members: list[dict[str, Any]] = self.admin().call("GET", "/v1/members")
        return members

    def wait_registered(self, member_ids: set[str], timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            active = {
                m["member_id"] for m in self.members()
                if m["status"] == "ACTIVE" and m["membership"] == "ACTIVE" and m["endpoint"]
            }
            if member_ids <= active:
                return
            time.sleep(0.1)
        raise ConfigurationError(f"members did not register: {sorted(member_ids)}")

    def stop(self) -> dict[str, int]:
        """Stop every process (nodes first); each one's exit code, 0 when it shut down cleanly."""
        codes = stop_all(self.node_procs)
        if self.coordinator is not None:
            codes["coordinator"] = self.coordinator.stop()
        return codes

    def __enter__(self) -> LocalAlliance:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
