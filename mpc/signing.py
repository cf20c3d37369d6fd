"""Recipe: ECDSA P-256 signatures over domain-separated byte strings.

Every alliance party has one identity key, certified by the alliance CA (:mod:`mpc.pki`), and
uses it both for mutual TLS and for the signatures the protocol needs: the coordinator signs
plans and ledger tree heads, a requester signs consents. P-256 because gRPC's TLS stack accepts
it (it does not accept Ed25519 certificates). Each use prepends its own context string, and
none of them can be mistaken for a TLS 1.3 CertificateVerify, which starts with 64 spaces.

Signers sign exact bytes; verifiers check those bytes and only then parse them. Verification
failure is one opaque :class:`InvalidSignature`.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedcredit.errors import ErrorCode, InvalidSignature

PLAN_CONTEXT = b"fedcredit/plan/v1\x00"
CONSENT_CONTEXT = b"fedcredit/consent/v1\x00"
TREE_HEAD_CONTEXT = b"fedcredit/tree-head/v1\x00"
RECEIPT_CONTEXT = b"fedcredit/ledger-receipt/v1\x00"

CURVE = ec.SECP256R1
_ALGORITHM = ec.ECDSA(hashes.SHA256())


def key_id_of(public: ec.EllipticCurvePublicKey) -> str:
    """First 16 hex digits of SHA-256 over the key's SubjectPublicKeyInfo."""
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def _require_p256(key: object, what: str) -> None:
    if not isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) or not (
        isinstance(key.curve, CURVE)
    ):
        raise ValueError(f"{what} must be an ECDSA P-256 key")


@dataclass(frozen=True)
class Verifier:
    public_key: ec.EllipticCurvePublicKey = field(repr=False)

    def __post_init__(self) -> None:
        _require_p256(self.public_key, "verification key")

    @functools.cached_property
    def key_id(self) -> str:
        return key_id_of(self.public_key)

    @classmethod
    def from_pem(cls, pem: bytes) -> Verifier:
        key = serialization.load_pem_public_key(pem)
        _require_p256(key, "verification key")
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return cls(key)

    def to_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(
        self, context: bytes, message: bytes, signature: bytes, *, code: ErrorCode | None = None
    ) -> None:
        """Raise the opaque :class:`InvalidSignature` (with ``code``) unless it verifies."""
        try:
            self.public_key.verify(signature, context + message, _ALGORITHM)
        except (_CryptoInvalidSignature, ValueError, TypeError):
            raise InvalidSignature(code=code) from None


@dataclass(frozen=True)
class Signer:
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        _require_p256(self.private_key, "signing key")

    @classmethod
    def generate(cls) -> Signer:
        return cls(ec.generate_private_key(CURVE()))

    @classmethod
    def from_pem(cls, pem: bytes) -> Signer:
        key = serialization.load_pem_private_key(pem, password=None)
        _require_p256(key, "signing key")
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(key)

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @functools.cached_property
    def verifier(self) -> Verifier:
        return Verifier(self.private_key.public_key())

    @property
    def key_id(self) -> str:
        return self.verifier.key_id

    def sign(self, context: bytes, message: bytes) -> bytes:
        return self.private_key.sign(context + message, _ALGORITHM)
