"""A throwaway PostgreSQL server on loopback — a dev/test helper, not a deployment tool.

The test fixture (``tests/support/postgres.py``) and ``bench/store_lookup.py`` use it to run the
PostgreSQL store against a real server: find the server binaries (``PATH`` or
``/usr/lib/postgresql/*/bin``), ``initdb`` a fresh directory under the temp dir with a random
password, start it on a free loopback port with its unix socket in that directory, create a
database, and on :meth:`LocalPostgres.stop` shut it down (``pg_ctl stop -m fast``) and delete
the directory. PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` system
user (``runuser``) and the directory is handed to that user. No system service is involved.

A small watchdog process does the same clean-up if the process that started the server dies
without stopping it (a test run killed by a timeout), so no server outlives its user.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg

from fedcredit.errors import FeatureStoreUnavailableError

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "fedcredit"
START_TIMEOUT_S = 60
INSTALL_HINT = "install them, e.g. `apt-get install postgresql`"
_WATCHDOG = """
import os, shutil, subprocess, sys, time
owner, directory, *stop = sys.argv[1:]
while True:
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        break
    except PermissionError:
        pass
    time.sleep(1)
subprocess.run(stop, capture_output=True, timeout=60, check=False)
shutil.rmtree(directory, ignore_errors=True)
"""


def find_server_binaries() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None``."""
    candidates = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                      reverse=True)
    candidates += versions
    for directory in candidates:
        if all((directory / name).is_file() for name in SERVER_BINARIES):
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class LocalPostgres:
    directory: Path
    bin_dir: Path
    port: int
    password: str
    database: str
    run_as: tuple[str, ...]  # command prefix: () or ("runuser", "-u", "postgres", "--")
    watchdog: subprocess.Popen[bytes] | None = None

    def url(self, database: str | None = None) -> str:
        return (f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/"
                f"{database or self.database}")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.run_as, *args], capture_output=True, text=True,
                              check=False, timeout=START_TIMEOUT_S)
        if check and done.returncode != 0:
            raise FeatureStoreUnavailableError(
                f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()}"
            )
        return done

    def _stop_command(self) -> list[str]:
        return [*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.directory / "data"),
                "stop", "-m", "fast", "-w"]

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.terminate()
            self.watchdog.wait(timeout=10)
        try:
            subprocess.run(self._stop_command(), capture_output=True, timeout=START_TIMEOUT_S,
                           check=False)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def with_watchdog(self) -> LocalPostgres:
        watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.directory),
             *self._stop_command()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C aimed at the owner must not stop it first
        )
        return replace(self, watchdog=watchdog)


def _runuser() -> tuple[str, ...]:
    if os.geteuid() != 0:
        return ()
    runuser = shutil.which("runuser") or next(
        (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if Path(p).is_file()), None)
    if runuser is None:
        raise FeatureStoreUnavailableError("running as root needs `runuser` to start PostgreSQL")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise FeatureStoreUnavailableError(
            "running as root needs a `postgres` system user to start PostgreSQL"
        ) from None
    return (runuser, "-u", "postgres", "--")


def start_local_postgres(database: str = "fedcredit", *, durable: bool = True) -> LocalPostgres:
    """Start a private server; ``durable=False`` turns fsync off (tests: faster, crash-unsafe)."""
    bin_dir = find_server_binaries()
    if bin_dir is None:
        raise FeatureStoreUnavailableError(f"PostgreSQL server binaries not found; {INSTALL_HINT}")
    run_as = _runuser()
    # Directly under the temp dir: the postgres user must be able to reach it, and a unix
    # socket path must stay short.
    directory = Path(tempfile.mkdtemp(prefix="fedcredit-pg-"))
    password = secrets.token_urlsafe(18)
    server = LocalPostgres(directory, bin_dir, _free_port(), password, database, run_as)
    try:
        pwfile = directory / "pwfile"
        pwfile.write_text(password + "\n")
        if run_as:
            user = pwd.getpwnam("postgres")
            for path in (directory, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        server._run(str(bin_dir / "initdb"), "-D", str(directory / "data"), "-U", SUPERUSER,
                    f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                    "-E", "UTF8", "--no-locale", "--no-sync")
        options = [f"-p {server.port}", "-c listen_addresses=127.0.0.1",
                   f"-c unix_socket_directories={directory}"]
        if not durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        started = server._run(str(bin_dir / "pg_ctl"), "-D", str(directory / "data"),
                              "-l", str(directory / "server.log"), "-w",
                              "-t", str(START_TIMEOUT_S), "-o", " ".join(options), "start",
                              check=False)
        if started.returncode != 0:
            log = directory / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else started.stderr
            raise FeatureStoreUnavailableError(f"PostgreSQL did not start:\n{tail}")
        server = server.with_watchdog()
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
    except BaseException:
        server.stop()
        raise
    return server
