"""Precomputed obfuscators: correct encryptions, each value handed out once."""

from __future__ import annotations

import pytest

from mpc.contribution import ContributionVector
from mpc.obfuscators import ObfuscatorPool, obfuscator
from mpc.paillier import PaillierKeyPair
from mpc.secure_sum import accumulate, decrypt_total, encrypt_contribution

pytestmark = pytest.mark.unit


def test_an_obfuscated_encryption_equals_the_textbook_one(keypair: PaillierKeyPair) -> None:
    key = keypair.public
    rn = obfuscator(key, randomness=lambda _n: 3)
    assert rn == pow(3, key.n, key.nsquare)
    assert key.encrypt_with(-5, rn) == key.raw_encrypt(-5, randomness=lambda _n: 3)


def test_a_pool_hands_each_obfuscator_out_once_and_never_overfills(
    keypair: PaillierKeyPair
) -> None:
    draws = iter(range(2, 100))
    pool = ObfuscatorPool(keypair.public, capacity=3, randomness=lambda _n: next(draws))
    assert [pool.refill_one() for _ in range(4)] == [True, True, True, False]
    assert len(pool) == 3 and pool.full
    taken = [pool.take() for _ in range(5)]  # three from the pool, two computed on demand
    assert len(set(taken)) == 5
    assert (pool.taken_from_pool, pool.computed_on_demand, len(pool)) == (3, 2, 0)
    with pytest.raises(ValueError):
        ObfuscatorPool(keypair.public, capacity=-1)


def test_sums_with_pooled_obfuscators_decrypt_exactly(keypair: PaillierKeyPair) -> None:
    pool = ObfuscatorPool(keypair.public, capacity=4)
    while pool.refill_one():
        pass
    a = ContributionVector(model_partial=-1.5, outstanding_debt_cents=700, has_record=1)
    b = ContributionVector(model_partial=0.25, flagged=1)
    acc = accumulate(None, a, keypair.public, obfuscate=pool.take)
    acc = accumulate(acc, b, keypair.public, obfuscate=pool.take)
    assert decrypt_total(acc, keypair) == a + b
    again = encrypt_contribution(a, keypair.public, obfuscate=pool.take)
    first = encrypt_contribution(a, keypair.public, obfuscate=pool.take)
    assert again.ciphertexts != first.ciphertexts  # fresh randomness every time


def test_the_refiller_fills_each_known_key_and_makes_up_for_what_is_taken(
    keypair: PaillierKeyPair, other_keypair: PaillierKeyPair
) -> None:
    import time

    from node.obfuscator_pools import ObfuscatorPools

    pools = ObfuscatorPools(3, lambda: [keypair.public], idle_s=0.05)

    def until(condition: object, what: str) -> None:
        deadline = time.monotonic() + 20
        while not condition():  # type: ignore[operator]
            assert time.monotonic() < deadline, what
            time.sleep(0.01)

    pools.start()
    try:
        mine = pools.for_key(keypair.public)
        until(lambda: mine.full, "the directory key's pool is filled")
        pools.take(keypair.public)
        assert mine.taken_from_pool == 1
        until(lambda: mine.full, "what was taken is made up for")
        theirs = pools.for_key(other_keypair.public)  # a key a plan brought
        until(lambda: theirs.full, "a new key's pool is filled too")
        assert len(mine) == 3 and mine.computed_on_demand == 0
    finally:
        pools.stop()
    assert pools._thread is not None and not pools._thread.is_alive()
    assert ObfuscatorPools(0, lambda: [keypair.public]).for_key(keypair.public).capacity == 0
