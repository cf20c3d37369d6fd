"""Building real Contribute calls for contract tests: plans signed with the coordinator's own
certified key, consents signed by the requester's, sent over mutual TLS as a given member."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import grpc

from fedcredit.consents import consent_for, sign_consent
from fedcredit.error_catalog import ERROR_CODE_METADATA_KEY
from fedcredit.plans import sign_plan
from fedcredit.protocol import (
    ConsentTerms,
    FallbackPolicy,
    Hop,
    Plan,
    Purpose,
    RouteMode,
    SignedConsent,
)
from fedcredit.serde import signed_consent_to_pb, signed_plan_to_pb
from fedcredit.tls import IdentityHolder, TlsIdentity, target_name_option
from fedcredit.transport import create_channel
from mpc.paillier import PaillierKeyPair
from mpc.pki import CertRole
from mpc.signing import Signer
from proto.v1 import node_pb2
from tests.support.alliance import InProcessAlliance


def now_ms() -> int:
    return int(time.time() * 1000)


def coordinator_signer(alliance: InProcessAlliance) -> Signer:
    return alliance.coordinator.core.identity.current.signer


def member_identity(alliance: InProcessAlliance, member: str) -> IdentityHolder:
    files = alliance.node_settings(member).identity_files
    return IdentityHolder(TlsIdentity.load(files, now_ms()))


def channel_to(alliance: InProcessAlliance, member: str, as_member: str = "bank",
               identity: IdentityHolder | None = None) -> grpc.Channel:
    """A mutual-TLS channel to ``member``'s Node service, authenticated as ``as_member``."""
    identity = identity or member_identity(alliance, as_member)
    return create_channel(f"127.0.0.1:{alliance.nodes[member].grpc_port}",
                          identity.channel_credentials(),
                          target_name_option(member, CertRole.MEMBER))


def coordinator_channel(alliance: InProcessAlliance, identity: IdentityHolder) -> grpc.Channel:
    return create_channel(f"127.0.0.1:{alliance.coordinator.port}",
                          identity.channel_credentials(),
                          target_name_option("coordinator", CertRole.COORDINATOR))


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
        directory_version=alliance.coordinator.registry.version(),
    )
    return dataclasses.replace(plan, **changes)


def signed_consent(
    alliance: InProcessAlliance, plan: Plan, pseudonym: bytes,
    terms: ConsentTerms | None = None, signer: Signer | None = None, **changes: Any,
) -> SignedConsent:
    terms = terms or ConsentTerms(Purpose.ORIGINATION, now_ms() + 60_000, "c-1")
    consent = dataclasses.replace(consent_for(terms, plan, pseudonym, now_ms()), **changes)
    return sign_consent(consent, signer or member_identity(alliance, "bank").current.signer)


def make_request(
    alliance: InProcessAlliance,
    plan: Plan,
    pseudonym: bytes,
    hop_index: int = 0,
    consent: SignedConsent | None = None,
    signer: Signer | None = None,
) -> node_pb2.ContributeRequest:
    signed = sign_plan(plan, signer or coordinator_signer(alliance))
    consent = consent or signed_consent(alliance, plan, pseudonym)
    return node_pb2.ContributeRequest(
        plan=signed_plan_to_pb(signed),
        subject_pseudonym=pseudonym,
        consent=signed_consent_to_pb(consent),
        hop_index=hop_index,
    )


def error_code(exc: grpc.RpcError) -> str | None:
    """The stable fedcredit code a server put in the trailing metadata."""
    from fedcredit.error_catalog import error_from_rpc
    from fedcredit.errors import ErrorCode

    assert ERROR_CODE_METADATA_KEY in str(exc.trailing_metadata())
    return error_from_rpc(exc, default=ErrorCode.INTERNAL).code.value
