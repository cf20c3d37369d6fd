"""The alliance protocol: join requests, admin decisions, member votes, suspension, revocation,
renewal. Each change and its audit-ledger entry commit in one transaction, so a coordinator
that stops half-way (crash, restart mid-approval) leaves either both or neither.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coordinator.ledger import AuditLedger
from coordinator.policy import PolicyStore
from coordinator.registry import MemberRegistry, Membership
from fedcredit.audit import EntryDraft, EntryKind
from fedcredit.clock import Clock
from fedcredit.errors import (
    ConflictError,
    ErrorCode,
    FedCreditError,
    InvalidRequestError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from mpc.pki import (
    CertificateAuthority,
    CertRole,
    certificate_to_pem,
    issue_certificate,
    normalize_fingerprint,
    parse_csr,
    verify_certificate,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS join_requests (
    request_id TEXT PRIMARY KEY,
    member_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    contact TEXT NOT NULL,
    csr_pem BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    approvals_required INTEGER NOT NULL,
    admin_approved_by TEXT,
    decided_ms INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    certificate_serial TEXT
);
CREATE INDEX IF NOT EXISTS join_requests_by_state ON join_requests (state);
CREATE TABLE IF NOT EXISTS join_votes (
    request_id TEXT NOT NULL,
    voter TEXT NOT NULL,
    approve INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (request_id, voter)
);
"""
#: Open requests at once: the enrollment port is reachable without credentials.
MAX_PENDING_REQUESTS = 100
MAX_TEXT = 200


class JoinState(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class JoinRequestRecord:
    request_id: str
    member_id: str
    display_name: str
    contact: str
    fingerprint: str
    state: JoinState
    created_ms: int
    approvals_required: int
    admin_approved_by: str | None
    decided_ms: int | None
    reason: str
    approvals: tuple[str, ...]
    rejections: tuple[str, ...]
    certificate_pem: bytes | None


class AdmissionService:
    def __init__(
        self,
        registry: MemberRegistry,
        policies: PolicyStore,
        authority: CertificateAuthority,
        ledger: AuditLedger,
        clock: Clock,
    ) -> None:
        self._registry = registry
        self._db = registry.db
        self._policies = policies
        self._authority = authority
        self._ledger = ledger
        self._clock = clock

    def _record(self, conn: sqlite3.Connection, kind: EntryKind, actor: str,
                body: dict[str, Any], now_ms: int) -> None:
        """The change's ledger entry, in the caller's transaction: both commit or neither."""
        self._ledger.append(EntryDraft(kind=kind, actor=actor, body=body), now_ms=now_ms,
                            conn=conn)

    # -- reads -------------------------------------------------------------------------------
    def get(self, request_id: str) -> JoinRequestRecord:
        with self._db.transaction() as conn:
            return self._load(conn, request_id)

    def list(self, state: JoinState | None = None) -> list[JoinRequestRecord]:
        with self._db.transaction() as conn:
            sql = "SELECT request_id FROM join_requests"
            rows = (conn.execute(sql + " WHERE state=? ORDER BY created_ms", (state.value,))
                    if state else conn.execute(sql + " ORDER BY created_ms")).fetchall()
            return [self._load(conn, r[0]) for r in rows]

    def _load(self, conn: sqlite3.Connection, request_id: str) -> JoinRequestRecord:
        row = conn.execute(
            """SELECT request_id, member_id, display_name, contact, fingerprint, state,
                      created_ms, approvals_required, admin_approved_by, decided_ms, reason,
                      certificate_serial
               FROM join_requests WHERE request_id=?""", (request_id,)).fetchone()
        if row is None:
            raise ResourceNotFoundError(f"no join request {request_id!r}")
        votes = conn.execute("SELECT voter, approve FROM join_votes WHERE request_id=? "
                             "ORDER BY created_ms", (request_id,)).fetchall()
        pem = None
        if row[11]:
            cert = conn.execute("SELECT pem FROM certificates WHERE serial=?",
                                (row[11],)).fetchone()
            pem = bytes(cert[0]) if cert else None
        return JoinRequestRecord(
            request_id=row[0], member_id=row[1], display_name=row[2], contact=row[3],
            fingerprint=row[4], state=JoinState(row[5]), created_ms=row[6],
            approvals_required=row[7], admin_approved_by=row[8], decided_ms=row[9],
            reason=row[10],
            approvals=tuple(v[0] for v in votes if v[1]),
            rejections=tuple(v[0] for v in votes if not v[1]),
            certificate_pem=pem,
        )

    # -- the applicant -----------------------------------------------------------------------
    def request_to_join(self, csr_pem: bytes, display_name: str, contact: str) -> JoinRequestRecord:
        request = parse_csr(csr_pem)
        if len(display_name) > MAX_TEXT or len(contact) > MAX_TEXT:
            raise InvalidRequestError(f"display_name and contact are limited to {MAX_TEXT} chars")
        now = self._clock()
        _, policy = self._policies.current()
        with self._db.transaction() as conn:
            existing = conn.execute(
                "SELECT request_id, fingerprint FROM join_requests "
                "WHERE member_id=? AND state=?", (request.party_id, JoinState.PENDING.value),
            ).fetchone()
            if existing is not None:
                if existing[1] == request.fingerprint:
                    return self._load(conn, existing[0])  # the same applicant asking again
                raise ConflictError(f"a join request for {request.party_id} is already pending")
            member = conn.execute("SELECT membership FROM members WHERE member_id=?",
                                  (request.party_id,)).fetchone()
            if member is not None and member[0] != Membership.REVOKED.value:
                raise ConflictError(f"{request.party_id} is already a member")
            pending = conn.execute("SELECT COUNT(*) FROM join_requests WHERE state=?",
                                   (JoinState.PENDING.value,)).fetchone()[0]
            if pending >= MAX_PENDING_REQUESTS:
                raise FedCreditError("too many pending join requests; try later",
                                     code=ErrorCode.RESOURCE_CONFLICT)
            active = conn.execute("SELECT COUNT(*) FROM members WHERE membership=?",
                                  (Membership.ACTIVE.value,)).fetchone()[0]
            request_id = str(uuid.uuid4())
            conn.execute(
                """INSERT INTO join_requests (request_id, member_id, display_name, contact,
                   csr_pem, fingerprint, state, created_ms, approvals_required)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (request_id, request.party_id, display_name or request.party_id, contact,
                 csr_pem, request.fingerprint, JoinState.PENDING.value, now,
                 min(policy.admission_quorum, active)),
            )
            self._record(conn, EntryKind.JOIN_REQUEST, request.party_id, {
                "request_id": request_id, "member_id": request.party_id,
                "key_fingerprint": request.fingerprint,
            }, now)
            return self._load(conn, request_id)

    # -- deciders ----------------------------------------------------------------------------
    def decide(self, request_id: str, approve: bool, actor: str, *,
               fingerprint: str = "", reason: str = "") -> JoinRequestRecord:
        """An admin's decision. Approval must quote the key fingerprint the applicant read out
        (out of band), so an admin cannot approve a key an impostor filed under its name."""
        now = self._clock()
        with self._db.transaction() as conn:
            record = self._pending(conn, request_id)
            if approve:
                if normalize_fingerprint(fingerprint) != normalize_fingerprint(record.fingerprint):
                    raise PermissionDeniedError(
                        "the fingerprint does not match the requested key; confirm it with the "
                        "applicant out of band")
                conn.execute("UPDATE join_requests SET admin_approved_by=? WHERE request_id=?",
                             (actor, request_id))
                self._record(conn, EntryKind.VOTE, actor, {
                    "request_id": request_id, "member_id": record.member_id, "approve": True,
                    "as": "admin"}, now)
            else:
                self._reject(conn, record, actor, reason or "rejected by an admin", now)
            self._settle(conn, request_id, now)
            return self._load(conn, request_id)

    def vote(self, request_id: str, voter: str, approve: bool) -> JoinRequestRecord:
        """A member's vote (quorum admission). One vote per member; votes are final."""
        now = self._clock()
        with self._db.transaction() as conn:
            record = self._pending(conn, request_id)
            if voter == record.member_id:
                raise PermissionDeniedError("an applicant cannot vote on its own request")
            try:
                conn.execute("INSERT INTO join_votes VALUES (?, ?, ?, ?)",
                             (request_id, voter, int(approve), now))
            except sqlite3.IntegrityError:
                raise ConflictError(f"{voter} already voted on this request") from None
            self._record(conn, EntryKind.VOTE, voter, {
                "request_id": request_id, "member_id": record.member_id, "approve": approve,
                "as": "member"}, now)
            self._settle(conn, request_id, now)
            return self._load(conn, request_id)

    def _pending(self, conn: sqlite3.Connection, request_id: str) -> JoinRequestRecord:
        record = self._load(conn, request_id)
        if record.state is not JoinState.PENDING:
            raise ConflictError(f"the join request is already {record.state.value.lower()}")
        return record

    def _settle(self, conn: sqlite3.Connection, request_id: str, now: int) -> None:
        record = self._load(conn, request_id)
        if record.state is not JoinState.PENDING:
            return
        active = conn.execute("SELECT COUNT(*) FROM members WHERE membership=?",
                              (Membership.ACTIVE.value,)).fetchone()[0]
        if active - len(record.rejections) < record.approvals_required:
            self._reject(conn, record, "coordinator", "the member quorum can no longer be reached",
                         now)
            return
        if record.admin_approved_by and len(record.approvals) >= record.approvals_required:
            self._admit(conn, record, now)

    def _reject(self, conn: sqlite3.Connection, record: JoinRequestRecord, actor: str,
                reason: str, now: int) -> None:
        conn.execute("UPDATE join_requests SET state=?, decided_ms=?, reason=? "
                     "WHERE request_id=?",
                     (JoinState.REJECTED.value, now, reason[:MAX_TEXT], record.request_id))
        self._record(conn, EntryKind.REJECTION, actor, {
            "request_id": record.request_id, "member_id": record.member_id,
            "reason": reason[:MAX_TEXT]}, now)

    def _admit(self, conn: sqlite3.Connection, record: JoinRequestRecord, now: int) -> None:
        _, policy = self._policies.current()
        csr_pem = conn.execute("SELECT csr_pem FROM join_requests WHERE request_id=?",
                               (record.request_id,)).fetchone()[0]
        request = parse_csr(bytes(csr_pem))
        certificate = issue_certificate(self._authority, request.party_id, CertRole.MEMBER,
                                        request.public_key, now, policy.member_certificate_days)
        identity = verify_certificate(certificate, self._authority.certificate, now)
        pem = certificate_to_pem(certificate)
        MemberRegistry.add_member(conn, record.member_id, record.display_name, now)
        MemberRegistry.add_certificate(conn, identity, pem, now)
        conn.execute("UPDATE join_requests SET state=?, decided_ms=?, certificate_serial=? "
                     "WHERE request_id=?",
                     (JoinState.APPROVED.value, now, identity.serial, record.request_id))
        version = MemberRegistry.bump_version(conn)
        self._record(conn, EntryKind.ADMISSION, record.admin_approved_by or "coordinator", {
            "request_id": record.request_id, "member_id": record.member_id,
            "certificate_serial": identity.serial, "key_fingerprint": identity.fingerprint,
            "not_after_ms": identity.not_after_ms, "member_approvals": list(record.approvals),
            "directory_version": version}, now)

    # -- membership changes --------------------------------------------------------------------
    def suspend(self, member_id: str, actor: str, reason: str) -> int:
        return self._set_membership(member_id, Membership.SUSPENDED, EntryKind.SUSPENSION,
                                    actor, reason, allowed_from={Membership.ACTIVE})

    def reinstate(self, member_id: str, actor: str, reason: str) -> int:
        return self._set_membership(member_id, Membership.ACTIVE, EntryKind.REINSTATEMENT,
                                    actor, reason, allowed_from={Membership.SUSPENDED})

    def revoke(self, member_id: str, actor: str, reason: str) -> int:
        """Final: every certificate of the member is revoked; it must apply to join again."""
        return self._set_membership(member_id, Membership.REVOKED, EntryKind.REVOCATION, actor,
                                    reason, allowed_from={Membership.ACTIVE, Membership.SUSPENDED})

    def _set_membership(self, member_id: str, target: Membership, kind: EntryKind, actor: str,
                        reason: str, allowed_from: set[Membership]) -> int:
        now = self._clock()
        with self._db.transaction() as conn:
            row = conn.execute("SELECT membership FROM members WHERE member_id=?",
                               (member_id,)).fetchone()
            if row is None:
                raise ResourceNotFoundError(f"no member {member_id!r}")
            current = Membership(row[0])
            if current not in allowed_from:
                raise ConflictError(f"{member_id} is {current.value.lower()}; cannot become "
                                    f"{target.value.lower()}")
            MemberRegistry.set_membership(conn, member_id, target)
            revoked: list[str] = []
            if target is Membership.REVOKED:
                revoked = MemberRegistry.revoke_certificates(conn, member_id, now)
            version = MemberRegistry.bump_version(conn)
            self._record(conn, kind, actor, {
                "member_id": member_id, "reason": reason[:MAX_TEXT],
                "revoked_serials": revoked, "directory_version": version}, now)
            return version

    def revoke_certificate(self, serial: str, actor: str, reason: str) -> int:
        """Revoke one certificate (a leaked key); the member stays, with its other ones."""
        now = self._clock()
        with self._db.transaction() as conn:
            row = conn.execute("SELECT party_id, revoked_ms FROM certificates WHERE serial=?",
                               (serial,)).fetchone()
            if row is None:
                raise ResourceNotFoundError(f"no certificate {serial!r}")
            if row[1] is not None:
                raise ConflictError("the certificate is already revoked")
            MemberRegistry.revoke_certificates(conn, row[0], now, serials=[serial])
            version = MemberRegistry.bump_version(conn)
            self._record(conn, EntryKind.REVOCATION, actor, {
                "member_id": row[0], "reason": reason[:MAX_TEXT], "revoked_serials": [serial],
                "directory_version": version}, now)
            return version

    def renew(self, member_id: str, csr_pem: bytes) -> bytes:
        """A certificate for a new key of an active member. The old certificate stays valid
        until it expires (or is revoked), so the member switches without downtime."""
        request = parse_csr(csr_pem)
        if request.party_id != member_id:
            raise PermissionDeniedError("a member can only renew its own certificate")
        now = self._clock()
        _, policy = self._policies.current()
        with self._db.transaction() as conn:
            row = conn.execute("SELECT membership FROM members WHERE member_id=?",
                               (member_id,)).fetchone()
            if row is None or row[0] != Membership.ACTIVE.value:
                raise PermissionDeniedError(f"{member_id} is not an active member")
            certificate = issue_certificate(self._authority, member_id, CertRole.MEMBER,
                                            request.public_key, now,
                                            policy.member_certificate_days)
            identity = verify_certificate(certificate, self._authority.certificate, now)
            pem = certificate_to_pem(certificate)
            MemberRegistry.add_certificate(conn, identity, pem, now)
            version = MemberRegistry.bump_version(conn)
            self._record(conn, EntryKind.CERTIFICATE_RENEWAL, member_id, {
                "member_id": member_id, "certificate_serial": identity.serial,
                "key_fingerprint": identity.fingerprint, "not_after_ms": identity.not_after_ms,
                "directory_version": version}, now)
            return pem
