from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.vector_he import SHARE_ONE, SystemMasks, from_share_units, to_share_units
from mpc.vertical_lr import (
    Shares,
    StepRule,
    add_shares,
    gd_step,
    reshare,
    reveal,
    validation_loss,
)
from scoring.logistic import taylor_loss

pytestmark = pytest.mark.unit

RULE = StepRule.of(learning_rate=4.0, momentum=0.5, l2=0.01)
floats = st.floats(-5, 5, allow_nan=False)


@settings(max_examples=80, deadline=None)
@given(
    w=st.lists(floats, min_size=3, max_size=3),
    v=st.lists(floats, min_size=3, max_size=3),
    g=st.lists(floats, min_size=3, max_size=3),
    mask_seed=st.integers(0, 2**32),
)
def test_a_step_on_two_shares_is_the_step_on_the_weights(w, v, g, mask_seed) -> None:
    rng = np.random.default_rng(mask_seed)
    m = [int(x) for x in rng.integers(-(2**62), 2**62, size=9)]
    wa, va, ga = to_share_units(w), to_share_units(v), to_share_units(g)
    party = Shares(tuple(m[0:3]), tuple(m[3:6]))
    arbiter = Shares(tuple(a - b for a, b in zip(wa, m[0:3], strict=True)),
                     tuple(a - b for a, b in zip(va, m[3:6], strict=True)))
    reg = (False, True, True)
    g_party = m[6:9]
    g_arbiter = [a - b for a, b in zip(ga, g_party, strict=True)]
    total = add_shares(gd_step(party, g_party, RULE, reg), gd_step(arbiter, g_arbiter, RULE, reg))
    lam = np.array([0.0, 0.01, 0.01])
    v_exp = 0.5 * np.array(v) - 4.0 * (np.array(g) + lam * np.array(w))
    w_exp = np.array(w) + v_exp
    assert from_share_units(total.w) == pytest.approx(w_exp, abs=1e-9)
    assert from_share_units(total.v) == pytest.approx(v_exp, abs=1e-9)


def test_resharing_keeps_the_sum_and_replaces_the_party_share() -> None:
    shares = Shares((5 * SHARE_ONE, -3), (7, 11))
    kept, delta = reshare(shares, SystemMasks(), mask_bits=30)
    assert add_shares(kept, delta) == shares
    assert kept.w != shares.w
    assert all(abs(k) <= 16 * SHARE_ONE << 30 for k in kept.w + kept.v)


def test_reveal_and_loss_formula() -> None:
    assert reveal([SHARE_ONE, 2 * SHARE_ONE], [SHARE_ONE // 2, -SHARE_ONE]) == (1.5, 1.0)
    z = np.array([0.3, -1.2, 2.0])
    y = np.array([1, 0, 1])
    r = z + 2 - 4 * y
    assert validation_loss(float(np.sum(r * r)), 3) == pytest.approx(taylor_loss(z, y))
    assert validation_loss(4.0 * 10, 10) == pytest.approx(math.log(2))  # z = 0: r² = 4


def test_step_rule_fractions_are_exact_for_simple_values() -> None:
    assert RULE.learning_rate == 4 and RULE.momentum == 0.5
    with pytest.raises(ValueError):
        gd_step(Shares.zeros(2), [1, 2, 3], RULE, (True, True))
