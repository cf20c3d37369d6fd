"""Message passing between the parties of one training session.

Training roles (:mod:`node.training`, :mod:`coordinator.training`) are straight-line scripts:
``send(to, tag, payload)`` and ``recv(from, tag)``. Tags name the step (``"u/3"`` = partial
logits of epoch 3), so every message of a session is addressed exactly once. A party that fails
broadcasts an abort; every party waiting on anything then raises
:class:`~fedcredit.errors.TrainingAbortedError` with the reason, and so does one whose peer stays
silent past the session timeout. The wire (mutual-TLS gRPC, :mod:`fedcredit.federation_grpc`)
or in-process queues (tests) sit behind :class:`Transport`.

Payloads are framed as a JSON header plus binary blobs (ciphertexts); :func:`pack`/:func:`unpack`.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fedcredit.errors import (
    ErrorCode,
    FedCreditError,
    InvalidRequestError,
    TrainingAbortedError,
    UnavailableError,
)

ABORT_TAG = "abort"
#: A waiting party probes a silent peer this often, and gives up after this many failures.
PROBE_INTERVAL_S = 2.0
DOWN_PROBES = 3
_LEN = struct.Struct(">I")


def pack(meta: Mapping[str, Any], blobs: Sequence[bytes] = ()) -> bytes:
    head = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
    parts = [_LEN.pack(len(head)), head, _LEN.pack(len(blobs))]
    for blob in blobs:
        parts += [_LEN.pack(len(blob)), blob]
    return b"".join(parts)


def unpack(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    try:
        (size,) = _LEN.unpack_from(data, 0)
        meta = json.loads(data[4 : 4 + size])
        pos = 4 + size
        (count,) = _LEN.unpack_from(data, pos)
        pos += 4
        blobs = []
        for _ in range(count):
            (n,) = _LEN.unpack_from(data, pos)
            pos += 4
            blobs.append(data[pos : pos + n])
            if len(blobs[-1]) != n:
                raise ValueError("truncated blob")
            pos += n
        if pos != len(data) or not isinstance(meta, dict):
            raise ValueError("trailing bytes")
    except (struct.error, ValueError) as exc:
        raise InvalidRequestError("malformed training message") from exc
    return meta, blobs


class Transport(Protocol):
    """Delivers one message to one party (raises on failure)."""

    def deliver(self, recipient: str, sender: str, tag: str, payload: bytes) -> None: ...


@dataclass(frozen=True)
class Abort:
    sender: str
    code: str
    detail: str


class Mailbox:
    """What one party has received, keyed by (sender, tag). Thread-safe."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._items: dict[tuple[str, str], bytes] = {}
        self._abort: Abort | None = None
        self._cond = threading.Condition()

    def put(self, sender: str, tag: str, payload: bytes) -> None:
        with self._cond:
            if tag == ABORT_TAG:
                meta, _ = unpack(payload)
                if self._abort is None:
                    self._abort = Abort(sender, str(meta.get("code")), str(meta.get("detail")))
            else:
                key = (sender, tag)
                if key in self._items and self._items[key] != payload:
                    raise InvalidRequestError(f"second, different message {tag!r} from {sender}")
                self._items[key] = payload
            self._cond.notify_all()

    def take(self, sender: str, tag: str, timeout_s: float,
             alive: Callable[[str], bool] | None = None) -> bytes:
        """Wait for one message; fail on an abort, on timeout, or when ``alive`` says the
        sender has been down for :data:`DOWN_PROBES` consecutive probes."""
        deadline = time.monotonic() + timeout_s
        failed_probes = 0
        while True:
            with self._cond:
                if (sender, tag) in self._items:
                    return self._items.pop((sender, tag))
                if self._abort is not None:
                    a = self._abort
                    raise TrainingAbortedError(f"{a.sender} stopped the session: {a.detail}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TrainingAbortedError(
                        f"{sender} sent nothing for step {tag!r} within {timeout_s:.0f} s"
                    )
                self._cond.wait(min(left, PROBE_INTERVAL_S))
                if (sender, tag) in self._items or self._abort is not None:
                    continue
            if alive is not None:
                failed_probes = 0 if alive(sender) else failed_probes + 1
                if failed_probes >= DOWN_PROBES:
                    raise TrainingAbortedError(f"{sender} is down (waiting for step {tag!r})")

    @property
    def aborted(self) -> Abort | None:
        with self._cond:
            return self._abort


class Peer:
    """One party's view of the session: its mailbox, a transport, the other parties' names."""

    def __init__(
        self, name: str, parties: Sequence[str], mailbox: Mailbox, transport: Transport,
        timeout_s: float, alive: Callable[[str], bool] | None = None,
    ) -> None:
        self.name = name
        self.parties = tuple(parties)
        self.mailbox = mailbox
        self._transport = transport
        self.timeout_s = timeout_s
        self._alive = alive
        self.bytes_sent = 0

    def send(self, to: str, tag: str, payload: bytes) -> None:
        if to not in self.parties or to == self.name:
            raise InvalidRequestError(f"{to!r} is not another party of this session")
        if self.mailbox.aborted is not None:
            a = self.mailbox.aborted
            raise TrainingAbortedError(f"{a.sender} stopped the session: {a.detail}")
        try:
            self._transport.deliver(to, self.name, tag, payload)
        except FedCreditError as exc:
            raise TrainingAbortedError(f"cannot reach {to}: {exc.detail}") from exc
        self.bytes_sent += len(payload)

    def recv(self, sender: str, tag: str) -> bytes:
        return self.mailbox.take(sender, tag, self.timeout_s, self._alive)

    def abort_all(self, error: BaseException) -> None:
        """Best effort: tell every other party why this one stops (unless another party
        stopped the session: that one has told everybody)."""
        if self.mailbox.aborted is not None:
            return
        if isinstance(error, FedCreditError):
            code, detail = error.code.value, error.detail
        else:
            code, detail = ErrorCode.INTERNAL.value, f"{type(error).__name__} at {self.name}"
        payload = pack({"code": code, "detail": detail})
        for other in self.parties:
            if other == self.name:
                continue
            try:
                self._transport.deliver(other, self.name, ABORT_TAG, payload)
            except Exception:  # the other party may be the one that is gone
                continue


class LocalTransport:
    """In-process delivery between mailboxes (tests and single-process experiments)."""

    def __init__(self) -> None:
        self.mailboxes: dict[str, Mailbox] = {}
        self.down: set[str] = set()

    def deliver(self, recipient: str, sender: str, tag: str, payload: bytes) -> None:
        if recipient in self.down or recipient not in self.mailboxes:
            raise UnavailableError(f"{recipient} is unreachable")
        self.mailboxes[recipient].put(sender, tag, payload)

    def is_alive(self, party: str) -> bool:
        return party not in self.down
