"""Request body size limit, enforced while reading (chunked bodies included).

The body is read up to the limit before the application sees it, so an oversized request is
answered 413 without ever being parsed; the lender API's bodies are small (a few hundred bytes),
except a portfolio's list of identifiers, which has its own, larger limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fedcredit.error_catalog import entry
from fedcredit.errors import ErrorCode


class BodySizeLimit:
    def __init__(
        self, app: ASGIApp, max_bytes: int, on_reject: Callable[[], None] = lambda: None,
        path_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject
        #: Larger (or smaller) limits for the paths that start with these prefixes.
        self.path_limits = dict(path_limits or {})

    def _limit(self, scope: Scope) -> int:
        path = str(scope.get("path", ""))
        return next((limit for prefix, limit in self.path_limits.items()
                     if path.startswith(prefix)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._reject(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send, limit: int) -> None:
        self.on_reject()
        item = entry(ErrorCode.MESSAGE_TOO_LARGE)
        raw = json.dumps(
            {
                "error": {
                    "code": ErrorCode.MESSAGE_TOO_LARGE.value,
                    "message": item.message,
                    "detail": f"request body exceeds {limit} bytes",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": item.http_status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(raw)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": raw})
