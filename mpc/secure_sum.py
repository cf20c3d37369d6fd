"""Recipe: an encrypted running sum of contribution vectors along a route.

Each member calls :func:`accumulate` once; only the requester, who holds the private key,
calls :func:`decrypt_total`, and only on the final accumulator. Every ciphertext that leaves
:func:`accumulate` is a fresh-looking encryption of the running sum: the member's own
contribution is encrypted with fresh randomness r and multiplied in, so the output carries a
new r^n factor and cannot be linked to the input accumulator (re-randomization). A member with
no record adds an encryption of zero, which looks exactly like any other contribution.

The whole vector travels as one ciphertext (encoding v4: every field in its own slot of one
plaintext, :data:`mpc.contribution.PACKING`), so a hop does one encryption and one
multiplication, and the requester half a decryption, whatever the number of fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fedcredit.errors import (
    DecryptionError,
    InvalidRequestError,
    KeyMismatchError,
    KeyTooShortError,
)
from mpc.contribution import (
    ENCODING_VERSION,
    MIN_MODULUS_BITS,
    ContributionVector,
    pack,
    unpack,
)
from mpc.paillier import (
    PaillierKeyPair,
    PaillierPublicKey,
    Randomness,
    system_randomness,
)

#: Ciphertexts per accumulator on the wire.
CIPHERTEXTS = 1


@dataclass(frozen=True)
class EncryptedContribution:
    """The packed :class:`ContributionVector` (:data:`CIPHERTEXTS` ciphertext), under one
    requester key."""

    key_fingerprint: bytes
    ciphertexts: tuple[int, ...]
    encoding_version: int = ENCODING_VERSION

    def to_wire(self, key: PaillierPublicKey) -> tuple[bytes, ...]:
        width = key.ciphertext_bytes
        return tuple(c.to_bytes(width, "big") for c in self.ciphertexts)

    @classmethod
    def from_wire(
        cls,
        key: PaillierPublicKey,
        key_fingerprint: bytes,
        encoding_version: int,
        blobs: tuple[bytes, ...] | list[bytes],
    ) -> EncryptedContribution:
        """Parse and validate ciphertexts received from a peer for ``key``."""
        if key_fingerprint != key.fingerprint():
            raise KeyMismatchError("accumulator is not under the planned requester key")
        if encoding_version != ENCODING_VERSION:
            raise InvalidRequestError(f"unsupported encoding version {encoding_version}")
        if len(blobs) != CIPHERTEXTS:
            raise InvalidRequestError(f"accumulator must hold {CIPHERTEXTS} ciphertext")
        width = key.ciphertext_bytes
        values = []
        for blob in blobs:
            value = int.from_bytes(blob, "big")
            if len(blob) != width or not 0 < value < key.nsquare:
                raise InvalidRequestError("accumulator ciphertext out of range")
            values.append(value)
        return cls(key_fingerprint=key_fingerprint, ciphertexts=tuple(values))


#: Hands out a fresh obfuscator rⁿ mod n² for the key at hand, each one once
#: (:class:`mpc.obfuscators.ObfuscatorPool.take`).
Obfuscate = Callable[[], int]


def encrypt_contribution(
    vector: ContributionVector,
    key: PaillierPublicKey,
    randomness: Randomness = system_randomness,
    obfuscate: Obfuscate | None = None,
) -> EncryptedContribution:
    """Encrypt a vector under the requester's key: one plaintext, fresh randomness — from
    ``obfuscate`` (precomputed, for ``key``) when given, else drawn and exponentiated now."""
    if key.bits < MIN_MODULUS_BITS:  # keys are refused below this already; the packing needs it
        raise KeyTooShortError(f"the packed encoding needs a key of {MIN_MODULUS_BITS} bits")
    plaintext = pack(vector)
    ciphertext = (key.encrypt_with(plaintext, obfuscate()) if obfuscate is not None
                  else key.raw_encrypt(plaintext, randomness))
    return EncryptedContribution(key_fingerprint=key.fingerprint(), ciphertexts=(ciphertext,))


def accumulate(
    accumulator: EncryptedContribution | None,
    vector: ContributionVector,
    key: PaillierPublicKey,
    randomness: Randomness = system_randomness,
    obfuscate: Obfuscate | None = None,
) -> EncryptedContribution:
    """Add ``vector`` to the running sum; the result is re-randomized by construction."""
    own = encrypt_contribution(vector, key, randomness, obfuscate)
    return own if accumulator is None else add_encrypted(accumulator, own, key)


def add_encrypted(
    a: EncryptedContribution, b: EncryptedContribution, key: PaillierPublicKey
) -> EncryptedContribution:
    """The encrypted sum of two accumulators under the same key."""
    if a.key_fingerprint != b.key_fingerprint or a.key_fingerprint != key.fingerprint():
        raise KeyMismatchError("accumulators are not under the planned requester key")
    return EncryptedContribution(
        key_fingerprint=a.key_fingerprint,
        ciphertexts=tuple(key.add(x, y) for x, y in zip(a.ciphertexts, b.ciphertexts,
                                                        strict=True)),
    )


def rerandomize(
    accumulator: EncryptedContribution,
    key: PaillierPublicKey,
    randomness: Randomness = system_randomness,
) -> EncryptedContribution:
    """Same plaintexts, unlinkable ciphertexts: for a relay that adds nothing itself."""
    return EncryptedContribution(
        key_fingerprint=accumulator.key_fingerprint,
        ciphertexts=tuple(key.rerandomize(c, randomness) for c in accumulator.ciphertexts),
    )


def decrypt_total(accumulator: EncryptedContribution, keypair: PaillierKeyPair
                  ) -> ContributionVector:
    """Decrypt the final accumulator. The packed total is below 2^(PACKING.bits - 1) in
    absolute value by construction (mpc.contribution), far inside the bound of half a
    decryption (:meth:`mpc.paillier.PaillierKeyPair.raw_decrypt_signed_small`), which is all
    it takes. Any failure is one opaque :class:`DecryptionError`."""
    if accumulator.key_fingerprint != keypair.public.fingerprint():
        raise DecryptionError()
    try:
        (ciphertext,) = accumulator.ciphertexts
        return unpack(keypair.raw_decrypt_signed_small(ciphertext))
    except ValueError as exc:
        raise DecryptionError() from exc
