"""Serving a FastAPI app with uvicorn: bound up front (port 0 works, errors are typed), in the
calling thread (CLI) or a background thread (embedded use, tests), optionally over TLS."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from fedcredit.errors import ConfigurationError

STARTUP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TlsFilesForHttp:
    keyfile: Path
    certfile: Path


@dataclass
class HttpServer:
    app: FastAPI
    host: str
    port: int
    what: str
    tls: TlsFilesForHttp | None = None
    bound_port: int = 0
    _server: uvicorn.Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _socket: socket.socket | None = field(default=None, repr=False)

    def bind(self) -> int:
        """Bind now (so a taken port fails before anything starts); the bound port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(f"cannot bind the {self.what} to {self.host}:{self.port}: "
                                     f"{exc.strerror}") from None
        self._socket = sock
        self.bound_port = sock.getsockname()[1]
        return self.bound_port

    def _uvicorn(self) -> uvicorn.Server:
        extra = {}
        if self.tls is not None:
            extra = {"ssl_keyfile": str(self.tls.keyfile), "ssl_certfile": str(self.tls.certfile)}
        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=5, **extra)  # type: ignore[arg-type]
        self._server = uvicorn.Server(config)
        return self._server

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (CLI use)."""
        if self._socket is None:
            self.bind()
        assert self._socket is not None
        self._uvicorn().run(sockets=[self._socket])

    def start_in_thread(self) -> int:
        """Serve from a background thread; returns the port once it accepts connections."""
        if self._socket is None:
            self.bind()
        server = self._uvicorn()
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self._socket]},
                                        name=self.what, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigurationError(f"the {self.what} did not start")
            time.sleep(0.01)
        return self.bound_port

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
