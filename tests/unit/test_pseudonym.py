from __future__ import annotations

import pytest

from fedcredit.errors import MalformedIdentifierError
from mpc.pseudonym import (
    IdentifierType,
    SubjectKey,
    cn_check_character,
    normalize_identifier,
    pseudonymize,
)

pytestmark = pytest.mark.unit
CN = IdentifierType.CN_RESIDENT_ID
VALID_CN = "11010519491231002X"  # the GB 11643 worked example


def test_cn_check_character_matches_the_standard_example() -> None:
    assert cn_check_character(VALID_CN[:17]) == "X"


@pytest.mark.parametrize("raw", [VALID_CN, " 11010519491231002x ", "110105-19491231-002X"])
def test_cn_identifiers_are_normalized(raw: str) -> None:
    assert normalize_identifier(CN, raw) == VALID_CN


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("110105194912310021", "check character"),
        ("11010519491331002X", "birth date"),
        ("1101051949123100", "17 digits"),
        ("A1010519491231002X", "17 digits"),
        ("", "17 digits"),
    ],
)
def test_malformed_cn_identifiers_are_rejected(raw: str, reason: str) -> None:
    with pytest.raises(MalformedIdentifierError, match=reason):
        normalize_identifier(CN, raw)


@pytest.mark.parametrize("raw", ["123-45-6789", "123 45 6789", "123456789"])
def test_ssn_normalization(raw: str) -> None:
    assert normalize_identifier("us_ssn", raw) == "123456789"


@pytest.mark.parametrize("raw", ["000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567",
                                 "123-45-0000", "12-345-678"])
def test_never_issued_ssns_are_rejected(raw: str) -> None:
    with pytest.raises(MalformedIdentifierError):
        normalize_identifier("us_ssn", raw)


def test_unknown_identifier_type() -> None:
    with pytest.raises(MalformedIdentifierError, match="unknown identifier type"):
        normalize_identifier("passport", "X123")


def test_pseudonyms_are_keyed_deterministic_and_type_separated(subject_key: SubjectKey) -> None:
    a = pseudonymize(subject_key, CN, VALID_CN)
    assert a == pseudonymize(subject_key, CN, VALID_CN.lower())
    assert len(a.value) == 32
    assert a != pseudonymize(SubjectKey(bytes(32)), CN, VALID_CN)
    assert pseudonymize(subject_key, "us_ssn", "123456789") != pseudonymize(
        subject_key, "us_ssn", "123456788"
    )
    assert VALID_CN.encode() not in a.value


def test_subject_keys_must_be_long_and_are_never_printed() -> None:
    with pytest.raises(ValueError):
        SubjectKey(b"short")
    key = SubjectKey.generate()
    assert key.secret.hex() not in repr(key)
    assert SubjectKey.from_hex(key.secret.hex()) == key


@pytest.mark.parametrize("raw", ["25115", " 25115 ", "member:A-17.x"])
def test_opaque_identifiers_keep_their_text(raw: str) -> None:
    assert normalize_identifier(IdentifierType.OPAQUE, raw) == raw.strip()


@pytest.mark.parametrize("raw", ["", "a b", "x" * 65, "naïve"])
def test_malformed_opaque_identifiers_are_rejected(raw: str) -> None:
    with pytest.raises(MalformedIdentifierError, match="opaque"):
        normalize_identifier(IdentifierType.OPAQUE, raw)


def test_opaque_and_other_types_never_share_a_pseudonym() -> None:
    key = SubjectKey(bytes(range(32)))
    assert pseudonymize(key, "opaque", "123456789").value != pseudonymize(
        key, "us_ssn", "123456789").value
