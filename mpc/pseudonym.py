"""Subject pseudonyms: HMAC-SHA256 of a normalized identifier under the alliance subject key.

The subject key is shared by member nodes only (never the coordinator), so every member maps
the same applicant to the same pseudonym while nobody without the key can test a guessed
identifier. Raw identifiers never leave the requester node; only pseudonyms travel.

Identifiers are normalized before hashing (case, whitespace, separators) and validated by
their type's rules, check digit included, so that a typo is an error rather than a pseudonym of
nobody.
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from fedcredit.errors import MalformedIdentifierError

SUBJECT_KEY_BYTES = 32
_DOMAIN = b"fedcredit/subject-pseudonym/v1\x00"


class IdentifierType(StrEnum):
    #: People's Republic of China resident identity card number: 17 digits + ISO 7064 MOD 11-2
    #: check character (0-9 or X), with an embedded date of birth.
    CN_RESIDENT_ID = "cn_resident_id"
    #: US Social Security number: AAA-GG-SSSS with the SSA's never-issued ranges refused.
    US_SSN = "us_ssn"
    #: An identifier the alliance's members already share (e.g. a customer number agreed for a
    #: joint program, or the row ids of a pre-aligned vertical split): 1-64 characters of
    #: letters, digits and ``._:-``; only surrounding whitespace is normalized.
    OPAQUE = "opaque"


@dataclass(frozen=True)
class SubjectKey:
    """The alliance subject key. Held by member nodes only; repr never shows it."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < SUBJECT_KEY_BYTES:
            raise ValueError(f"subject key must be at least {SUBJECT_KEY_BYTES} bytes")

    @classmethod
    def generate(cls) -> SubjectKey:
        return cls(secrets.token_bytes(SUBJECT_KEY_BYTES))

    @classmethod
    def from_hex(cls, text: str) -> SubjectKey:
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError as exc:
            raise ValueError("subject key must be hex-encoded, at least 32 bytes") from exc


@dataclass(frozen=True)
class SubjectPseudonym:
    value: bytes

    def hex(self) -> str:
        return self.value.hex()


_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_CHECK = "10X98765432"
_CN_ZERO_SHARE = ord("0") * sum(_CN_WEIGHTS)
_SEPARATORS = re.compile(r"[\s\-]")


def cn_check_character(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of the first 17 digits (GB 11643-1999)."""
    digits = first17.encode()
    if len(digits) != len(_CN_WEIGHTS) or not digits.isdigit():
        raise ValueError("17 digits expected")
    # Digit bytes are 48 + d: subtract the zeros' share once instead of converting each.
    total = sum(map(operator.mul, digits, _CN_WEIGHTS)) - _CN_ZERO_SHARE
    return _CN_CHECK[total % 11]


def _normalize_cn(raw: str) -> str:
    text = (raw if raw.isalnum() else _SEPARATORS.sub("", raw)).upper()
    if not (len(text) == 18 and text.isascii() and text[:17].isdigit()
            and (text[17].isdigit() or text[17] == "X")):
        raise MalformedIdentifierError("cn_resident_id must be 17 digits and a digit or X")
    try:
        date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError as exc:
        raise MalformedIdentifierError("cn_resident_id has an invalid birth date") from exc
    if cn_check_character(text[:17]) != text[17]:
        raise MalformedIdentifierError("cn_resident_id check character does not match")
    return text


def _normalize_ssn(raw: str) -> str:
    text = _SEPARATORS.sub("", raw)
    if not re.fullmatch(r"\d{9}", text):
        raise MalformedIdentifierError("us_ssn must be 9 digits")
    area, group, serial = text[:3], text[3:5], text[5:]
    if area in ("000", "666") or area.startswith("9") or group == "00" or serial == "0000":
        raise MalformedIdentifierError("us_ssn is in a range that is never issued")
    return text


_OPAQUE = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


def _normalize_opaque(raw: str) -> str:
    text = raw.strip()
    if not _OPAQUE.fullmatch(text):
        raise MalformedIdentifierError("opaque identifiers are 1-64 letters, digits or ._:-")
    return text


_NORMALIZERS = {
    IdentifierType.OPAQUE: _normalize_opaque,
    IdentifierType.CN_RESIDENT_ID: _normalize_cn,
    IdentifierType.US_SSN: _normalize_ssn,
}


def normalize_identifier(id_type: IdentifierType | str, raw: str) -> str:
    """Canonical form of ``raw`` for its type, or :class:`MalformedIdentifierError`."""
    try:
        kind = IdentifierType(id_type)
    except ValueError as exc:
        raise MalformedIdentifierError(f"unknown identifier type {id_type!r}") from exc
    if not isinstance(raw, str) or len(raw) > 64:
        raise MalformedIdentifierError(f"{kind.value} must be a short string")
    return _NORMALIZERS[kind](raw)


def pseudonymize(key: SubjectKey, id_type: IdentifierType | str, raw: str) -> SubjectPseudonym:
    """The subject pseudonym of an identifier; domain-separated by identifier type."""
    canonical = normalize_identifier(id_type, raw)
    message = _DOMAIN + IdentifierType(id_type).value.encode() + b"\x00" + canonical.encode()
    return SubjectPseudonym(hmac.digest(key.secret, message, "sha256"))


def pseudonymize_many(key: SubjectKey, id_type: IdentifierType | str,
                      identifiers: Sequence[str]) -> bytes:
    """:func:`pseudonymize` for a list (a portfolio): the 32-byte pseudonyms concatenated in
    order; a malformed identifier raises :class:`MalformedIdentifierError` naming its row."""
    kind = IdentifierType(id_type)
    normalize = _NORMALIZERS[kind]
    keyed = hmac.new(key.secret, _DOMAIN + kind.value.encode() + b"\x00", hashlib.sha256)
    out = bytearray()
    for row, raw in enumerate(identifiers):
        try:
            if not isinstance(raw, str) or len(raw) > 64:
                raise MalformedIdentifierError(f"{kind.value} must be a short string")
            mac = keyed.copy()  # the key and the common prefix are hashed once
            mac.update(normalize(raw).encode())
            out += mac.digest()
        except MalformedIdentifierError as exc:
            raise MalformedIdentifierError(f"row {row}: {exc.detail}") from None
    return bytes(out)


_LEDGER_TAG_DOMAIN = b"fedcredit/ledger-subject-tag/v1\x00"


def ledger_subject_tag(key: SubjectKey, pseudonym: bytes, query_id: str) -> bytes:
    """The tag a consent's ledger entry carries: HMAC(K_tag, pseudonym ‖ query id).

    ``K_tag`` is derived from the alliance subject key, so only members can compute it. Keying
    each tag by the query id as well makes two inquiries about one applicant unlinkable for the
    coordinator, while the applicant's own member can still recognise them by recomputing the
    tag of every consent entry in a time window.
    """
    tag_key = hmac.new(key.secret, _LEDGER_TAG_DOMAIN, hashlib.sha256).digest()
    return hmac.new(tag_key, pseudonym + b"\x00" + query_id.encode(), hashlib.sha256).digest()
