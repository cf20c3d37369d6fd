"""Identifiers: national ids shared across institutions, keys local to one of them.

A person's CN resident id is the alliance's join key (after pseudonymization). It is built
from the person's global index through a seeded bijection onto (region, sequence) slots, so ids
are unique without a lookup table, whatever the chunking, and their order reveals nothing. The
embedded birth date is the person's own and the check character follows GB 11643-1999.

Institution-local keys (customer, loan, installment, transaction, inquiry ids) are a prefix and
digits from another seeded bijection of a counter, different at every institution: the same
person's ``customer_id`` at two members shares nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fedcredit.synth.dates import year_month_day

#: Real province-level codes; city and county parts are synthetic (01-12, 01-18).
_PROVINCES = (11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45,
              46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65)
REGION_CODES = np.array([p * 10_000 + c * 100 + d for p in _PROVINCES
                         for c in range(1, 13) for d in range(1, 19)], dtype=np.int64)
SEQUENCES_PER_REGION = 1000
#: How many distinct people the identifier space holds.
IDENTIFIER_SLOTS = len(REGION_CODES) * SEQUENCES_PER_REGION
_CN_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_CN_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_ZERO = ord("0")
CN_LENGTH = 18

#: Local key counters below this are clean rows; at or above it, deliberately bad ones, so the
#: clean rows are the same at every dirty rate.
DIRTY_KEY_BASE = 1_000_000_000
KEY_DIGITS = 10


def _coprime_multiplier(rng: np.random.Generator, modulus: int, low: int, high: int) -> int:
    while True:
        candidate = int(rng.integers(low, high))
        if math.gcd(candidate, modulus) == 1:
            return candidate


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """ASCII digits of non-negative ints, zero-padded: uint8 [n, width]."""
    out = np.empty((len(values), width), dtype=np.uint8)
    rest = values.astype(np.int64)
    for position in range(width - 1, -1, -1):
        rest, digit = np.divmod(rest, 10)
        out[:, position] = digit
    out += _ZERO
    return out


def fixed_width_strings(matrix: np.ndarray) -> pa.StringArray:
    """A string array from an ASCII matrix, one row per string (no per-row Python)."""
    rows, width = matrix.shape
    data = pa.py_buffer(np.ascontiguousarray(matrix))
    offsets = pa.py_buffer(np.arange(rows + 1, dtype=np.int32) * width)
    return pa.StringArray.from_buffers(rows, offsets, data)


def ragged_strings(matrix: np.ndarray, lengths: np.ndarray) -> pa.StringArray:
    """Row ``i`` is the first ``lengths[i]`` bytes of ``matrix[i]``."""
    keep = np.arange(matrix.shape[1])[None, :] < lengths[:, None]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.StringArray.from_buffers(
        len(lengths), pa.py_buffer(offsets), pa.py_buffer(matrix[keep].tobytes())
    )


@dataclass(frozen=True)
class IdentifierSpace:
    """A seeded bijection from person index to a (region, sequence) slot."""

    multiplier: int
    offset: int

    @classmethod
    def from_rng(cls, rng: np.random.Generator) -> IdentifierSpace:
        slots = IDENTIFIER_SLOTS
        return cls(_coprime_multiplier(rng, slots, slots // 3, slots),
                   int(rng.integers(0, slots)))

    def cn_matrix(self, index: np.ndarray, birth_days: np.ndarray) -> np.ndarray:
        """Canonical CN resident ids of people ``index`` born on ``birth_days``: uint8 [n, 18]."""
        slot = (index.astype(np.int64) * self.multiplier + self.offset) % IDENTIFIER_SLOTS
        region = REGION_CODES[slot // SEQUENCES_PER_REGION]
        year, month, day = year_month_day(birth_days)
        out = np.empty((len(index), CN_LENGTH), dtype=np.uint8)
        out[:, 0:6] = _digits(region, 6)
        out[:, 6:14] = _digits(year * 10_000 + month * 100 + day, 8)
        out[:, 14:17] = _digits(slot % SEQUENCES_PER_REGION, 3)
        out[:, 17] = _CN_CHECK[_check_code(out)]
        return out


def _check_code(matrix: np.ndarray) -> np.ndarray:
    """Index into ``10X98765432`` of each id's right check character."""
    return ((matrix[:, :17].astype(np.int64) - _ZERO) @ _CN_WEIGHTS) % 11


def with_wrong_check(matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same ids with a check character that does not match (a typo a real extract has)."""
    out = matrix.copy()
    out[:, 17] = _CN_CHECK[(_check_code(matrix) + rng.integers(1, 11, len(out))) % 11]
    return out


def styled(matrix: np.ndarray, rng: np.random.Generator, *, lower_x: float,
           separated: float) -> pa.StringArray:
    """Ids as an institution writes them: some with a lower-case x or spaces/dashes.

    Every variant normalizes back to the canonical id (``mpc.pseudonym.normalize_identifier``).
    """
    rows = len(matrix)
    out = np.zeros((rows, CN_LENGTH + 2), dtype=np.uint8)
    out[:, :CN_LENGTH] = matrix
    lower = (rng.random(rows) < lower_x) & (matrix[:, 17] == ord("X"))
    out[lower, 17] = ord("x")
    split = rng.random(rows) < separated
    if split.any():
        source = out[split, :CN_LENGTH]
        separator = np.where(rng.random(int(split.sum())) < 0.5, ord(" "), ord("-"))
        parts = np.empty((len(source), CN_LENGTH + 2), dtype=np.uint8)
        parts[:, 0:6] = source[:, 0:6]
        parts[:, 6] = separator
        parts[:, 7:15] = source[:, 6:14]
        parts[:, 15] = separator
        parts[:, 16:20] = source[:, 14:18]
        out[split] = parts
    lengths = np.where(split, CN_LENGTH + 2, CN_LENGTH).astype(np.int32)
    return ragged_strings(out, lengths)


_HALF = 10 ** (KEY_DIGITS // 2)
_HALF_DIGITS = np.array([f"{i:05d}".encode() for i in range(_HALF)], dtype="S5")


@dataclass(frozen=True)
class KeyFormat:
    """An institution's key for one table: ``prefix`` + digits of a permuted counter.

    The permutation is a three-round Feistel network on the two 5-digit halves (addition mod
    10^5), a bijection on 10-digit numbers: keys are unique and consecutive counters look
    unrelated.
    """

    prefix: str
    rounds: tuple[tuple[int, int], ...]

    @classmethod
    def from_rng(cls, prefix: str, rng: np.random.Generator) -> KeyFormat:
        return cls(prefix, tuple((int(rng.integers(1, _HALF)), int(rng.integers(0, _HALF)))
                                 for _ in range(3)))

    def permute(self, counters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two 5-digit halves of each permuted counter."""
        high, low = np.divmod(counters.astype(np.int64) % 10**KEY_DIGITS, _HALF)
        for factor, shift in self.rounds:
            high, low = low, (high + (low + shift) ** 2 % _HALF * factor) % _HALF
        return high, low

    def keys(self, counters: np.ndarray) -> pa.StringArray:
        rows = len(counters)
        prefix = np.frombuffer(self.prefix.encode("ascii"), dtype=np.uint8)
        width = len(prefix) + KEY_DIGITS
        matrix = np.empty((rows, width), dtype=np.uint8)
        matrix[:, : len(prefix)] = prefix
        for part, start in zip(self.permute(counters), (len(prefix), width - 5), strict=True):
            matrix[:, start:start + 5] = _HALF_DIGITS.take(part).view(np.uint8).reshape(rows, 5)
        return fixed_width_strings(matrix)
