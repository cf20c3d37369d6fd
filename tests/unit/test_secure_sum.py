from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcredit.errors import DecryptionError, InvalidRequestError, KeyMismatchError
from mpc.contribution import (
    ENCODING_VERSION,
    EXPOSURE_FIELDS,
    FIELDS,
    FIXED_FIELDS,
    FIXED_POINT_SCALE,
    MAX_ABS_PARTIAL,
    MAX_EXPOSURE,
    MAX_FIXED_SHARE,
    MAX_MEMBERS,
    ContributionVector,
    decode,
    encode,
)
from mpc.paillier import PaillierKeyPair
from mpc.secure_sum import (
    EncryptedContribution,
    accumulate,
    decrypt_total,
    encrypt_contribution,
    rerandomize,
)

pytestmark = pytest.mark.unit

_partials = st.floats(min_value=-50, max_value=50, allow_nan=False)
vectors = st.builds(
    ContributionVector,
    model_partial=_partials,
    reason_payment_history=_partials,
    reason_amounts_owed=_partials,
    reason_credit_history=_partials,
    reason_new_credit=_partials,
    outstanding_debt_cents=st.integers(0, 10**12),
    active_loans=st.integers(0, 50),
    open_credit_lines=st.integers(0, 50),
    accounts_30dpd=st.integers(0, 20),
    accounts_90dpd=st.integers(0, 20),
    inquiries_90d=st.integers(0, 100),
    has_record=st.integers(0, 1),
    flagged=st.integers(0, 1),
    with_active_loans=st.integers(0, 1),
)


@given(vectors)
def test_encoding_round_trips_within_fixed_point_resolution(v: ContributionVector) -> None:
    back = decode(encode(v))
    for name in FIXED_FIELDS:
        assert abs(getattr(back, name) - getattr(v, name)) <= 0.5 / FIXED_POINT_SCALE
    assert all(getattr(back, f) == getattr(v, f) for f in EXPOSURE_FIELDS)


@given(st.lists(vectors, min_size=1, max_size=4))
@settings(max_examples=8, deadline=None)
def test_decrypted_total_equals_plaintext_sum(
    keypair: PaillierKeyPair, members: list[ContributionVector]
) -> None:
    acc = None
    for v in members:
        acc = accumulate(acc, v, keypair.public)
    assert acc is not None
    total = decrypt_total(acc, keypair)
    plain = sum(members[1:], members[0])
    for name in FIXED_FIELDS:
        assert abs(getattr(total, name) - getattr(plain, name)) <= len(members) / FIXED_POINT_SCALE
    assert all(getattr(total, f) == getattr(plain, f) for f in EXPOSURE_FIELDS)


def test_accumulate_rerandomizes_the_accumulator(keypair: PaillierKeyPair) -> None:
    key = keypair.public
    acc = encrypt_contribution(ContributionVector(model_partial=1.5, has_record=1), key)
    zero = ContributionVector.zero()
    after = accumulate(acc, zero, key)
    # Adding an encryption of zero changes every ciphertext yet not the plaintext.
    assert all(a != b for a, b in zip(acc.ciphertexts, after.ciphertexts, strict=True))
    assert decrypt_total(after, keypair) == decrypt_total(acc, keypair)
    relayed = rerandomize(after, key)
    assert relayed.ciphertexts != after.ciphertexts
    assert decrypt_total(relayed, keypair) == decrypt_total(after, keypair)


def test_known_answer_vector_with_fixed_randomness(keypair: PaillierKeyPair) -> None:
    key = keypair.public
    v = ContributionVector(model_partial=-0.25, outstanding_debt_cents=1234, has_record=1)
    enc = encrypt_contribution(v, key, randomness=lambda _n: 3)
    # One plaintext: -0.25·10^9 in slot 0, 1234 cents in slot 5 (after five 68-bit slots),
    # has_record in slot 11 (five 68-bit and six 71-bit slots below it); modulo n.
    packed = -250_000_000 + (1234 << (5 * 68)) + (1 << (5 * 68 + 6 * 71))
    n2 = key.nsquare
    assert enc.ciphertexts == ((1 + key.n * (packed % key.n)) * pow(3, key.n, n2) % n2,)
    assert decrypt_total(enc, keypair) == v


def test_negative_partials_sum_correctly(keypair: PaillierKeyPair) -> None:
    acc = accumulate(None, ContributionVector(model_partial=-3.25), keypair.public)
    acc = accumulate(acc, ContributionVector(model_partial=1.0), keypair.public)
    assert decrypt_total(acc, keypair).model_partial == pytest.approx(-2.25, abs=1e-9)


def test_accumulators_under_another_key_are_refused(
    keypair: PaillierKeyPair, other_keypair: PaillierKeyPair
) -> None:
    acc = encrypt_contribution(ContributionVector.zero(), other_keypair.public)
    with pytest.raises(KeyMismatchError):
        accumulate(acc, ContributionVector.zero(), keypair.public)
    with pytest.raises(DecryptionError):
        decrypt_total(acc, keypair)


def test_wire_form_is_validated(keypair: PaillierKeyPair) -> None:
    key = keypair.public
    acc = encrypt_contribution(ContributionVector.zero(), key)
    blobs = acc.to_wire(key)
    assert all(len(b) == key.ciphertext_bytes for b in blobs)
    version = ENCODING_VERSION
    assert EncryptedContribution.from_wire(key, key.fingerprint(), version, blobs) == acc
    with pytest.raises(KeyMismatchError):
        EncryptedContribution.from_wire(key, b"\x00" * 32, version, blobs)
    for count in ((), (*blobs, *blobs)):  # the packed vector is exactly one ciphertext
        with pytest.raises(InvalidRequestError, match="1 ciphertext"):
            EncryptedContribution.from_wire(key, key.fingerprint(), version, count)
    # Versions 1 and 2 (a ciphertext per field) and unknown versions are refused.
    for other in (1, 2, version + 1):
        with pytest.raises(InvalidRequestError, match="encoding version"):
            EncryptedContribution.from_wire(key, key.fingerprint(), other, blobs)
    too_big = (key.nsquare).to_bytes(key.ciphertext_bytes, "big")
    with pytest.raises(InvalidRequestError, match="out of range"):
        EncryptedContribution.from_wire(key, key.fingerprint(), version, (too_big, *blobs[1:]))


def test_a_corrupted_accumulator_fails_opaquely(keypair: PaillierKeyPair) -> None:
    key = keypair.public
    acc = encrypt_contribution(ContributionVector.zero(), key)
    # An exposure that decrypts to a negative count is not a valid encoding, nor is a
    # plaintext beyond the packing's top slot.
    negative_count = -(1 << (len(FIXED_FIELDS) * 72))
    for plaintext in (negative_count, 1 << 1100, key.n // 2 - 1):
        corrupted = EncryptedContribution(acc.key_fingerprint, (key.raw_encrypt(plaintext),))
        with pytest.raises(DecryptionError) as info:
            decrypt_total(corrupted, keypair)
        assert str(info.value) == "decryption failed"


@pytest.mark.parametrize("kwargs", [{"model_partial": float("nan")}, {"active_loans": -1},
                                    {"reason_new_credit": float("inf")}, {"flagged": -1}])
def test_invalid_vectors_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ContributionVector(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"model_partial": 2e6}, {"outstanding_debt_cents": 2**53},
                                    {"reason_payment_history": -2e6}])
def test_shares_beyond_the_per_member_bounds_are_not_encoded(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        encode(ContributionVector(**kwargs))  # type: ignore[arg-type]


def test_totals_may_exceed_one_members_bound(keypair: PaillierKeyPair) -> None:
    big = ContributionVector(model_partial=9e5, outstanding_debt_cents=2**53 - 1)
    acc = accumulate(accumulate(None, big, keypair.public), big, keypair.public)
    total = decrypt_total(acc, keypair)
    assert total.outstanding_debt_cents == 2 * (2**53 - 1)
    assert total.model_partial == pytest.approx(1.8e6)


@pytest.mark.parametrize("sign", [1, -1])
def test_the_largest_alliance_at_the_bounds_decrypts_exactly(keypair: PaillierKeyPair,
                                                              sign: int) -> None:
    """MAX_MEMBERS members, every field at its per-member bound, summed under encryption
    (one share raised to the member count: the same plaintext as that many additions):
    half a decryption still returns every field exactly."""
    key = keypair.public
    share = ContributionVector(**dict.fromkeys(FIXED_FIELDS, sign * MAX_ABS_PARTIAL),  # type: ignore[arg-type]
                               **dict.fromkeys(EXPOSURE_FIELDS, MAX_EXPOSURE - 1))
    one = encrypt_contribution(share, key)
    (c,) = one.ciphertexts
    summed = EncryptedContribution(one.key_fingerprint, (pow(c, MAX_MEMBERS, key.nsquare),))
    total = decrypt_total(summed, keypair)
    for name in FIXED_FIELDS:
        assert round(getattr(total, name) * FIXED_POINT_SCALE) == (
            sign * MAX_FIXED_SHARE * MAX_MEMBERS)
    for name in EXPOSURE_FIELDS:
        assert getattr(total, name) == (MAX_EXPOSURE - 1) * MAX_MEMBERS


def test_field_order_is_stable() -> None:
    # The wire encoding depends on this order; changing it is a protocol version bump.
    assert ENCODING_VERSION == 4
    assert FIELDS == (
        "model_partial", "reason_payment_history", "reason_amounts_owed",
        "reason_credit_history", "reason_new_credit", "outstanding_debt_cents", "active_loans",
        "open_credit_lines", "accounts_30dpd", "accounts_90dpd", "inquiries_90d", "has_record",
        "flagged", "with_active_loans",
    )
