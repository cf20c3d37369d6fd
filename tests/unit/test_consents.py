from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fedcredit.consents import consent_for, reference_digest, sign_consent, verify_consent
from fedcredit.errors import ConsentError, ErrorCode, InvalidSignature
from fedcredit.protocol import (
    Consent,
    ConsentTerms,
    FallbackPolicy,
    Hop,
    Plan,
    Purpose,
    Relationship,
    RouteMode,
    SignedConsent,
)
from mpc.paillier import PaillierKeyPair
from mpc.pseudonym import SubjectKey, ledger_subject_tag
from mpc.signing import Signer

pytestmark = pytest.mark.unit
NOW = 1_800_000_000_000
PSEUDONYM = bytes(range(32))


@pytest.fixture(scope="module")
def requester() -> Signer:
    return Signer.generate()


def plan(keypair: PaillierKeyPair, **changes: object) -> Plan:
    base = Plan("q-1", "bank", keypair.public, RouteMode.CHAIN, (Hop("finco", "h:1"),), NOW,
                NOW + 10_000, "v1", FallbackPolicy(), Purpose.ORIGINATION)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def signed(requester: Signer, the_plan: Plan, **terms: Any) -> SignedConsent:
    consent_terms = ConsentTerms(**{"purpose": the_plan.purpose, "expires_unix_ms": NOW + 60_000,
                                    "reference": "consent-7", **terms})
    return sign_consent(consent_for(consent_terms, the_plan, PSEUDONYM, NOW), requester)


def check(requester: Signer, the_plan: Plan, consent: SignedConsent,
          pseudonym: bytes = PSEUDONYM, now: int = NOW,
          allowed: frozenset[Purpose] | None = None) -> Consent:
    return verify_consent(consent, requester.verifier, plan=the_plan, pseudonym=pseudonym,
                          now_ms=now, allowed_purposes=allowed)


def test_a_signed_consent_verifies_and_keeps_the_reference_at_home(
    requester: Signer, keypair: PaillierKeyPair
) -> None:
    the_plan = plan(keypair)
    consent = check(requester, the_plan, signed(requester, the_plan))
    assert (consent.query_id, consent.requester_id, consent.purpose) == (
        "q-1", "bank", Purpose.ORIGINATION)
    assert consent.reference_digest == reference_digest("consent-7")
    assert b"consent-7" not in signed(requester, the_plan).body


def test_forged_or_altered_consents_are_one_opaque_error(
    requester: Signer, keypair: PaillierKeyPair
) -> None:
    the_plan = plan(keypair)
    good = signed(requester, the_plan)
    altered = dataclasses.replace(good, body=good.body.replace(b"origination", b"collections"))
    forged = signed(Signer.generate(), the_plan)
    messages = set()
    for bad in (altered, forged, dataclasses.replace(good, signature=b"")):
        with pytest.raises(InvalidSignature) as info:
            check(requester, the_plan, bad)
        assert info.value.code is ErrorCode.CONSENT_INVALID
        messages.add(info.value.detail)
    assert messages == {"signature verification failed"}


def test_a_consent_binds_one_plan_one_subject_one_requester(
    requester: Signer, keypair: PaillierKeyPair
) -> None:
    the_plan = plan(keypair)
    consent = signed(requester, the_plan)
    for other_plan, pseudonym in ((plan(keypair, query_id="q-2"), PSEUDONYM),
                                  (plan(keypair, requester_id="shop"), PSEUDONYM),
                                  (the_plan, b"\x01" * 32)):
        with pytest.raises(ConsentError) as info:
            check(requester, other_plan, consent, pseudonym=pseudonym)
        assert info.value.code is ErrorCode.CONSENT_INVALID


def test_expiry_purpose_and_relationship_policy(
    requester: Signer, keypair: PaillierKeyPair
) -> None:
    the_plan = plan(keypair)
    with pytest.raises(ConsentError) as info:
        check(requester, the_plan, signed(requester, the_plan), now=NOW + 60_000)
    assert info.value.code is ErrorCode.CONSENT_EXPIRED
    with pytest.raises(ConsentError) as info:
        check(requester, the_plan, signed(requester, the_plan),
              allowed=frozenset({Purpose.COLLECTIONS}))
    assert info.value.code is ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED
    review = plan(keypair, purpose=Purpose.ACCOUNT_REVIEW, requires_existing_customer=True)
    with pytest.raises(ConsentError) as info:
        check(requester, review, signed(requester, review))
    assert info.value.code is ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED
    attested = signed(requester, review, relationship=Relationship.EXISTING_CUSTOMER)
    assert check(requester, review, attested).relationship is Relationship.EXISTING_CUSTOMER
    mismatch = signed(requester, the_plan, purpose=Purpose.COLLECTIONS)
    with pytest.raises(ConsentError) as info:
        check(requester, the_plan, mismatch)
    assert info.value.code is ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED


def test_a_consent_from_the_future_is_refused(requester: Signer, keypair: PaillierKeyPair) -> None:
    the_plan = plan(keypair)
    later = sign_consent(consent_for(ConsentTerms(Purpose.ORIGINATION, NOW + 600_000), the_plan,
                                     PSEUDONYM, NOW + 60_000), requester)
    with pytest.raises(ConsentError) as info:
        check(requester, the_plan, later)
    assert info.value.code is ErrorCode.CONSENT_INVALID


def test_ledger_tags_are_per_inquiry_and_need_the_subject_key() -> None:
    key = SubjectKey.generate()
    tag = ledger_subject_tag(key, PSEUDONYM, "q-1")
    assert tag == ledger_subject_tag(key, PSEUDONYM, "q-1") and len(tag) == 32
    assert tag != ledger_subject_tag(key, PSEUDONYM, "q-2")        # unlinkable across inquiries
    assert tag != ledger_subject_tag(SubjectKey.generate(), PSEUDONYM, "q-1")
    assert tag != ledger_subject_tag(key, b"\x01" * 32, "q-1")
