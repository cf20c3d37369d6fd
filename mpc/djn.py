"""Cheap Paillier randomness: Damgård-Jurik-Nielsen short exponents over a fixed base.

A textbook Paillier obfuscator ``rⁿ mod n²`` costs a 2048-bit exponentiation (≈13 ms here).
DJN replace it by ``h_s^alpha`` with ``h_s = (-x²)^n mod n²`` published with the key
(mpc.paillier.djn_base) and a random ``alpha`` of :data:`EXPONENT_BITS` bits; ``h_s`` is an n-th
residue, so ``(1+n)^m · h_s^alpha`` decrypts as usual. With a fixed base the exponentiation becomes
one table lookup and one multiplication per 8-bit window: 56 multiplications, ≈0.4 ms with
gmpy2, from a 7 MiB table built once per key.

Security level: semantic security rests on the DJN assumption that ``h_s^alpha`` for a short
alpha is indistinguishable from a uniform n-th residue. The generic attack on a short exponent
(Pollard's lambda) costs 2^(bits/2) group operations: 2^224 at 448 bits, far beyond the 112-bit
strength of a 2048-bit modulus (NIST SP 800-57), which stays the level of the whole scheme.
448 bits is Tencent Angel PowerFL's default; SecretFlow's HEU ZPaillier takes half the modulus
(1,024 bits), which ``bench/crypto.py`` also measures for comparison (docs/security.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gmpy2

WINDOW_BITS = 8
#: Length of the random exponent alpha (see the module docstring for the security level).
EXPONENT_BITS = 448

#: Draws the short exponent alpha for a bit length (``secrets`` by default; tests inject).
ExponentSource = Callable[[int], int]


def system_exponent(bits: int) -> int:
    return secrets.randbits(bits)


def make_hs(n: int, x: int | None = None) -> int:
    """The key holder's public base ``h_s = (-x²)^n mod n²`` for a random unit x."""
    nn = n * n
    while x is None or gmpy2.gcd(x, n) != 1:
        x = secrets.randbelow(n - 2) + 2
    h = (-x * x) % n
    return int(gmpy2.powmod(h, n, nn))


@dataclass(frozen=True)
class DjnObfuscator:
    """Fixed-base table for ``h_s^alpha`` under one public key: row i holds
    ``h_s^(d·2^(8i))`` for every byte value d."""

    n: int
    hs: int
    exponent_bits: int
    _table: tuple[tuple[object, ...], ...] = field(repr=False, compare=False)

    @classmethod
    def build(cls, n: int, hs: int, exponent_bits: int = EXPONENT_BITS) -> DjnObfuscator:
        """The table for ``h_s^alpha`` with alpha of ``exponent_bits`` bits (the default unless a
        benchmark compares lengths)."""
        nn = gmpy2.mpz(n) * n
        bits = exponent_bits
        windows = -(-bits // WINDOW_BITS)
        base = gmpy2.mpz(hs)
        table = []
        for _ in range(windows):
            row = [gmpy2.mpz(1)]
            for _ in range((1 << WINDOW_BITS) - 1):
                row.append(row[-1] * base % nn)
            table.append(tuple(row))
            base = row[-1] * base % nn  # base^(2^WINDOW_BITS)
        return cls(n=n, hs=hs, exponent_bits=bits, _table=tuple(table))

    def obfuscator(self, source: ExponentSource = system_exponent) -> Any:
        """A fresh ``h_s^alpha`` (a gmpy2 integer, which gmpy2 ships untyped)."""
        alpha = source(self.exponent_bits)
        if not 0 <= alpha < 1 << self.exponent_bits:
            raise ValueError(f"the exponent must have at most {self.exponent_bits} bits")
        nn = gmpy2.mpz(self.n) * self.n
        acc = gmpy2.mpz(1)
        mask = (1 << WINDOW_BITS) - 1
        for row in self._table:
            digit = alpha & mask
            if digit:
                acc = acc * row[digit] % nn
            alpha >>= WINDOW_BITS
        return acc
