"""Recipe: Ed25519 signatures over domain-separated byte strings (plans, later consents).

The coordinator signs the exact serialized bytes of a plan; verifiers check those bytes and
only then parse them. Verification failure is one opaque :class:`InvalidSignature`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from fedcredit.errors import InvalidSignature

PLAN_CONTEXT = b"fedcredit/plan/v1\x00"


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Verifier:
    public_key: Ed25519PublicKey = field(repr=False)

    @property
    def key_id(self) -> str:
        return _key_id(self.public_key)

    @classmethod
    def from_pem(cls, pem: bytes) -> Verifier:
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("verification key must be Ed25519")
        return cls(key)

    def to_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, context: bytes, message: bytes, signature: bytes) -> None:
        try:
            self.public_key.verify(signature, context + message)
        except (_CryptoInvalidSignature, ValueError, TypeError):
            raise InvalidSignature() from None


@dataclass(frozen=True)
class Signer:
    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> Signer:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("signing key must be Ed25519")
        return cls(key)

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.private_key.public_key())

    def sign(self, context: bytes, message: bytes) -> bytes:
        return self.private_key.sign(context + message)
