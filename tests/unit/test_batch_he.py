"""Portfolio ciphertexts (mpc/batch_he): exact integer lanes that cannot overflow, CKKS
partials within their error, and peers' keys and ciphertexts refused unless well formed."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tenseal as ts
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedcredit.errors import ErrorCode, FedCreditError, InvalidRequestError
from fedcredit.protocol import BatchTerms
from mpc.batch_he import (
    CHUNK_SUBJECTS,
    FIELD_CAPS,
    LANE_BITS,
    MAX_ABS_PARTIAL,
    MAX_MEMBERS,
    PLAIN_MODULUS,
    BatchKeyPair,
    BatchPublicKey,
    BatchShare,
    add,
    clamp,
    decrypt,
    encrypt,
    from_wire,
    pack_lanes,
    rerandomize,
    to_wire,
    unpack_lanes,
)
from mpc.contribution import EXPOSURE_FIELDS

pytestmark = pytest.mark.unit

CAPS = np.array([FIELD_CAPS[f] for f in EXPOSURE_FIELDS], dtype=np.int64)


@pytest.fixture(scope="module")
def keys() -> BatchKeyPair:
    return BatchKeyPair.generate()


def random_share(rng: np.random.Generator, n: int) -> BatchShare:
    share, _ = clamp(rng.normal(0, 3, n),
                     np.column_stack([rng.integers(0, c + 1, n) for c in CAPS]))
    return share


@st.composite
def member_exposures(draw: st.DrawFn) -> np.ndarray:
    members = draw(st.integers(1, MAX_MEMBERS))
    rows = draw(st.integers(1, 6))
    # Values at the caps and at zero are the interesting ones; anything between too.
    columns = [draw(arrays(np.int64, (members, rows),
                           elements=st.one_of(st.just(0), st.just(int(c)), st.integers(0, int(c)))))
               for c in CAPS]
    return np.stack(columns, axis=-1)  # (members, rows, fields)


@given(member_exposures())
@settings(max_examples=200, deadline=None)
def test_lanes_of_a_sum_are_the_sum_of_lanes_and_never_wrap(values: np.ndarray) -> None:
    lanes = sum(pack_lanes(v).astype(object) for v in values)  # exact integers, any size
    assert all(int(x) < 1 << LANE_BITS for x in np.ravel(lanes))
    assert (1 << LANE_BITS) < PLAIN_MODULUS // 2  # SEAL decodes centred residues
    total = unpack_lanes(np.asarray(lanes, dtype=np.uint64))
    assert np.array_equal(total, values.sum(axis=0))


def test_the_worst_case_total_decrypts_exactly(keys: BatchKeyPair) -> None:
    """MAX_MEMBERS members, every value at its cap and every partial at its bound."""
    n = 8
    top = BatchShare(np.full(n, MAX_ABS_PARTIAL), np.tile(CAPS, (n, 1)))
    accumulator = encrypt(keys.public, top)
    for _ in range(MAX_MEMBERS - 1):
        accumulator = add(accumulator, encrypt(keys.public, top))
    total = decrypt(keys, accumulator)
    assert np.array_equal(total.exposures, np.tile(CAPS * MAX_MEMBERS, (n, 1)))
    assert np.allclose(total.partials, MAX_ABS_PARTIAL * MAX_MEMBERS, atol=1e-4)


def test_a_chunk_sums_exactly_through_the_wire(keys: BatchKeyPair) -> None:
    rng = np.random.default_rng(3)
    shares = [random_share(rng, CHUNK_SUBJECTS) for _ in range(3)]
    peer = BatchPublicKey.from_bytes(keys.public.wire)
    accumulator = encrypt(peer, shares[0])
    for share in shares[1:]:
        partials, lanes = to_wire(accumulator)
        assert len(partials) + sum(map(len, lanes)) + 32 * CHUNK_SUBJECTS < 1 << 20
        accumulator = add(from_wire(peer, CHUNK_SUBJECTS, partials, lanes),
                          encrypt(peer, share))
    total = decrypt(keys, rerandomize(peer, accumulator))
    expected = shares[0] + shares[1] + shares[2]
    assert np.array_equal(total.exposures, expected.exposures)
    assert np.max(np.abs(total.partials - expected.partials)) < 1e-5


def test_clamping_bounds_every_value_and_counts_the_changes() -> None:
    partials = np.array([0.5, 5e6, -np.inf, np.nan])
    exposures = np.tile(CAPS, (4, 1))
    exposures[1, 1] = CAPS[1] + 7
    exposures[2, 0] = -1
    share, changed = clamp(partials, exposures)
    assert share.partials.tolist() == [0.5, MAX_ABS_PARTIAL, 0.0, 0.0]  # not finite: 0
    assert share.exposures[1, 1] == CAPS[1] and share.exposures[2, 0] == 0
    assert changed == 5
    with pytest.raises(ValueError, match="clamped"):
        encrypt(BatchKeyPair.generate().public, BatchShare(partials[:1] * 0 + 5e6,
                                                           exposures[:1]))


def test_a_peer_key_must_be_public_and_of_these_parameters(keys: BatchKeyPair) -> None:
    assert BatchPublicKey.from_bytes(keys.public.wire).sha256 == hashlib.sha256(
        keys.public.wire).digest()
    weak = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=4096,
                      coeff_mod_bit_sizes=[40, 40])
    weak.make_context_public()
    frame = keys.public.wire
    ckks_len = int.from_bytes(frame[4:8], "big")
    bfv = frame[12 + ckks_len:]
    weak_bytes = weak.serialize(save_public_key=True, save_secret_key=False,
                                save_galois_keys=False, save_relin_keys=False)
    forged = b"FCB1" + len(weak_bytes).to_bytes(4, "big") + len(bfv).to_bytes(4, "big")
    with pytest.raises(InvalidRequestError, match="other parameters"):
        BatchPublicKey.from_bytes(forged + weak_bytes + bfv)
    private = keys.ckks.serialize(save_secret_key=True)
    leaky = b"FCB1" + len(private).to_bytes(4, "big") + len(bfv).to_bytes(4, "big")
    with pytest.raises(InvalidRequestError, match="exactly a public key"):
        BatchPublicKey.from_bytes(leaky + private + bfv)
    for junk in (b"", b"FCB1", frame[:-1], b"XXXX" + frame[4:], frame + b"\0"):
        with pytest.raises(InvalidRequestError):
            BatchPublicKey.from_bytes(junk)


def test_ciphertexts_shaped_for_another_chunk_are_refused(keys: BatchKeyPair) -> None:
    cipher = encrypt(keys.public, random_share(np.random.default_rng(1), 100))
    partials, lanes = to_wire(cipher)
    with pytest.raises(InvalidRequestError):
        from_wire(keys.public, 101, partials, lanes)
    with pytest.raises(InvalidRequestError):
        from_wire(keys.public, 100, partials, (*lanes, lanes[0]))
    with pytest.raises(InvalidRequestError):
        from_wire(keys.public, 100, b"junk", lanes)
    with pytest.raises(InvalidRequestError):
        add(cipher, encrypt(keys.public, random_share(np.random.default_rng(2), 99)))


def test_a_foreign_ciphertext_fails_decryption_opaquely(keys: BatchKeyPair) -> None:
    other = BatchKeyPair.generate()
    cipher = encrypt(other.public, random_share(np.random.default_rng(4), 50))
    with pytest.raises(FedCreditError) as failure:
        decrypt(keys, cipher)
    assert failure.value.code is ErrorCode.DECRYPTION_FAILED
    assert failure.value.detail == "decryption failed"


@pytest.mark.parametrize(("subjects", "chunks", "size"),
                         [(0, 1, 10), (10, 2, 10), (10, 1, 0), (10, 1, 4097), (11, 1, 10)])
def test_batch_terms_hold_together(subjects: int, chunks: int, size: int) -> None:
    with pytest.raises(ValueError):
        BatchTerms(subjects=subjects, chunks=chunks, key_sha256=b"k" * 32, chunk_subjects=size)
    terms = BatchTerms(subjects=4096 * 2 + 7, chunks=3, key_sha256=b"k" * 32,
                       chunk_subjects=4096)
    assert [terms.chunk_size(i) for i in range(3)] == [4096, 4096, 7]
