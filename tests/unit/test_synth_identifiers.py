"""Synthetic identifiers: valid, unique whatever the chunking, styled ids normalize back."""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit.errors import MalformedIdentifierError
from fedcredit.synth.identifiers import (
    IDENTIFIER_SLOTS,
    IdentifierSpace,
    KeyFormat,
    fixed_width_strings,
    styled,
    with_wrong_check,
)
from fedcredit.synth.spec import MAX_SUBJECTS
from mpc.pseudonym import normalize_identifier

pytestmark = pytest.mark.unit


def cn_ids(space: IdentifierSpace, index: np.ndarray, birth: np.ndarray) -> list[str]:
    return fixed_width_strings(space.cn_matrix(index, birth)).to_pylist()


def test_cn_ids_are_valid_unique_and_independent_of_chunking() -> None:
    rng = np.random.default_rng(1)
    space = IdentifierSpace.from_rng(rng)
    index = np.arange(30_000)
    birth = rng.integers(-8000, 12_000, len(index))  # 1948..2002
    whole = cn_ids(space, index, birth)
    assert len(set(whole)) == len(whole)
    assert all(normalize_identifier("cn_resident_id", i) == i for i in whole)
    chunked = cn_ids(space, index[:777], birth[:777]) + cn_ids(space, index[777:], birth[777:])
    assert chunked == whole


def test_the_identifier_space_has_room_for_the_largest_population_and_its_ghosts() -> None:
    assert IDENTIFIER_SLOTS > MAX_SUBJECTS * 1.2


def test_the_birth_date_in_the_id_is_the_persons() -> None:
    space = IdentifierSpace.from_rng(np.random.default_rng(2))
    (ident,) = cn_ids(space, np.array([5]), np.array([-1]))  # 1969-12-31
    assert ident[6:14] == "19691231"


def test_styled_ids_normalize_to_the_canonical_id() -> None:
    rng = np.random.default_rng(3)
    matrix = IdentifierSpace.from_rng(rng).cn_matrix(np.arange(5000), rng.integers(0, 9000, 5000))
    canonical = fixed_width_strings(matrix).to_pylist()
    written = styled(matrix, rng, lower_x=0.5, separated=0.3).to_pylist()
    assert written != canonical
    assert any(" " in w for w in written) and any("-" in w for w in written)
    assert any(w.endswith("x") for w in written)
    assert [normalize_identifier("cn_resident_id", w) for w in written] == canonical


def test_a_wrong_check_character_is_always_wrong() -> None:
    rng = np.random.default_rng(4)
    matrix = IdentifierSpace.from_rng(rng).cn_matrix(np.arange(3000), rng.integers(0, 9000, 3000))
    for ident in fixed_width_strings(with_wrong_check(matrix, rng)).to_pylist():
        with pytest.raises(MalformedIdentifierError, match="check character"):
            normalize_identifier("cn_resident_id", ident)


def test_local_keys_are_unique_and_differ_between_members() -> None:
    rng = np.random.default_rng(5)
    bank, bank2 = KeyFormat.from_rng("C", rng), KeyFormat.from_rng("C", rng)
    counters = np.arange(200_000)
    keys = bank.keys(counters).to_pylist()
    assert len(set(keys)) == len(keys) and all(len(k) == 11 and k[0] == "C" for k in keys)
    assert not set(keys[:1000]) & set(bank2.keys(counters[:1000]).to_pylist())
    # Consecutive counters do not give consecutive (or evenly spaced) keys.
    steps = np.diff([int(k[1:]) for k in keys[:100]])
    assert len(set(steps.tolist())) > 90
