"""Private set intersection by commutative Diffie-Hellman over X25519.

The label holder (the *receiver*) and one feature holder (the *sender*) each hold a secret
scalar. Every identifier is hashed to a 32-byte X25519 u-coordinate (SHA-512 with a domain
separator, top bit cleared); raising to a secret scalar is ``X25519(k, u)``, which commutes:
``X25519(a, X25519(b, u)) = X25519(b, X25519(a, u))``. The receiver sends its once-masked set
in a random order; the sender returns it masked again *in the same order* plus its own
once-masked set in a random order; the receiver masks the sender's set and compares. The
receiver learns which of its identifiers the sender holds (or, in cardinality mode, where the
sender also shuffles the doubly-masked receiver set, only how many); the sender learns only the
size of the receiver's set. Identifiers never leave their owner, hashed or not.

X25519 accepts every u-coordinate (points on the curve or its twist, both with ~2^125 security
against discrete logarithms — Curve25519 is twist-secure), so hashing to u is sound. OpenSSL does
the arithmetic through ``cryptography``; openmined-psi (same protocol family over P-256) pins
protobuf 6 and cannot live beside our gRPC stubs.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedcredit.errors import InvalidRequestError

POINT_BYTES = 32
_DOMAIN = b"fedcredit/psi-x25519/v1\x00"

Shuffle = Callable[[list[int]], None]


def system_shuffle(items: list[int]) -> None:
    """Fisher-Yates with the OS CSPRNG."""
    for i in range(len(items) - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        items[i], items[j] = items[j], items[i]


def split_points(blob: bytes) -> list[bytes]:
    """A concatenation of points (how lists of points travel) back into points."""
    if len(blob) % POINT_BYTES:
        raise InvalidRequestError("PSI payload is not a whole number of points")
    return [blob[k : k + POINT_BYTES] for k in range(0, len(blob), POINT_BYTES)]


def hash_to_u(identifier: str) -> bytes:
    digest = bytearray(hashlib.sha512(_DOMAIN + identifier.encode("utf-8")).digest()[:POINT_BYTES])
    digest[-1] &= 0x7F
    return bytes(digest)


@dataclass(frozen=True)
class PsiKey:
    """One party's secret scalar for one PSI session (never reused across sessions)."""

    _key: X25519PrivateKey

    @classmethod
    def generate(cls) -> PsiKey:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, raw: bytes) -> PsiKey:
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def mask(self, point: bytes) -> bytes:
        if len(point) != POINT_BYTES:
            raise InvalidRequestError("PSI element must be 32 bytes")
        try:
            return self._key.exchange(X25519PublicKey.from_public_bytes(point))
        except ValueError as exc:  # a low-order point: never produced by honest hashing
            raise InvalidRequestError("PSI element is a low-order point") from exc

    def mask_all(self, points: Sequence[bytes]) -> list[bytes]:
        return [self.mask(p) for p in points]


@dataclass(frozen=True)
class ReceiverRequest:
    """The receiver's once-masked set, in the order ``order`` (kept secret by the receiver)."""

    masked: tuple[bytes, ...]
    order: tuple[int, ...]  # masked[k] belongs to identifiers[order[k]]


def receiver_request(
    key: PsiKey, identifiers: Sequence[str], shuffle: Shuffle = system_shuffle
) -> ReceiverRequest:
    order = list(range(len(identifiers)))
    shuffle(order)
    return ReceiverRequest(
        masked=tuple(key.mask(hash_to_u(identifiers[i])) for i in order), order=tuple(order)
    )


@dataclass(frozen=True)
class SenderResponse:
    """The receiver's set masked again (same order unless cardinality-only) and the sender's
    own once-masked set in a random order (``sender_order`` stays with the sender)."""

    double_masked: tuple[bytes, ...]
    sender_masked: tuple[bytes, ...]
    sender_order: tuple[int, ...]


@dataclass(frozen=True)
class SenderSet:
    """The sender's own once-masked set in a random order (``order`` stays with the sender)."""

    masked: tuple[bytes, ...]
    order: tuple[int, ...]  # masked[k] belongs to identifiers[order[k]]


def sender_set(key: PsiKey, identifiers: Sequence[str],
               shuffle: Shuffle = system_shuffle) -> SenderSet:
    """The sender's half that needs nothing from the receiver: it can be computed (and sent)
    while the receiver masks its own set."""
    order = list(range(len(identifiers)))
    shuffle(order)
    return SenderSet(tuple(key.mask(hash_to_u(identifiers[i])) for i in order), tuple(order))


def sender_double(key: PsiKey, request_masked: Sequence[bytes], *,
                  cardinality_only: bool = False,
                  shuffle: Shuffle = system_shuffle) -> tuple[bytes, ...]:
    """The receiver's set masked again, in the same order (shuffled in cardinality mode)."""
    double = key.mask_all(request_masked)
    if cardinality_only:
        perm = list(range(len(double)))
        shuffle(perm)
        double = [double[i] for i in perm]
    return tuple(double)


def sender_response(
    key: PsiKey,
    request_masked: Sequence[bytes],
    identifiers: Sequence[str],
    *,
    cardinality_only: bool = False,
    shuffle: Shuffle = system_shuffle,
) -> SenderResponse:
    """Both halves at once (:func:`sender_double` and :func:`sender_set`)."""
    double = sender_double(key, request_masked, cardinality_only=cardinality_only,
                           shuffle=shuffle)
    own = sender_set(key, identifiers, shuffle)
    return SenderResponse(double, own.masked, own.order)


@dataclass(frozen=True)
class Intersection:
    """For each shared subject: the receiver's row and the position in the sender's list."""

    receiver_rows: tuple[int, ...]
    sender_positions: tuple[int, ...]


def receiver_index(key: PsiKey, sender_masked: Sequence[bytes]) -> dict[bytes, int]:
    """The sender's set masked by the receiver too, by position: computed while the sender
    double-masks the receiver's request."""
    return {key.mask(p): pos for pos, p in enumerate(sender_masked)}


def receiver_match(request: ReceiverRequest, double_masked: Sequence[bytes],
                   theirs: dict[bytes, int]) -> Intersection:
    """Which of the receiver's identifiers the sender holds (sorted by receiver row)."""
    if len(double_masked) != len(request.masked):
        raise InvalidRequestError("PSI response does not match the request")
    pairs = sorted(
        (request.order[k], theirs[d]) for k, d in enumerate(double_masked) if d in theirs
    )
    return Intersection(tuple(r for r, _ in pairs), tuple(p for _, p in pairs))


def receiver_intersect(
    key: PsiKey, request: ReceiverRequest, double_masked: Sequence[bytes],
    sender_masked: Sequence[bytes],
) -> Intersection:
    """Both receiver steps at once (:func:`receiver_index`, :func:`receiver_match`)."""
    return receiver_match(request, double_masked, receiver_index(key, sender_masked))


def receiver_cardinality(
    key: PsiKey, double_masked: Sequence[bytes], sender_masked: Sequence[bytes]
) -> int:
    theirs = receiver_index(key, sender_masked)
    return sum(1 for d in double_masked if d in theirs)
