from __future__ import annotations

import phe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcredit.errors import DecryptionError, KeyTooShortError
from mpc.paillier import SMALL_PLAINTEXT_BITS, PaillierKeyPair, PaillierPublicKey

pytestmark = pytest.mark.unit


def test_generating_a_short_key_is_refused() -> None:
    with pytest.raises(KeyTooShortError):
        PaillierKeyPair.generate(1024)


def test_a_short_public_key_from_a_peer_is_refused(keypair: PaillierKeyPair) -> None:
    short = (1 << 1023) + 1
    with pytest.raises(KeyTooShortError, match="1024 bits"):
        PaillierPublicKey.from_modulus(short)
    assert PaillierPublicKey.from_bytes(keypair.public.to_bytes()).n == keypair.public.n


def test_known_answer_with_fixed_randomness(keypair: PaillierKeyPair) -> None:
    key = keypair.public
    n, n2 = key.n, key.nsquare
    c = key.raw_encrypt(42, randomness=lambda _n: 12345)
    assert c == ((1 + n * 42) * pow(12345, n, n2)) % n2
    assert keypair.raw_decrypt(c) == 42


def test_negative_values_wrap_modulo_n(keypair: PaillierKeyPair) -> None:
    c = keypair.public.raw_encrypt(-5)
    assert keypair.raw_decrypt(c) == keypair.public.n - 5


def test_addition_and_rerandomization(keypair: PaillierKeyPair) -> None:
    key = keypair.public
    a, b = key.raw_encrypt(7), key.raw_encrypt(35)
    total = key.add(a, b)
    again = key.rerandomize(total)
    assert again != total
    assert keypair.raw_decrypt(total) == keypair.raw_decrypt(again) == 42


def test_fresh_encryptions_of_the_same_value_differ(keypair: PaillierKeyPair) -> None:
    assert keypair.public.raw_encrypt(0) != keypair.public.raw_encrypt(0)


@pytest.mark.parametrize("bad", [0, -1, "n2"])
def test_decrypting_out_of_range_is_opaque(keypair: PaillierKeyPair, bad: int | str) -> None:
    value = keypair.public.nsquare if bad == "n2" else bad
    with pytest.raises(DecryptionError) as info:
        keypair.raw_decrypt(int(value))
    assert str(info.value) == "decryption failed"


@settings(max_examples=60, deadline=None)
@given(st.integers(-(2**SMALL_PLAINTEXT_BITS) + 1, 2**SMALL_PLAINTEXT_BITS - 1)
       | st.sampled_from([0, 1, -1, 2**SMALL_PLAINTEXT_BITS - 1, -(2**SMALL_PLAINTEXT_BITS) + 1]))
def test_half_a_decryption_recovers_every_small_signed_plaintext(
        keypair: PaillierKeyPair, value: int) -> None:
    key = keypair.public
    c = key.raw_encrypt(value)
    assert keypair.raw_decrypt_signed_small(c) == value
    full = keypair.raw_decrypt(c)
    assert (full - key.n if full > key.n // 2 else full) == value
    # Sums stay exact as long as they stay inside the bound.
    half = value // 2
    total = key.add(key.raw_encrypt(half), key.raw_encrypt(value - half))
    assert keypair.raw_decrypt_signed_small(total) == value


def test_half_a_decryption_uses_the_larger_prime_and_fails_opaquely(
        keypair: PaillierKeyPair) -> None:
    key = keypair.public
    assert max(keypair._private.p, keypair._private.q).bit_length() >= SMALL_PLAINTEXT_BITS + 2
    # A plaintext beyond the bound is not recovered (the caller's encoding must prevent it).
    big = 1 << (key.bits - 8)
    assert keypair.raw_decrypt_signed_small(key.raw_encrypt(big)) != big
    for bad in (0, key.nsquare, -3):
        with pytest.raises(DecryptionError) as info:
            keypair.raw_decrypt_signed_small(bad)
        assert str(info.value) == "decryption failed"
    # A key built below the minimum (tests only) has no prime large enough: refused outright.
    _, small = phe.generate_paillier_keypair(n_length=1024)
    short = PaillierKeyPair.from_primes(small.p, small.q, min_bits=1024)
    with pytest.raises(KeyTooShortError):
        short.raw_decrypt_signed_small(short.public.raw_encrypt(1))


def test_private_key_export_round_trip(keypair: PaillierKeyPair) -> None:
    restored = PaillierKeyPair.import_private(keypair.export_private())
    assert restored.public.n == keypair.public.n
    assert restored.raw_decrypt(keypair.public.raw_encrypt(99)) == 99
    assert str(keypair._private.p) not in repr(keypair)
    assert "_private" not in repr(keypair)


def test_every_key_pair_publishes_a_djn_base_derived_from_its_primes(
    keypair: PaillierKeyPair, other_keypair: PaillierKeyPair
) -> None:
    key = keypair.public
    assert key.hs is not None and 1 < key.hs < key.nsquare
    assert key.hs != other_keypair.public.hs
    # the same every time the key is loaded: nothing more than p and q is stored
    reloaded = PaillierKeyPair.import_private(keypair.export_private())
    assert reloaded.public.hs == key.hs
    assert b"hs" not in keypair.export_private()
    # an n-th residue: (1+n)^m · h_s decrypts to m
    assert keypair.raw_decrypt(key.encrypt_with(42, key.hs)) == 42
    assert keypair.raw_decrypt(key.hs) == 0


def test_a_public_key_travels_with_its_base_and_a_bad_base_is_refused(
    keypair: PaillierKeyPair
) -> None:
    from fedcredit.errors import InvalidRequestError
    from fedcredit.serde import public_key_from_pb, public_key_to_pb

    key = keypair.public
    assert len(key.hs_bytes()) == key.ciphertext_bytes
    back = public_key_from_pb(public_key_to_pb(key))
    assert back == key and back.hs == key.hs and back.fingerprint() == key.fingerprint()
    bare = PaillierPublicKey.from_bytes(key.to_bytes())
    assert bare.hs is None and bare.hs_bytes() == b"" and public_key_from_pb(
        public_key_to_pb(bare)).hs is None
    for bad in (0, 1, key.n, key.n * 3, key.nsquare, key.nsquare + 5):
        with pytest.raises(InvalidRequestError):
            PaillierPublicKey.from_modulus(key.n, hs=bad)
