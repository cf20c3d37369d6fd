from __future__ import annotations

import pytest

from fedcredit.errors import ErrorCode, FedCreditError, InvalidSignature
from mpc.pki import (
    CertificateAuthority,
    CertifiedIdentity,
    CertRole,
    certificate_to_pem,
    create_ca,
    issue_certificate,
    load_certificate,
    serial_hex,
    verify_certificate,
)
from mpc.signing import Signer
from node.directory import DirectoryCertificate, DirectoryMember, DirectoryView, MemberDirectory

pytestmark = pytest.mark.unit
NOW = 1_800_000_000_000
DAY = 86_400_000


def cert(ca: CertificateAuthority, party: str, role: CertRole, start: int,
         days: int) -> tuple[Signer, DirectoryCertificate]:
    signer = Signer.generate()
    c = issue_certificate(ca, party, role, signer.private_key.public_key(), start, days)
    return signer, DirectoryCertificate(serial_hex(c), certificate_to_pem(c), 0)


def test_views_of_members_and_coordinator_keys() -> None:
    ca = create_ca("t", NOW - 400 * DAY)
    old_coordinator, old_cert = cert(ca, "coordinator", CertRole.COORDINATOR, NOW - 400 * DAY, 365)
    new_coordinator, new_cert = cert(ca, "coordinator", CertRole.COORDINATOR, NOW - DAY, 365)
    bank, bank_cert = cert(ca, "bank", CertRole.MEMBER, NOW - DAY, 90)
    _, shop_cert = cert(ca, "shop", CertRole.MEMBER, NOW - DAY, 90)
    _, rogue_cert = cert(create_ca("t", NOW - DAY), "shop", CertRole.MEMBER, NOW - DAY, 90)
    view = DirectoryView(7, (
        DirectoryMember("bank", "Bank", "h:1", None, True, "ACTIVE", (bank_cert,)),
        DirectoryMember("shop", "Shop", "h:2", None, False, "SUSPENDED", (shop_cert, rogue_cert)),
    ), (old_cert, new_cert))
    fetches = []

    def fetch() -> DirectoryView:
        fetches.append(1)
        return view

    clock = [NOW]
    directory = MemberDirectory(ca.certificate, fetch, lambda: clock[0])
    assert directory.refresh() == 7
    # Plans: only the coordinator's current key. Tree heads: every key it ever signed with.
    assert directory.coordinator_verifier(new_coordinator.key_id).key_id == new_coordinator.key_id
    with pytest.raises(InvalidSignature):
        directory.coordinator_verifier(old_coordinator.key_id)
    assert directory.tree_head_verifier(old_coordinator.key_id).key_id == old_coordinator.key_id
    # Members: the listed key of an active member; a suspended member is refused.
    assert directory.member_verifier("bank", bank.key_id).key_id == bank.key_id
    directory.require_active("bank")
    with pytest.raises(FedCreditError) as info:
        directory.require_active("shop")
    assert info.value.code is ErrorCode.MEMBER_SUSPENDED
    with pytest.raises(FedCreditError) as info:
        directory.member("nobody")
    assert info.value.code is ErrorCode.UNKNOWN_MEMBER
    # A miss asks the coordinator again, but at most once a second.
    clock[0] += 2_000
    before = len(fetches)
    for _ in range(5):
        with pytest.raises(InvalidSignature):
            directory.member_verifier("bank", "no-such-key")
    assert len(fetches) - before == 1
    with pytest.raises(FedCreditError) as info:
        directory.ensure(8)  # the coordinator is still at 7: a plan from version 8 is refused
    assert info.value.code is ErrorCode.COORDINATOR_UNAVAILABLE


def test_a_renewed_certificate_is_accepted_at_once_even_right_after_another_miss() -> None:
    ca = create_ca("t", NOW - 400 * DAY)
    _, coordinator_cert = cert(ca, "coordinator", CertRole.COORDINATOR, NOW - DAY, 365)
    _, bank_cert = cert(ca, "bank", CertRole.MEMBER, NOW - DAY, 90)
    _, revoked_cert = cert(ca, "bank", CertRole.MEMBER, NOW - DAY, 90)
    _, renewed_cert = cert(ca, "bank", CertRole.MEMBER, NOW, 90)

    def bank_with(*certs: DirectoryCertificate) -> DirectoryMember:
        return DirectoryMember("bank", "Bank", "h:1", None, True, "ACTIVE", certs)

    views = [DirectoryView(7, (bank_with(bank_cert),), (coordinator_cert,))]
    fetches: list[int] = []

    def fetch() -> DirectoryView:
        fetches.append(views[-1].version)
        return views[-1]

    def identity(c: DirectoryCertificate) -> CertifiedIdentity:
        return verify_certificate(load_certificate(c.pem), ca.certificate, NOW)

    clock = [NOW]
    directory = MemberDirectory(ca.certificate, fetch, lambda: clock[0])
    directory.refresh()
    directory.authorize_peer(identity(bank_cert))
    # A revoked certificate: one check with the coordinator, then refused without asking again
    # for a second.
    for _ in range(3):
        with pytest.raises(FedCreditError) as info:
            directory.authorize_peer(identity(revoked_cert))
        assert info.value.code is ErrorCode.CERTIFICATE_REVOKED
    assert fetches == [7, 7]
    # bank renews at once: its new certificate is checked with the coordinator on its first
    # call, although another miss was checked a moment ago.
    views.append(DirectoryView(8, (bank_with(bank_cert, renewed_cert),), (coordinator_cert,)))
    directory.authorize_peer(identity(renewed_cert))
    assert fetches == [7, 7, 8] and directory.version == 8
    clock[0] += 1_000  # a second later the revoked certificate is checked once more
    with pytest.raises(FedCreditError):
        directory.authorize_peer(identity(revoked_cert))
    assert fetches == [7, 7, 8, 8]
