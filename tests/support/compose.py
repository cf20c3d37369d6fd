"""docker-compose.yml read and run without a Docker engine (tests/e2e/test_compose.py).

Every service runs as a local process, the way Docker would run it in a container:

* ``${VAR:-default}`` interpolation uses the file's own defaults (none may be missing) and
  ``$$`` is a literal ``$``;
* the argv is the service's ``entrypoint`` + ``command`` (or the Dockerfile's ENTRYPOINT/CMD
  where the service sets none); ``fedcredit`` / ``python`` are shims that run this interpreter;
* each named volume is a folder under a temporary directory: every occurrence of a service's
  mount target in its argv, environment and healthcheck is rewritten to that volume's folder,
  and no container path outside a volume may remain (state outside volumes would be lost);
* ``depends_on`` conditions are honoured: ``service_completed_successfully`` waits for exit 0,
  ``service_healthy`` runs the dependency's healthcheck command until it passes;
* each process has its own session and stops like ``docker stop`` (SIGTERM, then SIGKILL of
  the whole group after a grace period).
"""

from __future__ import annotations

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
STEP_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0  # what `docker stop` waits before SIGKILL


class ComposeError(AssertionError):
    """The compose file uses something this harness (or Docker) cannot run as written."""


# -- the compose model ----------------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<arg>.*))?", re.S)


def interpolate(text: str, variables: dict[str, str], used: set[str]) -> str:
    """Compose's ``$VAR`` / ``${VAR}`` / ``${VAR:-default}`` / ``${VAR-default}`` / ``$$``
    (anything else, e.g. ``${VAR:?}``, is refused)."""

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
        if op is not None and (not value if op == ":-" else value is None):
            return arg
        if value is None:
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
    read_only: set[str]  # container paths mounted read-only
    depends_on: dict[str, str]  # service -> condition
    healthcheck: list[str] | None  # argv to run, container paths
    healthcheck_timeout_s: float
    raw: dict[str, Any]

    def __repr__(self) -> str:
        return f"Service({self.name!r})"

    @property
    def member_id(self) -> str | None:
        return self.environment.get("FEDCREDIT_NODE_MEMBER_ID")

    @property
    def one_shot(self) -> bool:
        """Runs to completion (``restart: "no"``) rather than serving."""
        return str(self.raw.get("restart", "no")) == "no"

    def writable_volumes(self) -> set[str]:
        return {v for t, v in self.mounts.items() if t not in self.read_only}

    def volume_of(self, container_path: str) -> str:
        """The volume a container path lives in (the most specific mount)."""
        for target in sorted(self.mounts, key=len, reverse=True):
            if is_under(container_path, target):
                return self.mounts[target]
        raise ComposeError(f"{self.name}: {container_path} is in no volume")


def _duration_s(text: str | None, default: float) -> float:
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text or "")):
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
        if not isinstance(item, str):
            raise ComposeError(f"{service}: write volumes as volume:/path[:ro], not {item}")
        source, target, *mode = item.split(":")
        if source not in declared:
            raise ComposeError(f"{service}: {source!r} is not a declared named volume")
        if target in mounts:
            raise ComposeError(f"{service}: two volumes mounted at {target}")
        mounts[target] = source
        if "ro" in (mode[0].split(",") if mode else []):
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

    def _one(self, what: str, match: Callable[[Service], bool]) -> Service:
        found = [s for s in self.services.values() if match(s)]
        if len(found) != 1:
            raise ComposeError(f"expected one {what} service, found {found}")
        return found[0]

    @property
    def nodes(self) -> list[Service]:
        return [s for s in self.services.values() if s.member_id is not None]

    def node(self, member_id: str) -> Service:
        return self._one(member_id, lambda s: s.member_id == member_id)

    @property
    def coordinator(self) -> Service:
        return self._one("coordinator", lambda s: s.argv[-2:] == ["coordinator", "serve"])

    @property
    def init(self) -> Service:
        return self._one("init", lambda s: any("fedcredit alliance init" in a for a in s.argv))

    @property
    def admit(self) -> Service:
        return self._one("admit", lambda s: "FEDCREDIT_ADMIN_URL" in s.environment)

    def mounting(self, volume: str) -> list[Service]:
        return [s for s in self.services.values() if volume in s.mounts.values()]


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
            name=name, argv=argv, environment=_environment(raw.get("environment"), name),
            mounts=mounts, read_only=read_only,
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
    env = compose.coordinator.environment
    ports = [port_of(env[f"FEDCREDIT_COORDINATOR_{key}"])
             for key in ("BIND", "ENROLL_BIND", "ADMIN_BIND")]
    for node in compose.nodes:
        ports.append(port_of(node.environment["FEDCREDIT_NODE_GRPC_BIND"]))
        ports.append(int(node.environment["FEDCREDIT_NODE_HTTP_PORT"]))
    return ports


def skip_if_ports_busy(ports: list[int]) -> None:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                pytest.skip(f"port 127.0.0.1:{port} (fixed in docker-compose.yml) is in use "
                            f"({exc.strerror}); cannot run the compose topology here")


# -- running the topology as local processes ------------------------------------------------------

@dataclass(repr=False)
class Proc:
    service: Service
    popen: subprocess.Popen[bytes]
    log_path: Path
    killed: bool = False

    def stop(self) -> int:
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
        return self.popen.returncode


@dataclass(repr=False)
class LocalTopology:
    compose: Compose
    root: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    healthy: set[str] = field(default_factory=set)
    #: The services the last :meth:`down` had to SIGKILL (they ignored SIGTERM).
    killed: list[str] = field(default_factory=list)

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
            value = re.sub(re.escape(target) + r"(?![\w.-])", local.replace("\\", r"\\"), value)
        prefix = os.path.commonpath(
            [t for s in self.compose.services.values() for t in s.mounts] or ["/"])
        if prefix != "/" and re.search(re.escape(prefix) + r"(?![\w.-])", value):
            raise ComposeError(f"{service.name} uses a path under {prefix} outside its volumes: "
                               f"{value!r}")
        return value

    def path(self, service: Service, container_path: str) -> Path:
        """Where a file the service sees at ``container_path`` is on this machine."""
        return Path(self.localize(service, container_path))

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

    @property
    def serving(self) -> list[Proc]:
        """The long-running services' processes (they must not exit)."""
        return [p for p in self.procs.values() if not p.service.one_shot]

    def wait_until(self, what: str, ready: Callable[[], bool],
                   watch: list[Proc] | None = None) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready():
                return
            for proc in self.serving if watch is None else watch:
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

    def down(self) -> dict[str, int]:
        """``docker compose stop`` in reverse start order: every process's exit code; volumes
        stay, so :meth:`up` can run again."""
        codes = {name: proc.stop() for name, proc in reversed(list(self.procs.items()))}
        self.killed = [name for name, proc in self.procs.items() if proc.killed]
        self.procs.clear()
        self.healthy.clear()
        return codes

    def log_tails(self, lines: int = 40) -> str:
        tails = []
        for log in sorted((self.root / "logs").glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"----- {log.stem} ({log}) -----\n" + "\n".join(text))
        return "\n".join(tails)
