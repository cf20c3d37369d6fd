"""A recording TCP proxy: sits on a link between two processes and keeps every byte."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Capture:
    """Bytes seen per (link, direction); direction is 'to-server' or 'to-client'."""

    chunks: dict[tuple[str, str], bytearray] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, link: str, direction: str, data: bytes) -> None:
        with self.lock:
            self.chunks.setdefault((link, direction), bytearray()).extend(data)

    def link(self, name: str) -> bytes:
        with self.lock:
            return b"".join(bytes(v) for (link, _), v in self.chunks.items() if link == name)

    def everything(self) -> bytes:
        with self.lock:
            return b"".join(bytes(v) for v in self.chunks.values())


class RecordingProxy:
    """Listens on 127.0.0.1:<port>; forwards to an upstream port known only later."""

    def __init__(self, name: str, upstream: Callable[[], int], capture: Capture) -> None:
        self.name = name
        self._upstream = upstream
        self._capture = capture
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _resolve(self) -> int:
        deadline = time.monotonic() + 30
        while True:
            try:
                return self._upstream()
            except (KeyError, AttributeError, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(("127.0.0.1", self._resolve()))
        except OSError:
            client.close()
            return
        self._sockets += [client, server]
        threading.Thread(target=self._pump, args=(client, server, "to-server"),
                         daemon=True).start()
        self._pump(server, client, "to-client")

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while data := src.recv(65536):
                self._capture.add(self.name, direction, data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
