"""The reference engine: Paillier over fixed-point integers (2048-bit keys and up).

Plaintexts are signed integers modulo n (values · 2^frac); every ciphertext that leaves the
party that computed it carries a fresh DJN obfuscator (:mod:`mpc.djn`), so equal rows never give
equal ciphertexts. Feature columns are WOE-encoded (a handful of distinct values each), so
``Π_j E_j^{x_ij}`` uses one exponentiation per distinct value and column, then one modular
multiplication per cell; ``Xᵀv`` groups the rows by value the same way.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2
import numpy as np

from fedcredit.errors import InvalidRequestError
from mpc.djn import DjnObfuscator, make_hs
from mpc.paillier import MIN_KEY_BITS, PaillierKeyPair, PaillierPublicKey
from mpc.vector_he import (
    SHARE_FRAC,
    X_FRAC,
    CipherVector,
    EncryptedSums,
    EncryptedWeights,
    EngineName,
    FeatureMatrix,
    FloatArray,
    MaskSource,
    SquareSumRequest,
    SquareSumState,
    own_kind,
)

#: A gmpy2 integer (no type stubs): ciphertexts modulo n² and their factors.
Mpz = Any

MASK_BITS = 80
#: Fixed-point precision of encrypted row vectors (labels, residual terms).
VECTOR_FRAC = SHARE_FRAC - X_FRAC
_HEADER = struct.Struct(">BII")  # kind, frac, count
_KIND_VECTOR, _KIND_SUMS, _KIND_WEIGHTS, _KIND_SQUARE = 1, 2, 3, 4


@dataclass(frozen=True)
class PaillierCipherVector:
    cts: tuple[Mpz, ...]  # gmpy2 integers modulo n²
    frac: int

    @property
    def length(self) -> int:
        return len(self.cts)


@dataclass(frozen=True)
class PaillierSums:
    cts: tuple[Mpz, ...]
    frac: int
    divisor: int

    @property
    def count(self) -> int:
        return len(self.cts)


@dataclass(frozen=True)
class PaillierWeights:
    cts: tuple[Mpz, ...]  # frac = SHARE_FRAC

    @property
    def count(self) -> int:
        return len(self.cts)


@dataclass(frozen=True)
class PaillierSquareRequest:
    masked: tuple[Mpz, ...]  # Enc(v + R), frac f
    cross: Mpz  # Enc(Σ R·v), frac 2f
    frac: int


@dataclass(frozen=True)
class PaillierSquareState:
    mask_square_sum: int  # Σ R², frac 2f
    frac: int


class PaillierVectorScheme:
    """Public half: ``(n, h_s)``; any party can encrypt, add and multiply by plaintexts."""

    engine = EngineName.PAILLIER
    mask_bits = MASK_BITS

    def __init__(self, n: int, hs: int, *, min_bits: int = MIN_KEY_BITS) -> None:
        self.key = PaillierPublicKey.from_modulus(n, min_bits=min_bits)
        self.n = gmpy2.mpz(n)
        self.nn = self.n * self.n
        if not 0 < hs < int(self.nn):
            raise InvalidRequestError("DJN base out of range")
        self.hs = hs
        self._djn: DjnObfuscator | None = None
        self._width = self.key.ciphertext_bytes

    # -- keys -----------------------------------------------------------------------------
    def public_bytes(self) -> bytes:
        nb = self.key.to_bytes()
        hb = self.hs.to_bytes(self._width, "big")
        return struct.pack(">I", len(nb)) + nb + hb

    @classmethod
    def from_public_bytes(cls, data: bytes, *, min_bits: int = MIN_KEY_BITS
                          ) -> PaillierVectorScheme:
        try:
            (size,) = struct.unpack_from(">I", data)
            n = int.from_bytes(data[4 : 4 + size], "big")
            hs = int.from_bytes(data[4 + size :], "big")
        except struct.error as exc:
            raise InvalidRequestError("malformed Paillier training key") from exc
        return cls(n, hs, min_bits=min_bits)

    def _obfuscator(self) -> Mpz:
        if self._djn is None:
            self._djn = DjnObfuscator.build(int(self.n), self.hs)
        return self._djn.obfuscator()

    # -- encoding -------------------------------------------------------------------------
    def _encode(self, value: int) -> Mpz:
        return 1 + (gmpy2.mpz(value) % self.n) * self.n  # (1+n)^m mod n²

    def _decode(self, residue: int) -> int:
        return residue - int(self.n) if residue > int(self.n) // 2 else residue

    def encrypt_int(self, value: int) -> Mpz:
        return self._encode(value) * self._obfuscator() % self.nn

    def _rerandomize(self, c: Mpz) -> Mpz:
        return c * self._obfuscator() % self.nn

    # -- operations -----------------------------------------------------------------------
    def encrypt(self, values: FloatArray) -> PaillierCipherVector:
        scale = 1 << VECTOR_FRAC
        cts = tuple(self.encrypt_int(round(float(v) * scale)) for v in values)
        return PaillierCipherVector(cts, VECTOR_FRAC)

    def encrypt_weights_public(self, shares: Sequence[int]) -> PaillierWeights:
        return PaillierWeights(tuple(self.encrypt_int(int(s)) for s in shares))

    def _powers(self, c: Mpz, exponents: Sequence[int]) -> dict[int, Mpz]:
        inv = None
        out: dict[int, Mpz] = {}
        for e in exponents:
            if e >= 0:
                out[e] = gmpy2.powmod(c, e, self.nn)
            else:
                if inv is None:
                    inv = gmpy2.invert(c, self.nn)
                out[e] = gmpy2.powmod(inv, -e, self.nn)
        return out

    def linear(
        self, x: FeatureMatrix, weights: EncryptedWeights, own_shares: Sequence[int]
    ) -> PaillierCipherVector:
        weights = own_kind(PaillierWeights, weights, EngineName.PAILLIER)
        if weights.count != x.columns or len(own_shares) != x.columns:
            raise InvalidRequestError("weights do not match the feature matrix")
        nn = self.nn
        full = [
            c * self._encode(int(s)) % nn
            for c, s in zip(weights.cts, own_shares, strict=True)
        ]
        tables = [self._powers(full[j], x.distinct(j)) for j in range(x.columns)]
        cts = []
        for row in x.ints.tolist():
            acc = self._obfuscator()
            for j, v in enumerate(row):
                acc = acc * tables[j][v] % nn
            cts.append(acc)
        return PaillierCipherVector(tuple(cts), X_FRAC + SHARE_FRAC)

    def add(self, a: CipherVector, b: CipherVector) -> PaillierCipherVector:
        a = own_kind(PaillierCipherVector, a, EngineName.PAILLIER)
        b = own_kind(PaillierCipherVector, b, EngineName.PAILLIER)
        if a.length != b.length or a.frac != b.frac:
            raise InvalidRequestError("encrypted vectors do not line up")
        nn = self.nn
        return PaillierCipherVector(
            tuple(x * y % nn for x, y in zip(a.cts, b.cts, strict=True)), a.frac
        )

    def add_plain(self, a: CipherVector, values: FloatArray) -> PaillierCipherVector:
        a = own_kind(PaillierCipherVector, a, EngineName.PAILLIER)
        if a.length != len(values):
            raise InvalidRequestError("plaintext does not line up with the encrypted vector")
        scale = 1 << a.frac
        nn = self.nn
        return PaillierCipherVector(
            tuple(
                c * self._encode(round(float(v) * scale)) % nn
                for c, v in zip(a.cts, values, strict=True)
            ),
            a.frac,
        )

    def column_sums(
        self,
        x: FeatureMatrix,
        v: CipherVector,
        divisor: int,
        bound: float,
        masks: MaskSource,
    ) -> tuple[PaillierSums, list[int]]:
        v = own_kind(PaillierCipherVector, v, EngineName.PAILLIER)
        if x.rows != v.length:
            raise InvalidRequestError("encrypted vector does not match the feature matrix")
        frac = v.frac + X_FRAC
        if frac < SHARE_FRAC or divisor < 1:
            raise InvalidRequestError("column sums need frac >= SHARE_FRAC and divisor >= 1")
        nn = self.nn
        unit = divisor << (frac - SHARE_FRAC)  # one share unit, in plaintext units
        limit = int(x.max_abs() * bound * x.rows / divisor * (1 << SHARE_FRAC)) + 1
        mask_bound = limit << MASK_BITS
        cts = []
        shares = []
        for j in range(x.columns):
            column = x.ints[:, j]
            acc = gmpy2.mpz(1)
            for value in x.distinct(j):
                if value == 0:
                    continue
                group = gmpy2.mpz(1)
                for i in np.flatnonzero(column == value).tolist():
                    group = group * v.cts[i] % nn
                acc = acc * self._powers(group, (value,))[value] % nn
            m = masks.uniform(mask_bound)
            acc = acc * self._encode(m * unit) % nn
            cts.append(self._rerandomize(acc))
            shares.append(-m)
        return PaillierSums(tuple(cts), frac, divisor), shares

    def square_sum_request(
        self, v: CipherVector, bound: float, masks: MaskSource
    ) -> tuple[PaillierSquareRequest, PaillierSquareState]:
        v = own_kind(PaillierCipherVector, v, EngineName.PAILLIER)
        nn = self.nn
        limit = (int(bound) + 1) << v.frac
        rs = [masks.uniform(limit << MASK_BITS) for _ in range(v.length)]
        masked = tuple(
            self._rerandomize(c * self._encode(r) % nn)
            for c, r in zip(v.cts, rs, strict=True)
        )
        cross = gmpy2.mpz(1)
        for c, r in zip(v.cts, rs, strict=True):
            cross = cross * self._powers(c, (r,))[r] % nn
        cross_mask = masks.uniform((limit * limit * v.length) << (2 * MASK_BITS))
        cross = self._rerandomize(cross * self._encode(cross_mask) % nn)
        state = PaillierSquareState(
            mask_square_sum=sum(r * r for r in rs) - 2 * cross_mask, frac=v.frac
        )
        return PaillierSquareRequest(masked, cross, v.frac), state

    def square_sum_finish(self, state: SquareSumState, answer: int) -> float:
        state = own_kind(PaillierSquareState, state, EngineName.PAILLIER)
        # answer = Σ(v+R)² - 2(ΣRv + r2) ⇒ Σv² = answer - ΣR² + 2 r2
        total = answer - state.mask_square_sum
        return total / float(1 << (2 * state.frac))

    # -- wire -----------------------------------------------------------------------------
    def _pack(self, kind: int, frac: int, cts: Sequence[Mpz], extra: bytes = b"") -> bytes:
        width = self._width
        body = b"".join(int(c).to_bytes(width, "big") for c in cts)
        return _HEADER.pack(kind, frac, len(cts)) + extra + body

    def _unpack(self, data: bytes, kind: int, extra: int = 0) -> tuple[int, bytes, list[Mpz]]:
        try:
            got, frac, count = _HEADER.unpack_from(data)
        except struct.error as exc:
            raise InvalidRequestError("malformed encrypted payload") from exc
        head = _HEADER.size + extra
        width = self._width
        if got != kind or len(data) != head + count * width:
            raise InvalidRequestError("encrypted payload has the wrong kind or length")
        nn = int(self.nn)
        cts: list[Mpz] = []
        for k in range(count):
            c = int.from_bytes(data[head + k * width : head + (k + 1) * width], "big")
            if not 0 < c < nn:
                raise InvalidRequestError("ciphertext out of range")
            cts.append(gmpy2.mpz(c))
        return frac, data[_HEADER.size : head], cts

    def dump(self, obj: object) -> bytes:
        if isinstance(obj, PaillierCipherVector):
            return self._pack(_KIND_VECTOR, obj.frac, obj.cts)
        if isinstance(obj, PaillierSums):
            return self._pack(_KIND_SUMS, obj.frac, obj.cts, struct.pack(">Q", obj.divisor))
        if isinstance(obj, PaillierWeights):
            return self._pack(_KIND_WEIGHTS, SHARE_FRAC, obj.cts)
        if isinstance(obj, PaillierSquareRequest):
            return self._pack(_KIND_SQUARE, obj.frac, (*obj.masked, obj.cross))
        raise TypeError(f"cannot serialize {type(obj).__name__}")

    def load_vector(self, data: bytes) -> PaillierCipherVector:
        frac, _, cts = self._unpack(data, _KIND_VECTOR)
        return PaillierCipherVector(tuple(cts), frac)

    def load_sums(self, data: bytes) -> PaillierSums:
        frac, extra, cts = self._unpack(data, _KIND_SUMS, 8)
        (divisor,) = struct.unpack(">Q", extra)
        if divisor < 1:
            raise InvalidRequestError("divisor must be positive")
        return PaillierSums(tuple(cts), frac, divisor)

    def load_weights(self, data: bytes) -> PaillierWeights:
        _, _, cts = self._unpack(data, _KIND_WEIGHTS)
        return PaillierWeights(tuple(cts))

    def load_square_request(self, data: bytes) -> PaillierSquareRequest:
        frac, _, cts = self._unpack(data, _KIND_SQUARE)
        if not cts:
            raise InvalidRequestError("empty square-sum request")
        return PaillierSquareRequest(tuple(cts[:-1]), cts[-1], frac)


class PaillierVectorKeyHolder:
    """The key holder (arbiter / label holder): decrypts only masked aggregates."""

    def __init__(self, keys: PaillierKeyPair, hs: int) -> None:
        self._keys = keys
        self._scheme = PaillierVectorScheme(keys.public.n, hs)

    @classmethod
    def generate(cls, bits: int = 2048) -> PaillierVectorKeyHolder:
        keys = PaillierKeyPair.generate(bits)
        return cls(keys, make_hs(keys.public.n))

    @property
    def scheme(self) -> PaillierVectorScheme:
        return self._scheme

    def _decrypt(self, c: Mpz) -> int:
        return self._scheme._decode(self._keys.raw_decrypt(int(c)))

    def encrypt_weights(self, shares: Sequence[int]) -> PaillierWeights:
        return self._scheme.encrypt_weights_public(shares)

    def decrypt_sums(self, sums: EncryptedSums) -> list[int]:
        sums = own_kind(PaillierSums, sums, EngineName.PAILLIER)
        unit = sums.divisor << (sums.frac - SHARE_FRAC)
        out = []
        for c in sums.cts:
            value = self._decrypt(c)
            q, r = divmod(value, unit)
            out.append(q + (1 if 2 * r >= unit else 0))
        return out

    def square_sum_answer(self, request: SquareSumRequest) -> int:
        request = own_kind(PaillierSquareRequest, request, EngineName.PAILLIER)
        total = sum(self._decrypt(c) ** 2 for c in request.masked)
        return total - 2 * self._decrypt(request.cross)

    def release(self, shares: Sequence[int]) -> list[int]:
        return [int(s) for s in shares]

    def decrypt_vector(self, v: CipherVector) -> FloatArray:
        v = own_kind(PaillierCipherVector, v, EngineName.PAILLIER)
        scale = float(1 << v.frac)
        return np.array([self._decrypt(c) / scale for c in v.cts], dtype=float)

