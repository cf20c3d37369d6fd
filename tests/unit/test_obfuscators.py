"""Precomputed obfuscators: correct encryptions, each value handed out once; DJN short-exponent
obfuscators for keys that publish a base, textbook rⁿ for keys that do not."""

from __future__ import annotations

import itertools
import secrets

import gmpy2
import pytest

from mpc.contribution import ContributionVector
from mpc.djn import EXPONENT_BITS
from mpc.obfuscators import ObfuscatorPool, obfuscator
from mpc.paillier import PaillierKeyPair, PaillierPublicKey
from mpc.secure_sum import accumulate, decrypt_total, encrypt_contribution

pytestmark = pytest.mark.unit


def without_base(key: PaillierPublicKey) -> PaillierPublicKey:
    """The same key as published by a holder that gives no DJN base."""
    return PaillierPublicKey.from_modulus(key.n)


def test_an_obfuscated_encryption_equals_the_textbook_one(keypair: PaillierKeyPair) -> None:
    key = keypair.public
    rn = obfuscator(key, randomness=lambda _n: 3)
    assert rn == pow(3, key.n, key.nsquare)
    assert key.encrypt_with(-5, rn) == key.raw_encrypt(-5, randomness=lambda _n: 3)


def test_a_pool_hands_each_obfuscator_out_once_and_never_overfills(
    keypair: PaillierKeyPair
) -> None:
    draws = iter(range(2, 100))
    pool = ObfuscatorPool(without_base(keypair.public), capacity=3,
                          randomness=lambda _n: next(draws))
    assert [pool.refill_one() for _ in range(4)] == [True, True, True, False]
    assert len(pool) == 3 and pool.full
    taken = [pool.take() for _ in range(5)]  # three from the pool, two computed on demand
    assert len(set(taken)) == 5
    assert (pool.taken_from_pool, pool.computed_on_demand, len(pool)) == (3, 2, 0)
    with pytest.raises(ValueError):
        ObfuscatorPool(keypair.public, capacity=-1)


def test_a_key_with_a_djn_base_gets_short_exponent_powers_of_it(
    keypair: PaillierKeyPair
) -> None:
    key = keypair.public
    assert key.hs is not None
    # three chosen exponents, then random ones
    exponents = itertools.chain([0xDEADBEEF << 400, 12345, 1],
                                iter(lambda: secrets.randbits(EXPONENT_BITS), None))
    pool = ObfuscatorPool(key, capacity=2, exponents=lambda bits: (bits, next(exponents))[1])
    assert pool.short_exponent and not ObfuscatorPool(without_base(key), 1).short_exponent
    assert pool.refill_one() and pool.refill_one() and not pool.refill_one()
    assert pool.take() == gmpy2.powmod(key.hs, 0xDEADBEEF << 400, key.nsquare)
    assert pool.take() == gmpy2.powmod(key.hs, 12345, key.nsquare)
    assert pool.take() == key.hs  # computed on demand once the pool is empty
    assert pool.computed_on_demand == 1
    # h_s is an n-th residue: it hides a message and decrypts away
    for m in (0, 1, -7, key.n // 3):
        assert keypair.raw_decrypt(key.encrypt_with(m, pool.make())) == m % key.n
    # exponents of EXPONENT_BITS (448) bits; a longer one is refused, never silently cut
    seen: list[int] = []

    def five(bits: int) -> int:
        seen.append(bits)
        return 5

    ObfuscatorPool(key, 1, exponents=five).make()
    assert seen == [EXPONENT_BITS] == [448]
    with pytest.raises(ValueError):
        ObfuscatorPool(key, 1, exponents=lambda bits: 1 << bits).make()


@pytest.mark.parametrize("published", ["with a DJN base", "textbook"])
def test_sums_with_pooled_obfuscators_decrypt_exactly(
    keypair: PaillierKeyPair, published: str
) -> None:
    key = keypair.public if published == "with a DJN base" else without_base(keypair.public)
    pool = ObfuscatorPool(key, capacity=4)
    while pool.refill_one():
        pass
    a = ContributionVector(model_partial=-1.5, outstanding_debt_cents=700, has_record=1)
    b = ContributionVector(model_partial=0.25, flagged=1)
    acc = accumulate(None, a, key, obfuscate=pool.take)
    acc = accumulate(acc, b, key, obfuscate=pool.take)
    assert decrypt_total(acc, keypair) == a + b
    again = encrypt_contribution(a, key, obfuscate=pool.take)
    first = encrypt_contribution(a, key, obfuscate=pool.take)
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
