"""Signing and verifying the applicant's consent (the requester signs, every hop verifies).

A consent is bound to one plan (its query id), one subject pseudonym and one requester, and
carries the purpose, its validity window and the requester's attested relationship with the
applicant. Every node on the route checks all of that against the plan it verified and the
pseudonym it was sent, before it looks anything up. The lender's own consent reference stays
at the lender: only its SHA-256 travels, so a carelessly chosen reference cannot identify the
applicant to other members.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fedcredit.errors import ConsentError, ErrorCode, InvalidSignature
from fedcredit.protocol import (
    Consent,
    ConsentTerms,
    Plan,
    Purpose,
    Relationship,
    SignedConsent,
    check_consent_window,
)
from fedcredit.serde import consent_from_bytes, consent_to_bytes
from mpc.signing import CONSENT_CONTEXT, Signer, Verifier

#: Tolerated clock skew between the requester and the other members.
CLOCK_SKEW_MS = 5_000


def reference_digest(reference: str) -> bytes:
    return hashlib.sha256(reference.encode()).digest()


def consent_for(terms: ConsentTerms, plan: Plan, pseudonym: bytes, now_ms: int) -> Consent:
    return consent_for_query(terms, plan.query_id, plan.requester_id, pseudonym, now_ms)


def consent_for_query(terms: ConsentTerms, query_id: str, requester_id: str, pseudonym: bytes,
                      now_ms: int) -> Consent:
    """The consent for a query id the requester proposes (signed before it asks for the plan,
    which must then carry that query id)."""
    return Consent(
        query_id=query_id,
        subject_pseudonym=pseudonym,
        requester_id=requester_id,
        purpose=terms.purpose,
        issued_unix_ms=now_ms,
        expires_unix_ms=terms.expires_unix_ms,
        reference_digest=reference_digest(terms.reference),
        relationship=terms.relationship,
    )


def consent_ledger_body(record: Consent, signed: SignedConsent) -> dict[str, Any]:
    """What the ledger's consent entry holds: digests and terms, never the pseudonym."""
    return {
        "consent_sha256": hashlib.sha256(signed.body).hexdigest(),
        "purpose": record.purpose.value,
        "issued_ms": record.issued_unix_ms,
        "expires_ms": record.expires_unix_ms,
        "reference_sha256": record.reference_digest.hex(),
        "relationship": record.relationship.value,
    }


def sign_consent(consent: Consent, signer: Signer) -> SignedConsent:
    body = consent_to_bytes(consent)
    return SignedConsent(body=body, signature=signer.sign(CONSENT_CONTEXT, body),
                         key_id=signer.key_id)


def verify_consent(
    signed: SignedConsent,
    requester_key: Verifier,
    *,
    plan: Plan,
    pseudonym: bytes,
    now_ms: int,
    allowed_purposes: frozenset[Purpose] | None,
) -> Consent:
    """The consent, if the requester signed it for exactly this plan and subject and it holds
    now; else a typed error. A bad signature is opaque (CONSENT_INVALID, no reason)."""
    if signed.key_id != requester_key.key_id:
        raise InvalidSignature(code=ErrorCode.CONSENT_INVALID)
    requester_key.verify(CONSENT_CONTEXT, signed.body, signed.signature,
                         code=ErrorCode.CONSENT_INVALID)
    consent = consent_from_bytes(signed.body)
    if (
        consent.query_id != plan.query_id
        or consent.requester_id != plan.requester_id
        or consent.subject_pseudonym != pseudonym
    ):
        raise ConsentError("the consent is for another inquiry", code=ErrorCode.CONSENT_INVALID)
    if consent.issued_unix_ms > now_ms + CLOCK_SKEW_MS:
        raise ConsentError("the consent is issued in the future", code=ErrorCode.CONSENT_INVALID)
    check_consent_window(consent.purpose, consent.expires_unix_ms, now_ms, allowed_purposes)
    if consent.purpose is not plan.purpose:
        raise ConsentError("consent purpose differs from the planned purpose",
                           code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED)
    if plan.requires_existing_customer and (
        consent.relationship is not Relationship.EXISTING_CUSTOMER
    ):
        raise ConsentError(
            f"alliance policy allows {plan.purpose.value} only for an existing customer of the "
            "requester", code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED)
    return consent
