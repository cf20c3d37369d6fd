"""Training over the real wire: every party a Training gRPC server with mutual TLS."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fedcredit.clock import system_clock
from fedcredit.errors import ErrorCode, FedCreditError, TrainingAbortedError
from fedcredit.federation import Mailbox, pack
from fedcredit.federation_grpc import GrpcTransport, PartyAddress, start_training_server
from fedcredit.tls import IdentityHolder, TlsIdentity
from mpc.pki import CertRole, certificate_to_pem, create_ca, issue_certificate
from mpc.signing import Signer
from mpc.vector_he import EngineName
from scoring.logistic import GdSettings
from tests.support.training import make_spec, run_with_transports, table, uci_frames

pytestmark = pytest.mark.integration
ROLES = {"guest": CertRole.MEMBER, "host": CertRole.MEMBER, "arbiter": CertRole.COORDINATOR}


def _identities(names: dict[str, CertRole], ca_name: str = "session") -> dict[str, IdentityHolder]:
    now = system_clock()
    ca = create_ca(ca_name, now, valid_days=2)
    out = {}
    for name, role in names.items():
        signer = Signer.generate()
        cert = issue_certificate(ca, name, role, signer.private_key.public_key(), now, 1)
        out[name] = IdentityHolder(TlsIdentity.from_pems(
            signer.to_pem(), certificate_to_pem(cert), ca.certificate_pem(), now))
    return out


@contextmanager
def _servers(ids: dict[str, IdentityHolder]) -> Iterator[tuple[dict, dict, dict]]:
    mailboxes = {n: Mailbox(n) for n in ROLES}
    roster = {n: PartyAddress("", r) for n, r in ROLES.items()}
    servers = {n: start_training_server("127.0.0.1:0", "s1", mailboxes[n], ids[n], roster,
                                        system_clock) for n in ROLES}
    addresses = {n: PartyAddress(f"127.0.0.1:{servers[n].port}", r) for n, r in ROLES.items()}
    try:
        yield servers, mailboxes, addresses
    finally:
        for server in servers.values():
            server.stop(0.1)


def test_a_session_over_mutual_tls() -> None:
    ids = _identities(ROLES)
    g, h = uci_frames(900)
    spec = make_spec(EngineName.CKKS, ["host"], session_id="s1", gd=GdSettings(max_epochs=3))
    with _servers(ids) as (_, mailboxes, addresses):
        transports = {n: GrpcTransport("s1", ids[n], addresses, 30.0) for n in ROLES}
        outcome = run_with_transports(
            spec, table(g, "guest", "y"), {"host": table(h, "host")}, transports, mailboxes,
            {n: t.is_alive for n, t in transports.items()})
    assert outcome.errors == {}
    assert outcome.results["guest"].metrics.auc > 0.6


def test_the_sender_is_the_certificate_not_the_message() -> None:
    ids = _identities({**ROLES, "mallory": CertRole.MEMBER})  # one CA; mallory not a party
    outsider = _identities({"guest": CertRole.MEMBER}, ca_name="another alliance")["guest"]
    stranger = ids["mallory"]
    with _servers(ids) as (_, mailboxes, addresses):
        # a certificate from another CA never completes the handshake
        foreign = GrpcTransport("s1", outsider, addresses, 5.0, connect_timeout_s=2.0)
        with pytest.raises(FedCreditError) as err:
            foreign.deliver("host", "guest", "u/0", pack({}))
        assert err.value.code in (ErrorCode.NODE_UNAVAILABLE, ErrorCode.CERTIFICATE_INVALID)
        # a valid alliance member that is not a party of the session is refused
        member = GrpcTransport("s1", stranger, addresses, 5.0, connect_timeout_s=2.0)
        with pytest.raises(FedCreditError) as err:
            member.deliver("host", "mallory", "u/0", pack({}))
        assert err.value.code is ErrorCode.PERMISSION_DENIED
        # a party's message lands under its certified name, whatever it claims to be
        real = GrpcTransport("s1", ids["guest"], addresses, 5.0)
        real.deliver("host", "arbiter", "w/0", pack({"x": 1}))
        assert mailboxes["host"].take("guest", "w/0", 1.0) == pack({"x": 1})
        with pytest.raises(FedCreditError) as err:
            GrpcTransport("other-session", ids["guest"], addresses, 5.0).deliver(
                "host", "guest", "u/1", pack({}))
        assert err.value.code is ErrorCode.INVALID_REQUEST
        for t in (foreign, member, real):
            t.close()


def test_a_silent_peer_that_goes_down_is_noticed_by_health_probes() -> None:
    ids = _identities(ROLES)
    with _servers(ids) as (servers, mailboxes, addresses):
        guest = GrpcTransport("s1", ids["guest"], addresses, 5.0)
        waiting: dict[str, BaseException] = {}

        def wait_for_arbiter() -> None:
            try:
                mailboxes["guest"].take("arbiter", "key", 120.0, guest.is_alive)
            except BaseException as exc:
                waiting["error"] = exc

        thread = threading.Thread(target=wait_for_arbiter)
        started = time.monotonic()
        thread.start()
        time.sleep(1.0)
        servers["arbiter"].stop(0)  # the arbiter's process dies without a word
        thread.join(60)
        assert isinstance(waiting.get("error"), TrainingAbortedError)
        assert "arbiter is down" in str(waiting["error"])
        assert time.monotonic() - started < 30
        guest.close()
