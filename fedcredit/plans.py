"""Signing and verifying evaluation plans (the coordinator signs, every node verifies)."""

from __future__ import annotations

from fedcredit.errors import ErrorCode, InvalidSignature, PlanError
from fedcredit.protocol import Plan, SignedPlan
from fedcredit.serde import plan_from_bytes, plan_to_bytes
from mpc.signing import PLAN_CONTEXT, Signer, Verifier

#: Tolerated clock skew between coordinator and nodes when checking issue time.
CLOCK_SKEW_MS = 5_000


def sign_plan(plan: Plan, signer: Signer) -> SignedPlan:
    body = plan_to_bytes(plan)
    return SignedPlan(
        body=body,
        signature=signer.sign(PLAN_CONTEXT, body),
        key_id=signer.verifier.key_id,
    )


def verify_plan(signed: SignedPlan, verifier: Verifier, now_ms: int) -> Plan:
    """The plan, if its signature verifies and it is live now; else a typed error.

    Signature failures are opaque (one :class:`InvalidSignature`); only after the bytes are
    authentic do we parse them and report expiry precisely.
    """
    if signed.key_id != verifier.key_id:
        raise InvalidSignature()
    verifier.verify(PLAN_CONTEXT, signed.body, signed.signature)
    plan = plan_from_bytes(signed.body)
    if now_ms >= plan.expires_unix_ms:
        raise PlanError("the evaluation plan has expired", code=ErrorCode.PLAN_EXPIRED)
    if plan.issued_unix_ms > now_ms + CLOCK_SKEW_MS:
        raise PlanError("the evaluation plan is issued in the future", code=ErrorCode.PLAN_INVALID)
    return plan
