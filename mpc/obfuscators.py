"""Precomputed Paillier obfuscators: the random n-th residues, made before they are needed.

A Paillier encryption ``(1 + m·n) · rⁿ mod n²`` costs one 2048-bit exponentiation for ``rⁿ``
(about 13 ms here) and a multiplication for the rest (microseconds). The obfuscator does not
depend on the message, so a node computes them for each requester key while it is idle and
spends one per encryption on the hot path. Each is handed out once: :meth:`ObfuscatorPool.take`
removes it, so no obfuscator ever encrypts two messages. An empty pool computes one on the spot
rather than wait.

How each is made depends on what the key holder published:

* a key with a DJN base ``h_s`` (mpc.djn; every key this project generates has one) gets
  ``h_s^alpha`` for a fresh 448-bit alpha from a fixed-base table built once per key (≈ 0.4 ms
  instead of ≈ 13 ms; 7 MiB of table per key). Security: the Damgård-Jurik-Nielsen assumption
  that such a value is indistinguishable from a uniform n-th residue (SecretFlow's HEU makes the
  same one); the generic attack on the exponent costs 2^224, beyond the 112-bit strength of the
  2048-bit modulus (mpc.djn);
* a key without one gets textbook ``rⁿ`` for a uniform r — no assumption beyond Paillier's.

Obfuscators are as sensitive as the plaintexts they will hide (``c / rⁿ`` reveals ``m``): a pool
lives in memory only, never on disk, never in a log.
"""

from __future__ import annotations

import threading
from collections import deque

import gmpy2

from mpc.djn import DjnObfuscator, ExponentSource, system_exponent
from mpc.paillier import PaillierPublicKey, Randomness, system_randomness


def obfuscator(key: PaillierPublicKey, randomness: Randomness = system_randomness) -> int:
    """A fresh textbook rⁿ mod n² for ``key``. The exponentiation releases the GIL (gmpy2's
    ``allow_release_gil``), so a refill thread does not hold up the threads serving requests."""
    r = randomness(key.n)
    with gmpy2.context(allow_release_gil=True):
        return int(gmpy2.powmod(r, key.n, key.nsquare))


class ObfuscatorPool:
    """Fresh obfuscators for one public key, each handed out once. Thread-safe."""

    def __init__(self, key: PaillierPublicKey, capacity: int,
                 randomness: Randomness = system_randomness,
                 exponents: ExponentSource = system_exponent) -> None:
        if capacity < 0:
            raise ValueError("a pool's capacity cannot be negative")
        self.key = key
        self.capacity = capacity
        self._randomness = randomness
        self._exponents = exponents
        self._ready: deque[int] = deque()
        self._lock = threading.Lock()
        self._table_lock = threading.Lock()
        self._table: DjnObfuscator | None = None
        self.taken_from_pool = 0
        self.computed_on_demand = 0

    @property
    def short_exponent(self) -> bool:
        """True when this key's obfuscators are DJN ``h_s^alpha`` (the key published a base)."""
        return self.key.hs is not None

    def make(self) -> int:
        """One fresh obfuscator for the key, not kept: DJN from the fixed-base table (built on
        first use) when the key has a base, else textbook."""
        if self.key.hs is None:
            return obfuscator(self.key, self._randomness)
        with self._table_lock:
            if self._table is None:
                self._table = DjnObfuscator.build(self.key.n, self.key.hs)
            table = self._table
        return int(table.obfuscator(self._exponents))

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
        return self.make()

    def refill_one(self) -> bool:
        """Compute one obfuscator if the pool has room (outside the lock); False when full."""
        if self.full:
            return False
        value = self.make()
        with self._lock:
            if len(self._ready) >= self.capacity:
                return False  # filled meanwhile: drop it, never keep more than asked
            self._ready.append(value)
        return True
