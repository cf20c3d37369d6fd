"""Both training engines behind one interface: the same algebra, Paillier exact, CKKS close."""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest

from fedcredit.errors import InvalidRequestError
from mpc.djn import EXPONENT_BITS, DjnObfuscator, make_hs
from mpc.vector_ckks import CkksVectorKeyHolder
from mpc.vector_he import SHARE_ONE, FeatureMatrix, SystemMasks, from_share_units, to_share_units
from mpc.vector_keys import load_scheme
from mpc.vector_paillier import PaillierVectorKeyHolder

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module", params=["paillier", "ckks"])
def holder(request: pytest.FixtureRequest, keypair):
    if request.param == "paillier":
        return PaillierVectorKeyHolder(keypair, make_hs(keypair.public.n))
    return CkksVectorKeyHolder.generate()


def _tolerance(holder: object) -> float:
    return 1e-9 if isinstance(holder, PaillierVectorKeyHolder) else 1e-4


def _setup(n: int = 120, d: int = 4, seed: int = 3):
    rng = np.random.default_rng(seed)
    x = FeatureMatrix.quantize(np.round(rng.normal(size=(n, d)), 1))
    w = rng.normal(size=d) * 0.5
    masks = [int(v) for v in rng.integers(-(2**60), 2**60, size=d)]
    own = list(masks)  # the party's share: a large mask
    theirs = [a - m for a, m in zip(to_share_units(w), masks, strict=True)]  # the arbiter's
    y = rng.integers(0, 2, n).astype(float)
    return x, w, own, theirs, y


def test_linear_then_masked_column_sums_reassemble_the_gradient(holder) -> None:
    scheme = load_scheme(holder.scheme.engine, holder.scheme.public_bytes())  # as a party has it
    x, w, own, theirs, y = _setup()
    weights = scheme.load_weights(scheme.dump(holder.encrypt_weights(theirs)))
    z = scheme.linear(x, weights, own)
    residual = scheme.add_plain(scheme.load_vector(scheme.dump(z)), 2.0 - 4.0 * y)
    sums, party_shares = scheme.column_sums(x, residual, 4 * x.rows, 64.0, SystemMasks())
    arbiter_shares = holder.decrypt_sums(scheme.load_sums(scheme.dump(sums)))
    gradient = from_share_units([a + b for a, b in zip(arbiter_shares, party_shares, strict=True)])
    xf = x.floats
    expected = xf.T @ (0.5 + 0.25 * (xf @ w) - y) / x.rows
    assert gradient == pytest.approx(expected, abs=_tolerance(holder))
    # what the arbiter decrypted is masked: far from the true sums
    assert all(abs(a) > 1e3 * SHARE_ONE for a in arbiter_shares)


def test_masked_sum_of_squares(holder) -> None:
    scheme = holder.scheme
    x, w, own, theirs, _ = _setup(seed=5)
    z = scheme.linear(x, holder.encrypt_weights(theirs), own)
    request, state = scheme.square_sum_request(z, 8.0, SystemMasks())
    answer = holder.square_sum_answer(scheme.load_square_request(scheme.dump(request)))
    expected = float(np.sum((x.floats @ w) ** 2))
    assert scheme.square_sum_finish(state, answer) == pytest.approx(expected, rel=1e-4)


def test_encrypt_add_and_decrypt_a_vector(holder) -> None:
    scheme = holder.scheme
    a = np.array([0.5, -1.25, 3.0])
    b = np.array([1.0, 2.0, -4.0])
    total = scheme.add(scheme.encrypt(a), scheme.encrypt(b))
    assert holder.decrypt_vector(total) == pytest.approx(a + b, abs=1e-5)


def test_released_shares_are_flooded_only_with_ckks(holder) -> None:
    shares = [123 * SHARE_ONE, -7 * SHARE_ONE]
    released = holder.release(shares)
    if isinstance(holder, PaillierVectorKeyHolder):
        assert released == shares
    else:
        assert released != shares
        assert from_share_units(released) == pytest.approx([123, -7], abs=1e-3)


def test_malformed_payloads_are_refused(holder) -> None:
    scheme = holder.scheme
    good = scheme.dump(scheme.encrypt(np.array([1.0, 2.0])))
    for bad in (b"", good[:-3], b"\x07" + good[1:]):
        with pytest.raises(InvalidRequestError):
            scheme.load_vector(bad)
    with pytest.raises(InvalidRequestError):
        scheme.load_sums(good)  # the wrong kind


def test_mismatched_shapes_are_refused(holder) -> None:
    scheme = holder.scheme
    x, _, own, theirs, _ = _setup(n=10, d=3)
    with pytest.raises(InvalidRequestError):
        scheme.linear(x, holder.encrypt_weights(theirs[:2]), own)
    with pytest.raises(InvalidRequestError):
        scheme.add(scheme.encrypt(np.zeros(3)), scheme.encrypt(np.zeros(4)))


def test_djn_obfuscators_are_fixed_base_powers(keypair) -> None:
    n = keypair.public.n
    hs = make_hs(n, x=12345)
    table = DjnObfuscator.build(n, hs)
    alpha = 0xDEADBEEF_12345678_9ABCDEF0
    assert table.obfuscator(lambda bits: alpha) == gmpy2.powmod(hs, alpha, n * n)
    assert table.exponent_bits == EXPONENT_BITS
    # h_s is an n-th residue: (1+n)^m · h_s^alpha decrypts to m
    holder = PaillierVectorKeyHolder(keypair, hs)
    assert holder.decrypt_vector(holder.scheme.encrypt(np.array([3.5, -2.0]))).tolist() == [
        3.5, -2.0]


def test_a_ckks_public_key_must_not_carry_the_secret_key() -> None:
    holder = CkksVectorKeyHolder.generate()
    secret = bytes(holder._context.serialize(save_secret_key=True))
    with pytest.raises(InvalidRequestError):
        load_scheme(holder.scheme.engine, secret)


def test_an_engine_refuses_the_other_engines_ciphertexts(keypair) -> None:
    paillier = PaillierVectorKeyHolder(keypair, make_hs(keypair.public.n)).scheme
    ckks = CkksVectorKeyHolder.generate().scheme
    with pytest.raises(InvalidRequestError, match="expected a ckks"):
        ckks.add(paillier.encrypt(np.zeros(2)), paillier.encrypt(np.zeros(2)))
    with pytest.raises(InvalidRequestError, match="expected a paillier"):
        paillier.add_plain(ckks.encrypt(np.zeros(2)), np.zeros(2))
