"""This node's obfuscator pools, one per requester key, refilled by a background thread.

A hop encrypts its contribution under the requester's key; with a pool the exponentiation was
done ahead of time (mpc.obfuscators), and the hop does one multiplication. The refiller keeps a
pool for every active member's key in the directory (and for any key a plan brought), computing
one obfuscator at a time so that serving threads are never held up for more than one
exponentiation, resting as long as it worked (at most half a core), and sleeps while every
pool is full (for ``idle_s``, or until a pool is down to half). Pools live in memory only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from mpc.obfuscators import ObfuscatorPool
from mpc.paillier import PaillierPublicKey


class ObfuscatorPools:
    def __init__(self, capacity: int, keys: Callable[[], Iterable[PaillierPublicKey]],
                 idle_s: float = 1.0) -> None:
        """``capacity`` obfuscators per key (0: no pools, every encryption pays in full);
        ``keys``: the requester keys to keep pools for (re-read on every round)."""
        self._capacity = capacity
        self._keys = keys
        self._idle_s = idle_s
        self._pools: dict[bytes, ObfuscatorPool] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def for_key(self, key: PaillierPublicKey) -> ObfuscatorPool:
        """The pool of ``key``, made on first use (the refiller fills it from then on)."""
        fingerprint = key.fingerprint()
        with self._lock:
            pool = self._pools.get(fingerprint)
            if pool is None:
                pool = self._pools[fingerprint] = ObfuscatorPool(key, self._capacity)
                self._wake.set()
        return pool

    def take(self, key: PaillierPublicKey) -> int:
        """A fresh obfuscator for ``key`` (used once); the refiller makes up for it — on its
        next idle round, or at once when the pool is down to half (waking it on every take
        cost the serving thread a thread switch per evaluation)."""
        pool = self.for_key(key)
        value = pool.take()
        if 2 * len(pool) <= pool.capacity:
            self._wake.set()
        return value

    def pools(self) -> list[ObfuscatorPool]:
        with self._lock:
            return list(self._pools.values())

    def refill_round(self) -> int:
        """One obfuscator for every pool with room; how many were made."""
        for key in self._keys():
            self.for_key(key)
        return sum(pool.refill_one() for pool in self.pools())

    def start(self) -> None:
        if self._capacity == 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="obfuscator-refill", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            if self.refill_round() == 0:  # every pool is full: wait for a take or a new key
                self._wake.wait(self._idle_s)
                self._wake.clear()
            else:
                # Rest as long as it worked: the refill takes at most half a core (the
                # exponentiations release the GIL, but the machine's cores are shared).
                self._stop.wait(time.perf_counter() - started)
