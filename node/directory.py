"""This node's copy of the alliance directory: who is a member, with which certificates.

Every authorization decision at the node reads it: the TLS peer of each call must be an active
member presenting one of its listed (unrevoked, unexpired) certificates, a plan must be signed
by a listed coordinator certificate, a consent by a listed certificate of its requester.
The copy is refreshed when the coordinator's heartbeat reply or a plan names a newer version,
so a suspension is enforced here on the first call after the coordinator recorded it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509

from fedcredit.errors import CertificateError, ErrorCode, FedCreditError, InvalidSignature
from mpc.paillier import PaillierPublicKey
from mpc.pki import CertifiedIdentity, CertRole, load_certificate, verify_certificate
from mpc.signing import Verifier

log = logging.getLogger(__name__)
MISS_REFRESH_MS = 1_000
#: Certificate serials remembered for the per-certificate miss limit (least recent dropped).
MISSED_SERIALS = 1_024


@dataclass(frozen=True)
class DirectoryCertificate:
    serial: str
    pem: bytes = field(repr=False)
    not_after_ms: int


@dataclass(frozen=True)
class DirectoryMember:
    member_id: str
    display_name: str
    endpoint: str
    public_key: PaillierPublicKey | None
    active: bool
    membership: str
    certificates: tuple[DirectoryCertificate, ...]


@dataclass(frozen=True)
class DirectoryView:
    version: int
    members: tuple[DirectoryMember, ...]
    coordinator_certificates: tuple[DirectoryCertificate, ...]


@dataclass(frozen=True)
class _Indexed:
    version: int
    members: dict[str, DirectoryMember]
    serials: dict[str, str]                        # serial -> member id
    member_keys: dict[tuple[str, str], Verifier]   # (member id, key id) -> verifier
    coordinator_keys: dict[str, Verifier]          # key id -> verifier, valid now (plans)
    tree_head_keys: dict[str, Verifier]            # key id -> verifier, ever (ledger heads)


class MemberDirectory:
    def __init__(self, ca_certificate: x509.Certificate, fetch: Callable[[], DirectoryView],
                 clock: Callable[[], int]) -> None:
        self._ca = ca_certificate
        self._fetch = fetch
        self._clock = clock
        self._index = _Indexed(0, {}, {}, {}, {}, {})
        self._refresh_lock = threading.Lock()
        self._last_miss_refresh_ms = 0
        self._missed_serials: OrderedDict[str, int] = OrderedDict()
        self._missed_lock = threading.Lock()

    @property
    def version(self) -> int:
        return self._index.version

    def refresh(self) -> int:
        """Fetch and install the coordinator's current directory; the version now enforced."""
        with self._refresh_lock:
            view = self._fetch()
            if view.version >= self._index.version:
                self._index = self._build(view)
            return self._index.version

    def _refresh_on_miss(self) -> None:
        """A lookup missed (a certificate or key issued after our copy, or a revoked one):
        ask the coordinator, but at most once per :data:`MISS_REFRESH_MS`, so that a caller
        presenting revoked certificates cannot turn every call into a coordinator round trip."""
        now = self._clock()
        if now - self._last_miss_refresh_ms >= MISS_REFRESH_MS:
            self._last_miss_refresh_ms = now
            self.refresh()

    def _refresh_on_unlisted(self, serial: str) -> None:
        """A caller's certificate we do not list: ask the coordinator at most once per
        :data:`MISS_REFRESH_MS` *for this certificate*. A member's renewed certificate is then
        accepted on its first call even right after another miss (with one limit for every
        miss, a peer that had just refused a revoked certificate refused the renewal too, until
        its next heartbeat); a revoked one costs a round trip a second at most, and only
        certificates of the alliance's CA get this far (TLS checked the chain)."""
        now = self._clock()
        with self._missed_lock:
            last = self._missed_serials.get(serial)
            if last is not None and now - last < MISS_REFRESH_MS:
                return
            self._missed_serials[serial] = now
            self._missed_serials.move_to_end(serial)
            while len(self._missed_serials) > MISSED_SERIALS:
                self._missed_serials.popitem(last=False)
        self.refresh()

    def ensure(self, version: int) -> None:
        """Make sure this node enforces at least ``version`` (refreshing if it is behind)."""
        if self._index.version < version:
            self.refresh()
            if self._index.version < version:
                raise FedCreditError("the coordinator's directory is behind the plan",
                                     code=ErrorCode.COORDINATOR_UNAVAILABLE)

    def _verified(self, cert: DirectoryCertificate, role: CertRole, party: str | None,
                  now: int | None) -> CertifiedIdentity | None:
        """The certificate's identity if the CA issued it for ``role`` (and ``party``) and it
        is valid at ``now`` — or, with ``now=None``, was valid at some point (its start)."""
        try:
            certificate = load_certificate(cert.pem)
            when = now if now is not None else int(
                certificate.not_valid_before_utc.timestamp() * 1000) + 1
            identity = verify_certificate(certificate, self._ca, when)
        except CertificateError:
            return None
        if identity.role is not role or (party is not None and identity.party_id != party):
            return None
        return identity

    def _build(self, view: DirectoryView) -> _Indexed:
        now = self._clock()
        members = {m.member_id: m for m in view.members}
        serials: dict[str, str] = {}
        member_keys: dict[tuple[str, str], Verifier] = {}
        for member in view.members:
            for cert in member.certificates:
                identity = self._verified(cert, CertRole.MEMBER, member.member_id, now)
                if identity is not None:
                    serials[identity.serial] = member.member_id
                    member_keys[(member.member_id, identity.verifier.key_id)] = identity.verifier
        coordinator_keys: dict[str, Verifier] = {}
        tree_head_keys: dict[str, Verifier] = {}
        for cert in view.coordinator_certificates:
            identity = self._verified(cert, CertRole.COORDINATOR, None, None)
            if identity is not None:
                tree_head_keys[identity.verifier.key_id] = identity.verifier
                if identity.not_before_ms <= now < identity.not_after_ms:
                    coordinator_keys[identity.verifier.key_id] = identity.verifier
        return _Indexed(view.version, members, serials, member_keys, coordinator_keys,
                        tree_head_keys)

    def requester_keys(self, excluding: str) -> list[PaillierPublicKey]:
        """The Paillier keys of the active members other than ``excluding`` (who may ask this
        member to encrypt under them)."""
        return [m.public_key for m in self._index.members.values()
                if m.active and m.public_key is not None and m.member_id != excluding]

    # -- decisions -----------------------------------------------------------------------------
    def member(self, member_id: str) -> DirectoryMember:
        member = self._index.members.get(member_id)
        if member is None:
            raise FedCreditError(f"member {member_id!r} is not in the alliance directory",
                                 code=ErrorCode.UNKNOWN_MEMBER)
        return member

    def require_active(self, member_id: str) -> DirectoryMember:
        member = self.member(member_id)
        if not member.active:
            raise FedCreditError(f"member {member_id} is {member.membership.lower()}",
                                 code=ErrorCode.MEMBER_SUSPENDED)
        return member

    def authorize_peer(self, identity: CertifiedIdentity) -> None:
        """A caller over mutual TLS: an active member presenting a listed certificate."""
        if identity.role is not CertRole.MEMBER:
            raise CertificateError("a member certificate is required")
        if self._index.serials.get(identity.serial) != identity.party_id:
            # Not listed: revoked, or issued after our copy. Check with the coordinator.
            self._refresh_on_unlisted(identity.serial)
            if self._index.serials.get(identity.serial) != identity.party_id:
                raise FedCreditError("the caller's certificate is revoked or unknown",
                                     code=ErrorCode.CERTIFICATE_REVOKED)
        self.require_active(identity.party_id)

    def coordinator_verifier(self, key_id: str) -> Verifier:
        verifier = self._index.coordinator_keys.get(key_id)
        if verifier is None:
            self._refresh_on_miss()
            verifier = self._index.coordinator_keys.get(key_id)
        if verifier is None:
            raise InvalidSignature()
        return verifier

    def tree_head_verifier(self, key_id: str) -> Verifier:
        """A coordinator key that signed ledger tree heads, current or expired (not revoked)."""
        verifier = self._index.tree_head_keys.get(key_id)
        if verifier is None:
            self._refresh_on_miss()
            verifier = self._index.tree_head_keys.get(key_id)
        if verifier is None:
            raise InvalidSignature(code=ErrorCode.LEDGER_TAMPERED)
        return verifier

    def member_verifier(self, member_id: str, key_id: str) -> Verifier:
        verifier = self._index.member_keys.get((member_id, key_id))
        if verifier is None:
            self._refresh_on_miss()
            verifier = self._index.member_keys.get((member_id, key_id))
        if verifier is None:
            raise InvalidSignature(code=ErrorCode.CONSENT_INVALID)
        return verifier
