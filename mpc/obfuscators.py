"""Precomputed Paillier obfuscators: the rⁿ mod n² factors, made before they are needed.

A Paillier encryption ``(1 + m·n) · rⁿ mod n²`` costs one 2048-bit exponentiation for ``rⁿ``
(about 10 ms here) and a multiplication for the rest (microseconds). The exponentiation does
not depend on the message, so a node can compute obfuscators for each requester key while it is
idle and spend one per encryption on the hot path. Each value is uniform over the n-th residues
exactly as in textbook Paillier — nothing about the security level changes — and is handed out
once: :meth:`ObfuscatorPool.take` removes it, so no obfuscator ever encrypts two messages. An
empty pool computes one on the spot rather than wait.

Obfuscators are as sensitive as the plaintexts they will hide (``c / rⁿ`` reveals ``m``): a pool
lives in memory only, never on disk, never in a log.
"""

from __future__ import annotations

import threading
from collections import deque

import gmpy2

from mpc.paillier import PaillierPublicKey, Randomness, system_randomness


def obfuscator(key: PaillierPublicKey, randomness: Randomness = system_randomness) -> int:
    """A fresh rⁿ mod n² for ``key``. The exponentiation releases the GIL (gmpy2's
    ``allow_release_gil``), so a refill thread does not hold up the threads serving requests."""
    r = randomness(key.n)
    with gmpy2.context(allow_release_gil=True):
        return int(gmpy2.powmod(r, key.n, key.nsquare))


class ObfuscatorPool:
    """Fresh obfuscators for one public key, each handed out once. Thread-safe."""

    def __init__(self, key: PaillierPublicKey, capacity: int,
                 randomness: Randomness = system_randomness) -> None:
        if capacity < 0:
            raise ValueError("a pool's capacity cannot be negative")
        self.key = key
        self.capacity = capacity
        self._randomness = randomness
        self._ready: deque[int] = deque()
        self._lock = threading.Lock()
        self.taken_from_pool = 0
        self.computed_on_demand = 0

    def __len__(self) -> int:
        return len(self._ready)

    @property
    def full(self) -> bool:
        return len(self._ready) >= self.capacity

    def take(self) -> int:
        """A fresh obfuscator: a precomputed one if any is ready, else one computed now."""
        with self._lock:
            if self._ready:
                self.taken_from_pool += 1
                return self._ready.popleft()
            self.computed_on_demand += 1
        return obfuscator(self.key, self._randomness)

    def refill_one(self) -> bool:
        """Compute one obfuscator if the pool has room (outside the lock); False when full."""
        if self.full:
            return False
        value = obfuscator(self.key, self._randomness)
        with self._lock:
            if len(self._ready) >= self.capacity:
                return False  # filled meanwhile: drop it, never keep more than asked
            self._ready.append(value)
        return True
