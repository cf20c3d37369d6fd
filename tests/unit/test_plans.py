from __future__ import annotations

import dataclasses

import pytest

from fedcredit.errors import ErrorCode, InvalidSignature, PlanError
from fedcredit.plans import sign_plan, verify_plan
from fedcredit.protocol import FallbackPolicy, Hop, Plan, Purpose, RouteMode
from mpc.paillier import PaillierKeyPair
from mpc.signing import Signer

pytestmark = pytest.mark.unit
NOW = 1_800_000_000_000


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.generate()


def make_plan(keypair: PaillierKeyPair, **changes: object) -> Plan:
    plan = Plan(
        query_id="q-1",
        requester_id="bank",
        requester_key=keypair.public,
        mode=RouteMode.CHAIN,
        route=(Hop("finco", "127.0.0.1:1"), Hop("shop", "127.0.0.1:2")),
        issued_unix_ms=NOW,
        expires_unix_ms=NOW + 10_000,
        model_version="v1",
        fallback=FallbackPolicy(),
        purpose=Purpose.ORIGINATION,
    )
    return dataclasses.replace(plan, **changes)  # type: ignore[arg-type]


def test_a_signed_plan_verifies_and_round_trips(signer: Signer, keypair: PaillierKeyPair) -> None:
    plan = make_plan(keypair)
    assert verify_plan(sign_plan(plan, signer), signer.verifier, NOW + 1) == plan


def test_tampered_body_or_signature_is_one_opaque_error(
    signer: Signer, keypair: PaillierKeyPair
) -> None:
    signed = sign_plan(make_plan(keypair), signer)
    body = bytearray(signed.body)
    body[5] ^= 0x01
    sig = bytearray(signed.signature)
    sig[0] ^= 0x01
    errors = []
    for bad in (
        dataclasses.replace(signed, body=bytes(body)),
        dataclasses.replace(signed, signature=bytes(sig)),
        dataclasses.replace(signed, signature=b""),
        sign_plan(make_plan(keypair), Signer.generate()),
    ):
        with pytest.raises(InvalidSignature) as info:
            verify_plan(bad, signer.verifier, NOW)
        errors.append(str(info.value))
    assert set(errors) == {"signature verification failed"}


def test_expired_plan(signer: Signer, keypair: PaillierKeyPair) -> None:
    signed = sign_plan(make_plan(keypair), signer)
    with pytest.raises(PlanError) as info:
        verify_plan(signed, signer.verifier, NOW + 10_000)
    assert info.value.code is ErrorCode.PLAN_EXPIRED


def test_plan_from_the_future(signer: Signer, keypair: PaillierKeyPair) -> None:
    signed = sign_plan(make_plan(keypair, issued_unix_ms=NOW + 60_000,
                                 expires_unix_ms=NOW + 70_000), signer)
    with pytest.raises(PlanError) as info:
        verify_plan(signed, signer.verifier, NOW)
    assert info.value.code is ErrorCode.PLAN_INVALID


def test_signature_is_bound_to_the_plan_context(signer: Signer, keypair: PaillierKeyPair) -> None:
    signed = sign_plan(make_plan(keypair), signer)
    # A signature over the same bytes in another context must not verify as a plan.
    other = signer.sign(b"fedcredit/consent/v1\x00", signed.body)
    with pytest.raises(InvalidSignature):
        verify_plan(dataclasses.replace(signed, signature=other), signer.verifier, NOW)
