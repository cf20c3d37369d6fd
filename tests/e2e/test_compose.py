"""docker-compose.yml and the Dockerfile, checked without a Docker engine so they cannot rot.

The compose file is parsed and every service is run as a local process, the way Docker would
run it in a container:

* ``${VAR:-default}`` interpolation uses the file's own defaults (none may be missing) and
  ``$$`` is a literal ``$``;
* the argv is the service's ``entrypoint`` + ``command`` (or the Dockerfile's ENTRYPOINT/CMD
  where the service sets none), and ``fedcredit`` / ``python`` resolve to shims that run this
  interpreter (``sys.executable -m fedcredit.cli``) - whatever venv runs pytest;
* each named volume is a folder under a temporary directory: every occurrence of a service's
  mount target in its argv, environment and healthcheck is rewritten to that volume's folder,
  and no container path outside a volume may remain (state outside volumes would be lost);
* ``depends_on`` conditions are honoured: ``service_completed_successfully`` waits for exit 0,
  ``service_healthy`` runs the dependency's healthcheck command until it passes.

Then the topology must work: all three members ACTIVE in the coordinator's ListMembers and one
joint evaluation through the bank's REST API answered by both other members. Every process
runs in its own session and is stopped (SIGTERM, like ``docker stop``, then SIGKILL of the
whole group) when the test ends. The ports are fixed by the compose file: if one is already
bound on 127.0.0.1 the test skips and says which.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from fedcredit.transport import create_channel
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
MEMBERS = ("bank", "finco", "shop")
STEP_TIMEOUT_S = 45.0
STOP_GRACE_S = 10.0  # what `docker stop` waits before SIGKILL


# -- compose model --------------------------------------------------------------------------

class ComposeError(AssertionError):
    """The compose file uses something this harness (or Docker) cannot run as written."""


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


def interpolate(text: str, variables: dict[str, str], used: set[str]) -> str:
    """Compose's ``$VAR`` / ``${VAR}`` / ``${VAR:-default}`` / ``${VAR-default}`` / ``$$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        expr = match.group("braced") if match.group("named") is None else match.group("named")
        parsed = _BRACED.fullmatch(expr)
        if parsed is None or "$" in (parsed.group("arg") or ""):
            raise ComposeError(f"unsupported interpolation ${{{expr}}}")
        name, op, arg = parsed.group("name"), parsed.group("op"), parsed.group("arg") or ""
        used.add(name)
        value = variables.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return arg if value is not None else ""
        if value is None or (op == ":?" and not value):
            raise ComposeError(f"${{{expr}}} has no default: the file must run with no .env")
        return value

    return _INTERPOLATION.sub(replace, text)


def interpolate_tree(node: Any, variables: dict[str, str], used: set[str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables, used)
    if isinstance(node, list):
        return [interpolate_tree(item, variables, used) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, variables, used) for key, value in node.items()}
    return node


def as_argv(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)  # compose splits a string command the way a shell would
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return [str(v) for v in value]
    raise ComposeError(f"{what}: expected a string or a list of strings, got {value!r}")


def dockerfile_instruction(name: str) -> list[str] | None:
    """The JSON (exec) form of the last ENTRYPOINT or CMD in the Dockerfile."""
    found = re.findall(rf"^{name}\s+(.+)$", DOCKERFILE.read_text(), re.M)
    if not found:
        return None
    try:
        value = json.loads(found[-1])
    except json.JSONDecodeError as exc:
        raise ComposeError(f"Dockerfile {name} must use the exec (JSON) form") from exc
    return as_argv(value, f"Dockerfile {name}")


@dataclass(repr=False)
class Service:
    name: str
    argv: list[str]
    environment: dict[str, str]
    mounts: dict[str, str]  # container path -> volume name
    read_only: set[str]
    depends_on: dict[str, str]  # service -> condition
    healthcheck: list[str] | None  # argv to run, container paths
    healthcheck_timeout_s: float
    raw: dict[str, Any]

    def __repr__(self) -> str:
        return f"Service({self.name!r})"

    @property
    def member_id(self) -> str | None:
        return self.environment.get("FEDCREDIT_NODE_MEMBER_ID")


def _duration_s(text: str | None, default: float) -> float:
    if not text:
        return default
    total, rest = 0.0, str(text)
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", rest):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total or default


def _environment(raw: Any, service: str) -> dict[str, str]:
    if raw is None:
        return {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    env: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            raise ComposeError(f"{service}: {key} would be taken from the host environment")
        env[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def _mounts(raw: list[Any], service: str, declared: set[str]) -> tuple[dict[str, str], set[str]]:
    mounts: dict[str, str] = {}
    read_only: set[str] = set()
    for item in raw:
        if isinstance(item, str):
            source, target, *mode = item.split(":")
            ro = "ro" in (mode[0].split(",") if mode else [])
        else:
            if item.get("type", "volume") != "volume":
                raise ComposeError(f"{service}: only named volumes are supported: {item}")
            source, target, ro = item["source"], item["target"], bool(item.get("read_only"))
        if source not in declared:
            raise ComposeError(f"{service}: {source!r} is not a declared named volume")
        if target in mounts:
            raise ComposeError(f"{service}: two volumes mounted at {target}")
        mounts[target] = source
        if ro:
            read_only.add(target)
    return mounts, read_only


def _healthcheck(raw: dict[str, Any] | None, service: str) -> list[str] | None:
    if not raw or raw.get("disable"):
        return None
    test = raw["test"]
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    kind, *rest = as_argv(test, f"{service} healthcheck")
    if kind == "NONE":
        return None
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(rest)]
    if kind == "CMD":
        return rest
    raise ComposeError(f"{service}: unknown healthcheck form {kind}")


@dataclass(repr=False)
class Compose:
    services: dict[str, Service]
    volumes: set[str]
    variables_used: set[str]

    def __repr__(self) -> str:
        return f"Compose(services={sorted(self.services)})"

    @property
    def nodes(self) -> list[Service]:
        return [s for s in self.services.values() if s.member_id is not None]

    def service_with_env(self, key: str) -> Service:
        (found,) = [s for s in self.services.values() if key in s.environment]
        return found


def load_compose(variables: dict[str, str] | None = None) -> Compose:
    """Parse and interpolate docker-compose.yml (variables: the would-be shell/.env values)."""
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    used: set[str] = set()
    doc = interpolate_tree(doc, variables or {}, used)
    declared = set(doc.get("volumes") or {})
    image_entrypoint = dockerfile_instruction("ENTRYPOINT") or []
    image_cmd = dockerfile_instruction("CMD") or []
    services: dict[str, Service] = {}
    for name, raw in doc["services"].items():
        if "entrypoint" in raw:  # overriding the entrypoint also drops the image's CMD
            argv = as_argv(raw["entrypoint"], f"{name} entrypoint") + as_argv(
                raw.get("command"), f"{name} command")
        else:
            argv = image_entrypoint + (
                as_argv(raw["command"], f"{name} command") if "command" in raw else image_cmd)
        mounts, read_only = _mounts(raw.get("volumes") or [], name, declared)
        depends = raw.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {dep: {"condition": "service_started"} for dep in depends}
        services[name] = Service(
            name=name,
            argv=argv,
            environment=_environment(raw.get("environment"), name),
            mounts=mounts,
            read_only=read_only,
            depends_on={dep: (spec or {}).get("condition", "service_started")
                        for dep, spec in depends.items()},
            healthcheck=_healthcheck(raw.get("healthcheck"), name),
            healthcheck_timeout_s=_duration_s((raw.get("healthcheck") or {}).get("timeout"), 30),
            raw=raw,
        )
    return Compose(services=services, volumes=declared, variables_used=used)


def start_order(compose: Compose) -> list[Service]:
    order: list[Service] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if any(s.name == name for s in order):
            return
        if name in visiting:
            raise ComposeError(f"depends_on cycle through {name}")
        if name not in compose.services:
            raise ComposeError(f"depends_on names an unknown service {name}")
        visiting.add(name)
        for dep in compose.services[name].depends_on:
            visit(dep)
        order.append(compose.services[name])

    for name in compose.services:
        visit(name)
    return order


def is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def fixed_ports(compose: Compose) -> list[int]:
    coordinator = compose.service_with_env("FEDCREDIT_COORDINATOR_BIND")
    ports = [port_of(coordinator.environment["FEDCREDIT_COORDINATOR_BIND"])]
    for node in compose.nodes:
        ports.append(port_of(node.environment["FEDCREDIT_NODE_GRPC_BIND"]))
        ports.append(int(node.environment["FEDCREDIT_NODE_HTTP_PORT"]))
    return ports


# -- static checks ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> Compose:
    return load_compose()


def test_every_service_has_a_command(compose: Compose) -> None:
    assert compose.services
    for service in compose.services.values():
        assert service.raw.get("command"), f"{service.name} has no command"
        assert service.argv, f"{service.name} would run nothing"


def test_variables_have_dev_defaults_and_secrets_are_variables(compose: Compose) -> None:
    # load_compose() with no variables already proved that every ${VAR} has a default.
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    secrets = ("REGISTRATION_TOKEN", "SUBJECT_KEY", "API_KEYS")
    for name, service in raw.items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if key.endswith(secrets):
                assert "${" in str(value), f"{name}.{key} is hard-coded; use a ${{VAR:-dev}}"
    assert {"FEDCREDIT_SUBJECT_KEY", "FEDCREDIT_REGISTRATION_TOKEN",
            "FEDCREDIT_LENDER_API_KEY"} <= compose.variables_used


def test_environment_names_are_real_settings(compose: Compose) -> None:
    # pydantic-settings ignores unknown prefixed variables, so a typo would silently fall
    # back to the default; check every name against the settings classes.
    from coordinator.settings import CoordinatorSettings
    from node.settings import NodeSettings

    known = {f"FEDCREDIT_NODE_{name.upper()}" for name in NodeSettings.model_fields}
    known |= {f"FEDCREDIT_COORDINATOR_{name.upper()}"
              for name in CoordinatorSettings.model_fields}
    for service in compose.services.values():
        unknown = {key for key in service.environment
                   if key.startswith("FEDCREDIT_") and key not in known}
        assert not unknown, f"{service.name}: no such setting {sorted(unknown)}"


def test_topology_is_a_coordinator_and_three_isolated_nodes(compose: Compose) -> None:
    nodes = compose.nodes
    assert sorted(n.member_id or "" for n in nodes) == sorted(MEMBERS)
    coordinator = compose.service_with_env("FEDCREDIT_COORDINATOR_BIND")
    # The subject key is for members only; the coordinator never holds it.
    assert not any("SUBJECT_KEY" in key for key in coordinator.environment)
    # Each node writes to a volume no other node (nor the coordinator) mounts; the shared
    # volume the nodes read (the published verification key) is read-only for them.
    for node in nodes:
        writable = {v for t, v in node.mounts.items() if t not in node.read_only}
        assert writable, f"{node.name} has no volume of its own"
        data_dir = node.environment["FEDCREDIT_NODE_DATA_DIR"]
        assert any(is_under(data_dir, t) for t in node.mounts if t not in node.read_only)
        for other in [*nodes, coordinator]:
            if other is not node:
                assert not writable & set(other.mounts.values()), (node.name, other.name)
    coordinator_data = coordinator.environment["FEDCREDIT_COORDINATOR_DATA_DIR"]
    coordinator_private = {v for t, v in coordinator.mounts.items()
                           if is_under(coordinator_data, t)}
    assert coordinator_private
    for node in nodes:
        assert not coordinator_private & set(node.mounts.values()), (
            f"{node.name} could read the coordinator's plan-signing key")
    ports = fixed_ports(compose)
    assert len(ports) == len(set(ports)) == 1 + 2 * len(MEMBERS), ports
    # Plaintext gRPC is accepted on loopback only, hence host networking and 127.0.0.1.
    for service in compose.services.values():
        assert service.raw.get("network_mode") == "host", service.name
        for key, value in service.environment.items():
            if key.endswith(("_BIND", "_ADDRESS", "_ENDPOINT", "_HTTP_HOST")):
                assert value.startswith("127.0.0.1"), f"{service.name}.{key}={value}"


def test_dockerfile_uses_python_311_or_newer_and_runs_fedcredit() -> None:
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M | re.I)
    assert bases, "Dockerfile has no FROM"
    for base in bases:
        match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?python:3\.(\d+)(?:[.-]\S*)?", base)
        assert match and int(match.group(1)) >= 11, f"base image {base} is not python>=3.11"
    assert dockerfile_instruction("ENTRYPOINT") == ["fedcredit"]
    assert re.search(r"^RUN\s+pip install \.", DOCKERFILE.read_text(), re.M)


def test_dockerignore_keeps_what_pip_install_needs() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert ".venv" in patterns and ".git" in patterns
    needed = ["pyproject.toml", "proto", "mpc", "scoring", "node", "coordinator", "fedcredit"]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert path not in patterns and f"{path}/" not in patterns, f"{path} is excluded"


# -- running the topology as local processes --------------------------------------------------

@dataclass(repr=False)
class Proc:
    service: Service
    popen: subprocess.Popen[bytes]
    log_path: Path
    killed: bool = False

    def __repr__(self) -> str:
        return f"Proc({self.service.name!r}, pid={self.popen.pid}, rc={self.popen.returncode})"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the main process (``docker stop``), then SIGKILL the whole group."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.killed = True
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # leftovers of `sh` (own session)
        except (ProcessLookupError, PermissionError):
            pass
        if self.popen.poll() is None:
            self.popen.wait(5)


@dataclass(repr=False)
class LocalTopology:
    compose: Compose
    root: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    healthy: set[str] = field(default_factory=set)

    def __repr__(self) -> str:
        return f"LocalTopology({self.root}, running={sorted(self.procs)})"

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    def volume_dir(self, volume: str) -> Path:
        return self.root / "volumes" / volume

    def prepare(self) -> None:
        if re.search(r"[^\w./-]", str(self.root)):
            pytest.skip(f"temporary path {self.root} has characters unsafe inside scripts")
        self.bin_dir.mkdir(parents=True)
        shims = {"fedcredit": f"{shlex.quote(sys.executable)} -m fedcredit.cli",
                 "python": shlex.quote(sys.executable)}
        for name, target in shims.items():
            shim = self.bin_dir / name
            shim.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
            shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        for volume in self.compose.volumes:
            self.volume_dir(volume).mkdir(parents=True)
        (self.root / "workdir").mkdir()
        (self.root / "logs").mkdir()

    # -- container paths -> volume folders --
    def localize(self, service: Service, value: str) -> str:
        for target in sorted(service.mounts, key=len, reverse=True):
            local = str(self.volume_dir(service.mounts[target]))
            value = re.sub(re.escape(target) + r"(?![\w.-])", local.replace("\\", r"\\"),
                           value)
        prefix = os.path.commonpath(
            [t for s in self.compose.services.values() for t in s.mounts] or ["/"])
        if prefix != "/" and re.search(re.escape(prefix) + r"(?![\w.-])", value):
            raise ComposeError(f"{service.name} uses a path under {prefix} outside its volumes: "
                               f"{value!r}")
        return value

    def env(self, service: Service) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("FEDCREDIT_")}
        base["PATH"] = f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
        base["PYTHONUNBUFFERED"] = "1"
        return {**base, **{k: self.localize(service, v) for k, v in service.environment.items()}}

    # -- lifecycle --
    def start(self, service: Service) -> Proc:
        argv = [self.localize(service, arg) for arg in service.argv]
        log_path = self.root / "logs" / f"{service.name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv, env=self.env(service), cwd=self.root / "workdir", stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        proc = Proc(service, popen, log_path)
        self.procs[service.name] = proc
        return proc

    def check_health(self, service: Service) -> bool:
        assert service.healthcheck is not None
        argv = [self.localize(service, arg) for arg in service.healthcheck]
        try:
            result = subprocess.run(argv, env=self.env(service), cwd=self.root / "workdir",
                                    capture_output=True, timeout=service.healthcheck_timeout_s,
                                    check=False)
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def wait_until(self, what: str, ready: Any, watch: list[Proc]) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready():
                return
            for proc in watch:
                if proc.popen.poll() is not None:
                    raise AssertionError(f"{proc.service.name} exited with "
                                         f"{proc.popen.returncode} while waiting for {what}")
            time.sleep(0.2)
        raise AssertionError(f"timed out after {STEP_TIMEOUT_S:.0f}s waiting for {what}")

    def wait_healthy(self, name: str) -> None:
        service = self.compose.services[name]
        if name in self.healthy:
            return
        if service.healthcheck is None:
            raise ComposeError(f"{name} is depended on as healthy but has no healthcheck")
        self.wait_until(f"{name} to be healthy", lambda: self.check_health(service),
                        [self.procs[name]])
        self.healthy.add(name)

    def wait_completed(self, name: str) -> None:
        proc = self.procs[name]
        try:
            code = proc.popen.wait(STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{name} did not complete") from exc
        assert code == 0, f"{name} exited with {code}"

    def up(self) -> None:
        """``docker compose up --wait``: dependency order, conditions, then all healthy."""
        for service in start_order(self.compose):
            for dep, condition in service.depends_on.items():
                if condition == "service_completed_successfully":
                    self.wait_completed(dep)
                elif condition == "service_healthy":
                    self.wait_healthy(dep)
                elif condition != "service_started":
                    raise ComposeError(f"{service.name}: unknown condition {condition}")
            self.start(service)
        for service in self.compose.services.values():
            if service.healthcheck is not None:
                self.wait_healthy(service.name)

    def stop_all(self) -> list[str]:
        """Stop in reverse start order; returns the services that ignored SIGTERM."""
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        return [name for name, proc in self.procs.items() if proc.killed]

    def log_tails(self) -> str:
        return "\n".join(f"----- {name} ({proc.log_path}) -----\n{proc.log_tail()}"
                         for name, proc in self.procs.items())


def skip_if_ports_busy(ports: list[int]) -> None:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                pytest.skip(f"port 127.0.0.1:{port} (fixed in docker-compose.yml) is in use "
                            f"({exc.strerror}); cannot run the compose topology here")


@pytest.fixture
def topology(compose: Compose, tmp_path: Path) -> Iterator[LocalTopology]:
    skip_if_ports_busy(fixed_ports(compose))
    local = LocalTopology(compose, tmp_path)
    local.prepare()
    try:
        yield local
    finally:
        local.stop_all()


def active_members(address: str) -> set[str]:
    channel = create_channel(address)
    try:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        reply = stub.ListMembers(coordinator_pb2.ListMembersRequest(), timeout=5)
    except grpc.RpcError:
        return set()
    finally:
        channel.close()
    return {m.member_id for m in reply.members
            if m.status == coordinator_pb2.MEMBER_STATUS_ACTIVE}


def test_compose_topology_runs_as_local_processes(topology: LocalTopology) -> None:
    compose = topology.compose
    try:
        topology.up()

        coordinator = compose.service_with_env("FEDCREDIT_COORDINATOR_BIND")
        address = coordinator.environment["FEDCREDIT_COORDINATOR_BIND"]
        topology.wait_until("bank, finco and shop to be ACTIVE",
                            lambda: active_members(address) >= set(MEMBERS),
                            list(topology.procs.values()))

        applicants = sorted(topology.root.glob("volumes/*/applicants.csv"))
        assert len(applicants) == 1, applicants
        with applicants[0].open(newline="") as handle:
            applicant = next(csv.DictReader(handle))

        (bank,) = [n for n in compose.nodes if n.member_id == "bank"]
        api_key = json.loads(bank.environment["FEDCREDIT_NODE_API_KEYS"])[0]
        url = (f"http://{bank.environment['FEDCREDIT_NODE_HTTP_HOST']}:"
               f"{bank.environment['FEDCREDIT_NODE_HTTP_PORT']}")
        body = {
            "applicant": {"id_type": applicant["id_type"], "identifier": applicant["subject_id"]},
            "consent": {"purpose": "origination",
                        "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
                        "reference": "compose-e2e"},
            "requested_amount": 10000.0,
            "term_months": 12,
        }
        with httpx.Client(base_url=url, headers={"X-API-Key": api_key}, timeout=30) as client:
            response = client.post("/v1/evaluations", json=body)
            assert response.status_code == 201, response.text
            report = response.json()
            assert report["coverage"]["asked"] == 2, report["coverage"]
            assert report["coverage"]["answered"] == 2, report["coverage"]
            assert report["coverage"]["skipped"] == []
            assert client.get(response.headers["Location"]).status_code == 200

        # State went to the volumes it belongs in.
        coordinator_data = Path(topology.localize(
            coordinator, coordinator.environment["FEDCREDIT_COORDINATOR_DATA_DIR"]))
        assert (coordinator_data / "plan-signing-key.pem").exists()
        bank_data = Path(topology.localize(bank, bank.environment["FEDCREDIT_NODE_DATA_DIR"]))
        assert (bank_data / "evaluations.sqlite3").exists()
        for node in compose.nodes:
            for target in node.read_only:
                shared = topology.volume_dir(node.mounts[target])
                assert not list(shared.rglob("*signing*")), f"signing key exposed to {node.name}"
    except BaseException:
        print(topology.log_tails())
        raise

    ignored = topology.stop_all()
    assert not ignored, f"{ignored} ignored SIGTERM for {STOP_GRACE_S:.0f}s (docker would kill)"
