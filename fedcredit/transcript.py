"""A dev-only record of every message a gRPC server receives and sends, to audit what each
party learns.

Since the trust plane every link is TLS, so a recording proxy on the wire sees only
ciphertext. What a *party* learns is what arrives in the clear at its end: the request
messages its servers receive and the replies they return (which their callers receive). This
interceptor appends both, serialized, to one file per process; the privacy tests search those
files for identifiers, pseudonyms, feature values and plaintext results. Settings refuse it
outside ``environment=dev``: a transcript is itself sensitive.

File format: records of ``u8 direction (0 = request in, 1 = reply out) | u16 method length |
method | u32 payload length | payload``.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

REQUEST, REPLY = 0, 1


def training_transcript(path: Path) -> Path:
    """Where a process's training sessions are recorded, beside its main transcript."""
    return path.with_name(path.name + ".training")


class TranscriptInterceptor(grpc.ServerInterceptor):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self._lock = threading.Lock()

    def _write(self, direction: int, method: str, payload: bytes) -> None:
        name = method.encode()
        with self._lock:
            self._file.write(struct.pack(">BH", direction, len(name)) + name
                             + struct.pack(">I", len(payload)) + payload)
            self._file.flush()

    def intercept_service(self, continuation: Callable[..., Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        inner = handler.unary_unary

        def recorded(request: Any, context: grpc.ServicerContext) -> Any:
            self._write(REQUEST, method, request.SerializeToString())
            reply = inner(request, context)
            if reply is not None:
                self._write(REPLY, method, reply.SerializeToString())
            return reply

        return grpc.unary_unary_rpc_method_handler(
            recorded, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_transcript(path: Path) -> Iterator[tuple[int, str, bytes]]:
    """(direction, method, payload) records of a transcript file."""
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        direction, name_len = struct.unpack_from(">BH", data, offset)
        offset += 3
        method = data[offset:offset + name_len].decode()
        offset += name_len
        (size,) = struct.unpack_from(">I", data, offset)
        offset += 4
        yield direction, method, data[offset:offset + size]
        offset += size
