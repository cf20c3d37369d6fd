"""Start a coordinator and member nodes as separate processes on loopback.

Used by ``fedcredit demo``, the end-to-end tests and the benchmark, so that all three run the
same topology the same way. Every process binds port 0 and reports its ports through a ready
file; logs go to ``<workdir>/logs``. :meth:`LocalAlliance.stop` terminates everything (SIGTERM,
then SIGKILL after a grace period) and is safe to call twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fedcredit.errors import ConfigurationError
from fedcredit.transport import create_channel
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc

STARTUP_TIMEOUT_S = 60.0


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace_s: float = 8.0) -> int:
        """SIGTERM, then SIGKILL after ``grace_s``; the exit code (negative: killed by signal)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


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


@dataclass
class LocalAlliance:
    """A coordinator and nodes as child processes; use as a context manager."""

    workdir: Path
    nodes: list[NodeSpec]
    subject_key_hex: str
    registration_token: str
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
            "FEDCREDIT_COORDINATOR_INSECURE_DEV": "true",
            "FEDCREDIT_COORDINATOR_BIND": "127.0.0.1:0",
            "FEDCREDIT_COORDINATOR_DATA_DIR": str(data),
            "FEDCREDIT_COORDINATOR_REGISTRATION_TOKEN": self.registration_token,
            "FEDCREDIT_COORDINATOR_HEARTBEAT_INTERVAL_MS": "500",
            "FEDCREDIT_COORDINATOR_STALE_AFTER_MS": "2000",
            "FEDCREDIT_COORDINATOR_PROBE_INTERVAL_MS": "1000",
            "FEDCREDIT_COORDINATOR_READY_FILE": str(data / "ready.json"),
            **self.extra_coordinator_env,
        }

    def node_env(self, spec: NodeSpec, coordinator_port: int) -> dict[str, str]:
        data = self.workdir / spec.member_id
        return {
            "FEDCREDIT_NODE_ENVIRONMENT": "dev",
            "FEDCREDIT_NODE_INSECURE_DEV": "true",
            "FEDCREDIT_NODE_MEMBER_ID": spec.member_id,
            "FEDCREDIT_NODE_DISPLAY_NAME": spec.display_name,
            "FEDCREDIT_NODE_DATA_DIR": str(data),
            "FEDCREDIT_NODE_GRPC_BIND": "127.0.0.1:0",
            "FEDCREDIT_NODE_HTTP_PORT": "0",
            "FEDCREDIT_NODE_COORDINATOR_ADDRESS": f"127.0.0.1:{coordinator_port}",
            "FEDCREDIT_NODE_COORDINATOR_VERIFY_KEY_FILE": str(
                self.workdir / "coordinator" / "plan-verify-key.pem"
            ),
            "FEDCREDIT_NODE_REGISTRATION_TOKEN": self.registration_token,
            "FEDCREDIT_NODE_SUBJECT_KEY": self.subject_key_hex,
            "FEDCREDIT_NODE_API_KEYS": json.dumps([self.api_key]),
            "FEDCREDIT_NODE_MODEL_DIR": str(spec.model_dir),
            "FEDCREDIT_NODE_READY_FILE": str(data / "ready.json"),
            **self.node_env_overrides.get(spec.member_id, {}),
        }

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def coordinator_port(self) -> int:
        assert self.coordinator is not None
        return self.coordinator.ports["grpc_port"]

    def http_url(self, member_id: str) -> str:
        return f"http://127.0.0.1:{self.node_procs[member_id].ports['http_port']}"

    def start(self) -> LocalAlliance:
        logs = self.workdir / "logs"
        env = self.coordinator_env()
        Path(env["FEDCREDIT_COORDINATOR_READY_FILE"]).unlink(missing_ok=True)
        self.coordinator = spawn("coordinator", fedcredit_command("coordinator", "serve"), env,
                                 logs)
        wait_ready(self.coordinator, Path(env["FEDCREDIT_COORDINATOR_READY_FILE"]))
        for spec in self.nodes:
            self.start_node(spec)
        self.wait_registered({s.member_id for s in self.nodes})
        return self

    def load_features(self, spec: NodeSpec) -> None:
        env = {**os.environ, **self.node_env(spec, 0), "PYTHONUNBUFFERED": "1"}
        result = subprocess.run(
            fedcredit_command("node", "load-features", str(spec.features_file)),
            env=env, capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise ConfigurationError(f"{spec.member_id}: load-features failed:\n{result.stderr}")

    def start_node(self, spec: NodeSpec, load: bool = True) -> ManagedProcess:
        if load and spec.features_file is not None:
            self.load_features(spec)
        env = self.node_env(spec, self.coordinator_port)
        ready = Path(env["FEDCREDIT_NODE_READY_FILE"])
        ready.unlink(missing_ok=True)
        proc = spawn(spec.member_id, fedcredit_command("node", "serve"), env, self.workdir / "logs")
        self.node_procs[spec.member_id] = proc
        wait_ready(proc, ready)
        return proc

    def members(self) -> list[coordinator_pb2.Member]:
        channel = create_channel(f"127.0.0.1:{self.coordinator_port}")
        try:
            stub = coordinator_pb2_grpc.CoordinatorStub(channel)
            return list(stub.ListMembers(coordinator_pb2.ListMembersRequest(), timeout=5).members)
        finally:
            channel.close()

    def wait_registered(self, member_ids: set[str], timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            active = {
                m.member_id for m in self.members()
                if m.status == coordinator_pb2.MEMBER_STATUS_ACTIVE
            }
            if member_ids <= active:
                return
            time.sleep(0.1)
        raise ConfigurationError(f"members did not register: {sorted(member_ids)}")

    def stop(self) -> dict[str, int]:
        """Stop every process (nodes first); each one's exit code, 0 when it shut down cleanly."""
        codes = {name: proc.stop() for name, proc in self.node_procs.items()}
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
