"""Paillier primitives (python-paillier underneath, gmpy2-accelerated when installed).

Raw level: integers modulo n and ciphertexts modulo n². Recipes in :mod:`mpc.secure_sum` build
on these; other code should not need them.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gmpy2
import phe
from phe import util as phe_util

from fedcredit.errors import DecryptionError, InvalidRequestError, KeyTooShortError

MIN_KEY_BITS = 2048
DEFAULT_KEY_BITS = 2048

#: Draws the Paillier randomness r for a modulus n. Must return an r in [1, n) coprime to n.
Randomness = Callable[[int], int]
#: Plaintexts :meth:`PaillierKeyPair.raw_decrypt_signed_small` recovers: absolute value below
#: 2^SMALL_PLAINTEXT_BITS. The larger prime of a modulus of at least 2048 bits exceeds 2^1023,
#: so such a plaintext is below half of it.
SMALL_PLAINTEXT_BITS = MIN_KEY_BITS // 2 - 2


def system_randomness(n: int) -> int:
    """Production randomness: uniform r in [1, n) from the OS CSPRNG."""
    while True:
        r = secrets.randbelow(n)
        if r > 0:
            return r


@dataclass(frozen=True)
class PaillierPublicKey:
    """A requester's public key (g = n + 1). Refuses moduli shorter than 2048 bits.

    ``hs`` is the key holder's DJN base ``(-x²)^n mod n²`` (mpc.djn), published with the key so
    that encrypting parties can draw cheap short-exponent randomness; ``None`` for a key
    published without one (every encryption then pays a full rⁿ). The key's identity, its
    fingerprint, is the modulus alone."""

    n: int
    _phe: phe.PaillierPublicKey = field(repr=False, compare=False, hash=False)
    hs: int | None = field(default=None, repr=False)

    @classmethod
    def from_modulus(cls, n: int, *, hs: int | None = None,
                     min_bits: int = MIN_KEY_BITS) -> PaillierPublicKey:
        if n.bit_length() < min_bits:
            raise KeyTooShortError(
                f"Paillier modulus has {n.bit_length()} bits; at least {min_bits} required"
            )
        if n % 2 == 0:
            raise KeyTooShortError("Paillier modulus must be odd")
        if hs is not None and not (1 < hs < n * n and math.gcd(hs, n) == 1):
            raise InvalidRequestError("the key's DJN base is not a unit modulo n² other than 1")
        return cls(n=n, _phe=phe.PaillierPublicKey(n), hs=hs)

    @classmethod
    def from_bytes(cls, data: bytes, *, hs: bytes = b"",
                   min_bits: int = MIN_KEY_BITS) -> PaillierPublicKey:
        """From the big-endian modulus and, when published, the big-endian DJN base."""
        return cls.from_modulus(int.from_bytes(data, "big"),
                                hs=int.from_bytes(hs, "big") if hs else None, min_bits=min_bits)

    def to_bytes(self) -> bytes:
        return self.n.to_bytes((self.n.bit_length() + 7) // 8, "big")

    def hs_bytes(self) -> bytes:
        """The DJN base, big-endian, padded to the ciphertext width (empty when there is none)."""
        return b"" if self.hs is None else self.hs.to_bytes(self.ciphertext_bytes, "big")

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    @property
    def nsquare(self) -> int:
        return self.n * self.n

    @property
    def ciphertext_bytes(self) -> int:
        return (self.nsquare.bit_length() + 7) // 8

    def fingerprint(self) -> bytes:
        """SHA-256 of the modulus (computed once per key object)."""
        cached: bytes | None = self.__dict__.get("_fingerprint")
        if cached is None:
            cached = self.__dict__["_fingerprint"] = hashlib.sha256(self.to_bytes()).digest()
        return cached

    def raw_encrypt(self, m: int, randomness: Randomness = system_randomness) -> int:
        """Encrypt an integer already reduced modulo n with fresh randomness r: (1+n)^m · r^n."""
        r = randomness(self.n)
        return int(self._phe.raw_encrypt(m % self.n, r_value=r))

    def encrypt_with(self, m: int, obfuscator: int) -> int:
        """Encrypt with a precomputed obfuscator rⁿ mod n² (mpc.obfuscators; used once):
        (1 + m·n) · rⁿ — one multiplication, no exponentiation."""
        nn = self.nsquare
        return int(phe_util.mulmod((1 + (m % self.n) * self.n) % nn, obfuscator, nn))

    def add(self, c1: int, c2: int) -> int:
        """Homomorphic addition of the plaintexts."""
        return int(phe_util.mulmod(c1, c2, self.nsquare))

    def rerandomize(self, c: int, randomness: Randomness = system_randomness) -> int:
        """Multiply by a fresh r^n: same plaintext, ciphertext unlinkable to the input."""
        r = randomness(self.n)
        return int(phe_util.mulmod(c, phe_util.powmod(r, self.n, self.nsquare), self.nsquare))


def djn_base(p: int, q: int) -> int:
    """The key holder's DJN base ``h_s = (-x²)^n mod n²`` (Damgård-Jurik-Nielsen), with the unit
    x derived from the primes by SHAKE-256: as unpredictable as a random draw to anyone without
    the private key, and the same every time the key is loaded (nothing more to store). Only the
    key holder can be trusted to pick it; a malformed base could only spoil the holder's own
    decryptions. Computed modulo p² and q² and recombined (CRT): two half-size exponentiations."""
    n = p * q
    seed = b"fedcredit djn base v1|" + p.to_bytes((p.bit_length() + 7) // 8, "big") + b"|" + \
        q.to_bytes((q.bit_length() + 7) // 8, "big")
    counter = 0
    while True:
        digest = hashlib.shake_256(seed + counter.to_bytes(4, "big")).digest(
            (n.bit_length() + 7) // 8 + 16)
        x = int.from_bytes(digest, "big") % n
        if x > 1 and math.gcd(x, n) == 1:
            break
        counter += 1
    h = (-x * x) % n
    pp, qq = p * p, q * q
    hp = int(gmpy2.powmod(h, n, pp))
    hq = int(gmpy2.powmod(h, n, qq))
    # CRT: the unique value modulo n² that is hp mod p² and hq mod q².
    return (hp + pp * ((hq - hp) * int(gmpy2.invert(pp, qq)) % qq)) % (n * n)


def _crt_half(c: int, prime: int, square: int, h: int) -> Any:
    """The plaintext modulo one prime: L(c^(prime-1) mod prime²) · h mod prime, the
    exponentiation releasing the GIL."""
    with gmpy2.context(allow_release_gil=True):
        x = gmpy2.powmod(c, prime - 1, square)
    return (x - 1) // prime * h % prime


@dataclass(frozen=True)
class PaillierKeyPair:
    """A requester's long-term key pair. The private half never leaves its node."""

    public: PaillierPublicKey
    _private: phe.PaillierPrivateKey = field(repr=False, compare=False, hash=False)

    @classmethod
    def generate(cls, bits: int = DEFAULT_KEY_BITS) -> PaillierKeyPair:
        if bits < MIN_KEY_BITS:
            raise KeyTooShortError(f"refusing to generate a {bits}-bit key; minimum {MIN_KEY_BITS}")
        _, priv = phe.generate_paillier_keypair(n_length=bits)
        return cls.from_primes(priv.p, priv.q)

    @classmethod
    def from_primes(cls, p: int, q: int, *, min_bits: int = MIN_KEY_BITS) -> PaillierKeyPair:
        """The key pair of primes p and q; its public half carries the DJN base derived from
        the primes (:func:`djn_base`), so a key file needs nothing more than p and q."""
        n = p * q
        public = PaillierPublicKey.from_modulus(n, hs=djn_base(p, q), min_bits=min_bits)
        return cls(public=public, _private=phe.PaillierPrivateKey(public._phe, p, q))

    def raw_decrypt(self, c: int) -> int:
        """Decrypt to the residue in [0, n). Opaque failure on anything out of range.

        CRT decryption as python-paillier does it (its precomputed hp, hq, p⁻¹), with the two
        half-size exponentiations releasing the GIL, so concurrent requests decrypt on every
        core."""
        if not 0 < c < self.public.nsquare:
            raise DecryptionError()
        priv = self._private
        try:
            mp = _crt_half(c, priv.p, priv.psquare, priv.hp)
            mq = _crt_half(c, priv.q, priv.qsquare, priv.hq)
            return int(mp + (mq - mp) * priv.p_inverse % priv.q * priv.p)
        except Exception as exc:  # none may leak detail
            raise DecryptionError() from exc

    def raw_decrypt_signed_small(self, c: int) -> int:
        """Decrypt a plaintext the caller knows, by construction, to be a signed integer of
        absolute value below 2^:data:`SMALL_PLAINTEXT_BITS`: half a decryption.

        Such a plaintext m is determined by m mod q for the larger prime q (q > 2^1023 for any
        modulus of 2048 bits or more), so the p half of the CRT is skipped. A plaintext outside
        the bound comes back wrong, never as an error that depends on it: callers check the
        value against their encoding's bounds. Failures are opaque."""
        priv = self._private  # python-paillier keeps p < q
        if priv.q.bit_length() < SMALL_PLAINTEXT_BITS + 2:  # only a key built below the minimum
            raise KeyTooShortError("half a decryption needs a prime of at least "
                                   f"{SMALL_PLAINTEXT_BITS + 2} bits")
        if not 0 < c < self.public.nsquare:
            raise DecryptionError()
        try:
            mq = int(_crt_half(c, priv.q, priv.qsquare, priv.hq))
            return mq - priv.q if mq > priv.q // 2 else mq
        except Exception as exc:  # none may leak detail
            raise DecryptionError() from exc

    def export_private(self) -> bytes:
        """Serialize the private key (the primes) for the node's key file. Handle as a secret."""
        priv = self._private
        return json.dumps({"kind": "paillier", "p": hex(priv.p), "q": hex(priv.q)}).encode()

    @classmethod
    def import_private(cls, data: bytes) -> PaillierKeyPair:
        doc = json.loads(data)
        if doc.get("kind") != "paillier":
            raise ValueError("not a Paillier key file")
        return cls.from_primes(int(doc["p"], 16), int(doc["q"], 16))
