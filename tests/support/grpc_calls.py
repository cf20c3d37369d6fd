"""Building real Contribute calls (signed with the coordinator's own key) for contract tests."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import grpc

from fedcredit.error_catalog import ERROR_CODE_METADATA_KEY
from fedcredit.plans import sign_plan
from fedcredit.protocol import Consent, FallbackPolicy, Hop, Plan, Purpose, RouteMode
from fedcredit.serde import consent_to_pb, signed_plan_to_pb
from mpc.paillier import PaillierKeyPair
from mpc.signing import Signer
from proto.v1 import node_pb2
from tests.support.alliance import InProcessAlliance


def now_ms() -> int:
    return int(time.time() * 1000)


def coordinator_signer(alliance: InProcessAlliance) -> Signer:
    return Signer.from_pem(alliance.coordinator_settings.signing_key_path.read_bytes())


def requester_keypair(alliance: InProcessAlliance, member: str) -> PaillierKeyPair:
    keypair: PaillierKeyPair = alliance.nodes[member].app.state.context.evaluations._keypair
    return keypair


def make_plan(alliance: InProcessAlliance, route: tuple[str, ...], **changes: Any) -> Plan:
    hops = tuple(
        Hop(m, f"127.0.0.1:{alliance.nodes[m].grpc_port}") for m in route
    )
    plan = Plan(
        query_id=f"q-{time.monotonic_ns()}",
        requester_id="bank",
        requester_key=requester_keypair(alliance, "bank").public,
        mode=RouteMode.CHAIN,
        route=hops,
        issued_unix_ms=now_ms(),
        expires_unix_ms=now_ms() + 10_000,
        model_version="v1",
        fallback=FallbackPolicy(skip_unreachable=True, hop_timeout_ms=2000, min_answered=2),
        purpose=Purpose.ORIGINATION,
    )
    return dataclasses.replace(plan, **changes)


def make_request(
    alliance: InProcessAlliance,
    plan: Plan,
    pseudonym: bytes,
    hop_index: int = 0,
    consent: Consent | None = None,
    signer: Signer | None = None,
) -> node_pb2.ContributeRequest:
    signed = sign_plan(plan, signer or coordinator_signer(alliance))
    consent = consent or Consent(Purpose.ORIGINATION, now_ms() + 60_000, "c-1")
    return node_pb2.ContributeRequest(
        plan=signed_plan_to_pb(signed),
        subject_pseudonym=pseudonym,
        consent=consent_to_pb(consent),
        hop_index=hop_index,
    )


def error_code(exc: grpc.RpcError) -> str | None:
    """The stable fedcredit code a server put in the trailing metadata."""
    from fedcredit.error_catalog import error_from_rpc
    from fedcredit.errors import ErrorCode

    assert ERROR_CODE_METADATA_KEY in str(exc.trailing_metadata())
    return error_from_rpc(exc, default=ErrorCode.INTERNAL).code.value
