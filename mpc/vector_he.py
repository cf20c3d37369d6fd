"""Encrypted vectors for training: one protocol interface, two engines.

The training protocol (:mod:`mpc.vertical_lr`) needs only a handful of operations on long
encrypted vectors (one slot per training row): encrypt, add, add a plaintext, a plaintext matrix
times encrypted weights, column sums ``Xᵀv`` released to the key holder under fresh masks, and a
masked sum of squares. :class:`VectorScheme` is the public half any party holds;
:class:`VectorKeyHolder` the key holder's. Engines:

* :mod:`mpc.vector_paillier` — Paillier (phe keys, gmpy2 arithmetic, DJN randomness): exact
  fixed-point integers, masks uniform over 2^80 times the value bound. The reference.
* :mod:`mpc.vector_ckks` — CKKS (TenSEAL): thousands of rows per ciphertext, approximate, masks
  2^30 times the bound, values leaving the key holder noise-flooded. The fast path.

Fixed-point conventions shared by both: feature matrices are quantized to multiples of
2^-:data:`X_FRAC`; additive shares of weights and gradients are Python integers in units of
2^-:data:`SHARE_FRAC` (exact, unbounded — no wrap-around to reason about).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from fedcredit.errors import InvalidRequestError

X_FRAC = 20
SHARE_FRAC = 40
SHARE_ONE = 1 << SHARE_FRAC

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class EngineName(StrEnum):
    PAILLIER = "paillier"
    CKKS = "ckks"


T = TypeVar("T")


def own_kind(kind: type[T], value: object, engine: EngineName) -> T:
    """An engine's own object, or a clear error (a CKKS vector handed to Paillier, say)."""
    if not isinstance(value, kind):
        raise InvalidRequestError(
            f"expected a {engine.value} {kind.__name__}, got {type(value).__name__}"
        )
    return value


class MaskSource(Protocol):
    """Randomness for masks (injectable; :class:`SystemMasks` in production)."""

    def uniform(self, bound: int) -> int:
        """One integer uniform in [-bound, bound]."""
        ...

    def words(self, count: int) -> npt.NDArray[np.uint64]:
        """``count`` uniform 64-bit words (vectorized masks)."""
        ...


class SystemMasks:
    """Masks from the OS CSPRNG."""

    def uniform(self, bound: int) -> int:
        return secrets.randbelow(2 * bound + 1) - bound

    def words(self, count: int) -> npt.NDArray[np.uint64]:
        return np.frombuffer(secrets.token_bytes(8 * count), dtype=np.uint64)


@dataclass(frozen=True)
class FeatureMatrix:
    """A party's feature matrix, quantized to multiples of 2^-X_FRAC."""

    ints: IntArray  # [rows, features], value · 2^X_FRAC
    floats: FloatArray = field(repr=False, compare=False)  # the same values as doubles (exact)
    _distinct: tuple[tuple[int, ...], ...] = field(repr=False, compare=False, default=())

    @classmethod
    def quantize(cls, values: FloatArray) -> FeatureMatrix:
        if values.ndim != 2 or not np.all(np.isfinite(values)):
            raise ValueError("feature matrix must be 2-D and finite")
        ints = np.rint(values * (1 << X_FRAC)).astype(np.int64)
        distinct = tuple(tuple(int(v) for v in np.unique(ints[:, j])) for j in range(ints.shape[1]))
        return cls(ints=ints, floats=ints.astype(float) / (1 << X_FRAC), _distinct=distinct)

    @property
    def rows(self) -> int:
        return int(self.ints.shape[0])

    @property
    def columns(self) -> int:
        return int(self.ints.shape[1])

    def distinct(self, j: int) -> tuple[int, ...]:
        return self._distinct[j]

    def max_abs(self) -> float:
        return float(np.abs(self.ints).max(initial=0)) / (1 << X_FRAC)

    def rows_subset(self, rows: IntArray) -> FeatureMatrix:
        return FeatureMatrix.quantize(self.floats[rows])


class CipherVector(Protocol):
    @property
    def length(self) -> int: ...


class EncryptedSums(Protocol):
    @property
    def count(self) -> int: ...


class EncryptedWeights(Protocol):
    @property
    def count(self) -> int: ...


class SquareSumRequest(Protocol): ...


class SquareSumState(Protocol): ...


class VectorScheme(Protocol):
    """What every party can do with the key holder's public key."""

    @property
    def engine(self) -> EngineName: ...

    @property
    def mask_bits(self) -> int: ...

    def public_bytes(self) -> bytes: ...

    def encrypt(self, values: FloatArray) -> CipherVector:
        """Encrypt a vector (row-aligned values such as labels)."""
        ...

    def linear(
        self, x: FeatureMatrix, weights: EncryptedWeights, own_shares: Sequence[int]
    ) -> CipherVector:
        """``X · (s + t)`` where ``t`` is encrypted (``weights``) and ``s`` is the caller's."""
        ...

    def add(self, a: CipherVector, b: CipherVector) -> CipherVector: ...

    def add_plain(self, a: CipherVector, values: FloatArray) -> CipherVector: ...

    def column_sums(
        self,
        x: FeatureMatrix,
        v: CipherVector,
        divisor: int,
        bound: float,
        masks: MaskSource,
    ) -> tuple[EncryptedSums, list[int]]:
        """Masked ``Xᵀv / divisor`` for the key holder, and the caller's shares (-masks).

        ``bound`` bounds |v| elementwise; masks are sized from it so the key holder's view is
        statistically independent of the sums (to 2^-mask_bits). Decrypted with
        :meth:`VectorKeyHolder.decrypt_sums`, key holder's share + caller's share =
        ``round(Xᵀv / divisor · 2^SHARE_FRAC)`` (Paillier: exactly; CKKS: to its precision).
        """
        ...

    def square_sum_request(
        self, v: CipherVector, bound: float, masks: MaskSource
    ) -> tuple[SquareSumRequest, SquareSumState]:
        """First message of the masked Σv² sub-protocol (the key holder learns nothing)."""
        ...

    def square_sum_finish(self, state: SquareSumState, answer: int) -> float:
        """Σv² from the key holder's answer (an integer in engine-defined units)."""
        ...

    def dump(self, obj: CipherVector | EncryptedSums | EncryptedWeights | SquareSumRequest
             ) -> bytes: ...

    def load_vector(self, data: bytes) -> CipherVector: ...

    def load_sums(self, data: bytes) -> EncryptedSums: ...

    def load_weights(self, data: bytes) -> EncryptedWeights: ...

    def load_square_request(self, data: bytes) -> SquareSumRequest: ...


class VectorKeyHolder(Protocol):
    """The key holder: encrypts weight shares, decrypts only masked aggregates."""

    @property
    def scheme(self) -> VectorScheme: ...

    def encrypt_weights(self, shares: Sequence[int]) -> EncryptedWeights: ...

    def decrypt_sums(self, sums: EncryptedSums) -> list[int]:
        """Shares in units of 2^-SHARE_FRAC (kept by the key holder; never released raw)."""
        ...

    def square_sum_answer(self, request: SquareSumRequest) -> int:
        """Answer to a masked Σv² request; reveals Σv² only to the requester (flooded: CKKS)."""
        ...

    def release(self, shares: Sequence[int]) -> list[int]:
        """Shares as they may leave the key holder (CKKS: noise-flooded; Paillier: as is)."""
        ...

    def decrypt_vector(self, v: CipherVector) -> FloatArray:
        """A whole vector, for a key holder entitled to it (the guest's own joint scores)."""
        ...


def to_share_units(values: FloatArray) -> list[int]:
    return [round(float(v) * SHARE_ONE) for v in values]


def from_share_units(shares: Sequence[int]) -> FloatArray:
    return np.array([int(s) / SHARE_ONE for s in shares], dtype=float)
