"""The fast engine: CKKS (TenSEAL), 8,192 training rows per ciphertext.

Parameters: ring degree 16,384, coefficient moduli 60/40/40/40/60 bits (240 of the 438 bits
SEAL allows at 128-bit security), scale 2^40. The protocol's deepest path — encrypted weights x
features, then x features again for the gradient (or squared for the validation loss) — uses
two levels and is decrypted with a 100-bit modulus left, the headroom the masks need.

No rotation (Galois) keys exist: a sum over slots is released to the key holder as a vector of
individually masked slots whose masks the sender knows the total of, so the key holder sums the
decrypted slots and learns only the masked total. CKKS is approximate: masks hide to 2^-30
statistically (not 2^-80 as with Paillier), and every value that leaves the key holder
is noise-flooded (uniform noise of 2^-12, far above the ~2^-20 decryption error) against the
Li-Micciancio key-recovery attack. See docs/training.md.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tenseal as ts

from fedcredit.errors import InvalidRequestError
from mpc.vector_he import (
    SHARE_FRAC,
    SHARE_ONE,
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

POLY_DEGREE = 16384
COEFF_BITS = (60, 40, 40, 40, 60)
SCALE_BITS = 40
SLOTS = POLY_DEGREE // 2
MASK_BITS = 30
#: Flooding noise added to every value released by the key holder, in share units (2^-12).
FLOOD_UNITS = 1 << (SHARE_FRAC - 12)
_KIND_VECTOR, _KIND_SUMS, _KIND_WEIGHTS, _KIND_SQUARE = 1, 2, 3, 4


@dataclass(frozen=True)
class CkksCipherVector:
    chunks: tuple[ts.CKKSVector, ...]
    length: int


@dataclass(frozen=True)
class CkksSums:
    cts: tuple[ts.CKKSVector, ...]

    @property
    def count(self) -> int:
        return len(self.cts)


@dataclass(frozen=True)
class CkksWeights:
    cts: tuple[ts.CKKSVector, ...]  # each weight share replicated over every slot

    @property
    def count(self) -> int:
        return len(self.cts)


@dataclass(frozen=True)
class CkksSquareRequest:
    ct: ts.CKKSVector


@dataclass(frozen=True)
class CkksSquareState:
    mask_total: int  # share units


def _chunk_count(length: int) -> int:
    return max(1, math.ceil(length / SLOTS))


def _chunk(values: FloatArray, c: int) -> list[float]:
    """Slots of chunk ``c`` (rows c·SLOTS …), zero-padded — built on demand: a wide matrix
    as Python lists all at once would take gigabytes."""
    part = np.zeros(SLOTS)
    piece = values[c * SLOTS : (c + 1) * SLOTS]
    part[: len(piece)] = piece
    return part.tolist()


def _chunks(values: Sequence[float] | FloatArray, length: int) -> list[list[float]]:
    arr = np.zeros(max(1, math.ceil(length / SLOTS)) * SLOTS)
    arr[:length] = np.asarray(values, dtype=float)[:length]
    return [arr[k : k + SLOTS].tolist() for k in range(0, len(arr), SLOTS)]


def _slot_masks(masks: MaskSource, slot_bound: float, count: int) -> tuple[list[float], int]:
    """Per-slot masks uniform over [-2^k, 2^k), 2^k >= 2^MASK_BITS times the bound, drawn as
    53-bit integers times a power of two so each is an exact double (what the ciphertext
    holds) with an exact total in share units (what the caller keeps)."""
    k = math.ceil(math.log2(max(slot_bound, 2.0**-SHARE_FRAC))) + MASK_BITS
    rbits = min(52, k + SHARE_FRAC)
    raw = (masks.words(count) >> np.uint64(63 - rbits)).astype(np.int64) - (1 << rbits)
    scale = 2.0 ** (k - rbits)
    return (raw.astype(float) * scale).tolist(), sum(raw.tolist()) << (k - rbits + SHARE_FRAC)


class CkksVectorScheme:
    """Public half: a TenSEAL context without its secret key (relinearization keys only)."""

    engine = EngineName.CKKS
    mask_bits = MASK_BITS

    def __init__(self, context: ts.Context) -> None:
        if context.is_private():
            raise ValueError("a scheme holds the public context only")
        self.context = context

    def public_bytes(self) -> bytes:
        return bytes(self.context.serialize(save_secret_key=False))

    @classmethod
    def from_public_bytes(cls, data: bytes) -> CkksVectorScheme:
        try:
            context = ts.context_from(data)
        except Exception as exc:  # TenSEAL raises plain exceptions on garbage
            raise InvalidRequestError("malformed CKKS training key") from exc
        if context.is_private():
            raise InvalidRequestError("a CKKS training key must not contain the secret key")
        context.global_scale = 2.0**SCALE_BITS
        return cls(context)

    def encrypt(self, values: FloatArray) -> CkksCipherVector:
        return CkksCipherVector(
            tuple(ts.ckks_vector(self.context, c) for c in _chunks(values, len(values))),
            len(values),
        )

    def linear(
        self, x: FeatureMatrix, weights: EncryptedWeights, own_shares: Sequence[int]
    ) -> CkksCipherVector:
        weights = own_kind(CkksWeights, weights, EngineName.CKKS)
        if weights.count != x.columns or len(own_shares) != x.columns:
            raise InvalidRequestError("weights do not match the feature matrix")
        # Add the caller's share inside the ciphertext first: both shares are large (masks),
        # their sum is small, and CKKS multiplication errors grow with the operand.
        full = [w + [s / SHARE_ONE] * SLOTS for w, s in zip(weights.cts, own_shares, strict=True)]
        out = []
        for c in range(_chunk_count(x.rows)):
            acc = None
            for j in range(x.columns):
                term = full[j] * _chunk(x.floats[:, j], c)
                acc = term if acc is None else acc + term
            out.append(acc if acc is not None else ts.ckks_vector(self.context, [0.0] * SLOTS))
        return CkksCipherVector(tuple(out), x.rows)

    def add(self, a: CipherVector, b: CipherVector) -> CkksCipherVector:
        a = own_kind(CkksCipherVector, a, EngineName.CKKS)
        b = own_kind(CkksCipherVector, b, EngineName.CKKS)
        if a.length != b.length:
            raise InvalidRequestError("encrypted vectors do not line up")
        return CkksCipherVector(
            tuple(p + q for p, q in zip(a.chunks, b.chunks, strict=True)), a.length
        )

    def add_plain(self, a: CipherVector, values: FloatArray) -> CkksCipherVector:
        a = own_kind(CkksCipherVector, a, EngineName.CKKS)
        if a.length != len(values):
            raise InvalidRequestError("plaintext does not line up with the encrypted vector")
        return CkksCipherVector(
            tuple(p + c for p, c in zip(a.chunks, _chunks(values, a.length), strict=True)),
            a.length,
        )

    def column_sums(
        self,
        x: FeatureMatrix,
        v: CipherVector,
        divisor: int,
        bound: float,
        masks: MaskSource,
    ) -> tuple[CkksSums, list[int]]:
        v = own_kind(CkksCipherVector, v, EngineName.CKKS)
        if x.rows != v.length:
            raise InvalidRequestError("encrypted vector does not match the feature matrix")
        slot_bound = x.max_abs() * bound * len(v.chunks) / divisor
        cts = []
        shares = []
        for j in range(x.columns):
            column = x.floats[:, j] / divisor
            acc = v.chunks[0] * _chunk(column, 0)  # a vector has at least one chunk
            for c, chunk in enumerate(v.chunks[1:], start=1):
                acc = acc + chunk * _chunk(column, c)
            slot_masks, total = _slot_masks(masks, slot_bound, SLOTS)
            cts.append(acc + slot_masks)
            shares.append(-total)
        return CkksSums(tuple(cts)), shares

    def square_sum_request(
        self, v: CipherVector, bound: float, masks: MaskSource
    ) -> tuple[CkksSquareRequest, CkksSquareState]:
        v = own_kind(CkksCipherVector, v, EngineName.CKKS)
        acc = v.chunks[0] * v.chunks[0]
        for chunk in v.chunks[1:]:
            acc = acc + chunk * chunk
        slot_masks, total = _slot_masks(masks, bound * bound * len(v.chunks), SLOTS)
        return CkksSquareRequest(acc + slot_masks), CkksSquareState(total)

    def square_sum_finish(self, state: SquareSumState, answer: int) -> float:
        state = own_kind(CkksSquareState, state, EngineName.CKKS)
        return (answer - state.mask_total) / SHARE_ONE

    # -- wire -----------------------------------------------------------------------------
    def dump(self, obj: object) -> bytes:
        if isinstance(obj, CkksCipherVector):
            return _pack(_KIND_VECTOR, obj.length, obj.chunks)
        if isinstance(obj, CkksSums):
            return _pack(_KIND_SUMS, 0, obj.cts)
        if isinstance(obj, CkksWeights):
            return _pack(_KIND_WEIGHTS, 0, obj.cts)
        if isinstance(obj, CkksSquareRequest):
            return _pack(_KIND_SQUARE, 0, (obj.ct,))
        raise TypeError(f"cannot serialize {type(obj).__name__}")

    def _load(self, data: bytes, kind: int) -> tuple[int, list[ts.CKKSVector]]:
        extra, blobs = _unpack(data, kind)
        try:
            return extra, [ts.ckks_vector_from(self.context, b) for b in blobs]
        except Exception as exc:
            raise InvalidRequestError("malformed CKKS ciphertext") from exc

    def load_vector(self, data: bytes) -> CkksCipherVector:
        length, cts = self._load(data, _KIND_VECTOR)
        if len(cts) != max(1, math.ceil(length / SLOTS)):
            raise InvalidRequestError("CKKS vector has the wrong number of chunks")
        return CkksCipherVector(tuple(cts), length)

    def load_sums(self, data: bytes) -> CkksSums:
        return CkksSums(tuple(self._load(data, _KIND_SUMS)[1]))

    def load_weights(self, data: bytes) -> CkksWeights:
        return CkksWeights(tuple(self._load(data, _KIND_WEIGHTS)[1]))

    def load_square_request(self, data: bytes) -> CkksSquareRequest:
        cts = self._load(data, _KIND_SQUARE)[1]
        if len(cts) != 1:
            raise InvalidRequestError("square-sum request holds one ciphertext")
        return CkksSquareRequest(cts[0])


def _pack(kind: int, extra: int, cts: Sequence[ts.CKKSVector]) -> bytes:
    blobs = [bytes(c.serialize()) for c in cts]
    head = struct.pack(">BQI", kind, extra, len(blobs))
    return head + b"".join(struct.pack(">I", len(b)) + b for b in blobs)


def _unpack(data: bytes, kind: int) -> tuple[int, list[bytes]]:
    try:
        got, extra, count = struct.unpack_from(">BQI", data)
        pos = struct.calcsize(">BQI")
        blobs = []
        for _ in range(count):
            (size,) = struct.unpack_from(">I", data, pos)
            pos += 4
            blobs.append(data[pos : pos + size])
            if len(blobs[-1]) != size:
                raise struct.error("truncated")
            pos += size
    except struct.error as exc:
        raise InvalidRequestError("malformed encrypted payload") from exc
    if got != kind or pos != len(data):
        raise InvalidRequestError("encrypted payload has the wrong kind or length")
    return extra, blobs


class CkksVectorKeyHolder:
    """Holds the secret context; decrypts masked aggregates; floods what it releases."""

    def __init__(self, context: ts.Context, flood: MaskSource) -> None:
        if not context.is_private():
            raise ValueError("the key holder needs the secret context")
        self._context = context
        public = context.copy()
        public.make_context_public()
        self._scheme = CkksVectorScheme(public)
        self._flood = flood

    @classmethod
    def generate(cls, flood: MaskSource | None = None) -> CkksVectorKeyHolder:
        from mpc.vector_he import SystemMasks

        context = ts.context(
            ts.SCHEME_TYPE.CKKS, poly_modulus_degree=POLY_DEGREE,
            coeff_mod_bit_sizes=list(COEFF_BITS),
        )
        context.global_scale = 2.0**SCALE_BITS
        return cls(context, flood or SystemMasks())

    @property
    def scheme(self) -> CkksVectorScheme:
        return self._scheme

    def _decrypt_sum(self, ct: ts.CKKSVector) -> int:
        ct.link_context(self._context)
        return round(math.fsum(ct.decrypt()) * SHARE_ONE)

    def encrypt_weights(self, shares: Sequence[int]) -> CkksWeights:
        return CkksWeights(
            tuple(ts.ckks_vector(self._context, [s / SHARE_ONE] * SLOTS) for s in shares)
        )

    def decrypt_sums(self, sums: EncryptedSums) -> list[int]:
        sums = own_kind(CkksSums, sums, EngineName.CKKS)
        return [self._decrypt_sum(ct) for ct in sums.cts]

    def square_sum_answer(self, request: SquareSumRequest) -> int:
        request = own_kind(CkksSquareRequest, request, EngineName.CKKS)
        return self._decrypt_sum(request.ct) + self._flood.uniform(FLOOD_UNITS)

    def release(self, shares: Sequence[int]) -> list[int]:
        return [int(s) + self._flood.uniform(FLOOD_UNITS) for s in shares]

    def decrypt_vector(self, v: CipherVector) -> FloatArray:
        v = own_kind(CkksCipherVector, v, EngineName.CKKS)
        out: list[float] = []
        for chunk in v.chunks:
            chunk.link_context(self._context)
            out.extend(chunk.decrypt())
        return np.array(out[: v.length], dtype=float)
