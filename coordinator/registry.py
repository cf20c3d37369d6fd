"""The member registry: members, their certificates, liveness, and the directory version.

Durable in the coordinator's SQLite database (WAL, full fsync), shared with admission and the
audit ledger so that a change and its ledger entry commit together or not at all. Every change
that affects who may call whom (admission, suspension, revocation, renewal, a new endpoint or
key) bumps the directory version; members refresh their copy when they see a newer one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from fedcredit.errors import CertificateError, ErrorCode, FedCreditError
from fedcredit.sqlite import SqliteDatabase
from mpc.paillier import PaillierPublicKey
from mpc.pki import CertifiedIdentity, CertRole

SCHEMA = """
CREATE TABLE IF NOT EXISTS members (
    member_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    membership TEXT NOT NULL,
    joined_ms INTEGER NOT NULL,
    endpoint TEXT NOT NULL DEFAULT '',
    paillier_n BLOB,
    paillier_hs BLOB,
    last_heartbeat_ms INTEGER NOT NULL DEFAULT 0,
    applied_version INTEGER NOT NULL DEFAULT 0,
    latency_ms REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    party_id TEXT NOT NULL,
    role TEXT NOT NULL,
    pem BLOB NOT NULL,
    issued_ms INTEGER NOT NULL,
    not_after_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE INDEX IF NOT EXISTS certificates_by_party ON certificates (party_id);
CREATE TABLE IF NOT EXISTS directory_state (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version INTEGER NOT NULL
);
INSERT OR IGNORE INTO directory_state (singleton, version) VALUES (1, 1);
"""
#: Weight of a new latency sample in the moving average.
LATENCY_EWMA_ALPHA = 0.3


class MemberStatus(StrEnum):
    """Liveness: ACTIVE while heartbeats arrive within the stale window."""

    ACTIVE = "ACTIVE"
    STALE = "STALE"


class Membership(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    REVOKED = "REVOKED"


@dataclass(frozen=True)
class CertificateRecord:
    serial: str
    party_id: str
    role: CertRole
    pem: bytes
    issued_ms: int
    not_after_ms: int
    revoked_ms: int | None

    def valid_at(self, now_ms: int) -> bool:
        return self.revoked_ms is None and now_ms < self.not_after_ms


@dataclass(frozen=True)
class MemberRecord:
    member_id: str
    display_name: str
    membership: Membership
    endpoint: str
    public_key: PaillierPublicKey | None
    last_heartbeat_ms: int
    applied_version: int
    latency_ms: float
    status: MemberStatus
    certificates: tuple[CertificateRecord, ...]

    @property
    def plannable(self) -> bool:
        """Active member, alive, announced: it can be put on a route."""
        return (
            self.membership is Membership.ACTIVE
            and self.status is MemberStatus.ACTIVE
            and bool(self.endpoint)
            and self.public_key is not None
        )


@dataclass(frozen=True)
class DirectorySnapshot:
    version: int
    members: tuple[MemberRecord, ...]
    coordinator_certificates: tuple[CertificateRecord, ...]


def unknown_member(member_id: str) -> FedCreditError:
    return FedCreditError(f"member {member_id!r} is not registered", code=ErrorCode.UNKNOWN_MEMBER)


class MemberRegistry:
    """Reads and single-statement writes; multi-table changes take a ``conn`` from
    ``db.transaction()`` so the caller can add its ledger entry to the same commit."""

    def __init__(self, db: SqliteDatabase, stale_after_ms: int) -> None:
        """``db`` was opened with :data:`SCHEMA` (see :mod:`coordinator.database`)."""
        self.db = db
        self._stale_after_ms = stale_after_ms
        # Databases created before keys carried a DJN base (issue 7) lack the column.
        db.add_missing_column("members", "paillier_hs", "BLOB")

    # -- writes inside a caller's transaction -------------------------------------------------
    @staticmethod
    def bump_version(conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE directory_state SET version = version + 1 WHERE singleton = 1")
        row = conn.execute("SELECT version FROM directory_state").fetchone()
        return int(row[0])

    @staticmethod
    def add_member(conn: sqlite3.Connection, member_id: str, display_name: str,
                   now_ms: int) -> None:
        conn.execute(
            """INSERT INTO members (member_id, display_name, membership, joined_ms)
               VALUES (?, ?, ?, ?)
               ON CONFLICT(member_id) DO UPDATE SET display_name=excluded.display_name,
                 membership=excluded.membership, joined_ms=excluded.joined_ms,
                 endpoint='', paillier_n=NULL, paillier_hs=NULL, last_heartbeat_ms=0,
                 latency_ms=0""",
            (member_id, display_name, Membership.ACTIVE.value, now_ms),
        )

    @staticmethod
    def add_certificate(conn: sqlite3.Connection, identity: CertifiedIdentity, pem: bytes,
                        now_ms: int) -> None:
        conn.execute(
            """INSERT INTO certificates (serial, party_id, role, pem, issued_ms, not_after_ms)
               VALUES (?, ?, ?, ?, ?, ?)""",
            (identity.serial, identity.party_id, identity.role.value, pem, now_ms,
             identity.not_after_ms),
        )

    @staticmethod
    def set_membership(conn: sqlite3.Connection, member_id: str, membership: Membership) -> None:
        changed = conn.execute("UPDATE members SET membership=? WHERE member_id=?",
                               (membership.value, member_id)).rowcount
        if changed == 0:
            raise unknown_member(member_id)

    @staticmethod
    def revoke_certificates(conn: sqlite3.Connection, party_id: str, now_ms: int,
                            serials: Sequence[str] | None = None) -> list[str]:
        rows = conn.execute(
            "SELECT serial FROM certificates WHERE party_id=? AND revoked_ms IS NULL",
            (party_id,),
        ).fetchall()
        targets = [r[0] for r in rows if serials is None or r[0] in serials]
        conn.executemany("UPDATE certificates SET revoked_ms=? WHERE serial=?",
                         [(now_ms, s) for s in targets])
        return targets

    # -- single-statement writes -------------------------------------------------------------
    def announce(self, member_id: str, display_name: str, endpoint: str,
                 key: PaillierPublicKey, now_ms: int) -> int:
        """Record endpoint and key (a change bumps the directory version); the version."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT endpoint, paillier_n, paillier_hs FROM members WHERE member_id=?",
                (member_id,)).fetchone()
            if row is None:
                raise unknown_member(member_id)
            conn.execute(
                """UPDATE members SET display_name=?, endpoint=?, paillier_n=?, paillier_hs=?,
                   last_heartbeat_ms=?, latency_ms=CASE WHEN endpoint=? THEN latency_ms ELSE 0 END
                   WHERE member_id=?""",
                (display_name, endpoint, key.to_bytes(), key.hs_bytes() or None, now_ms, endpoint,
                 member_id),
            )
            if (row[0], row[1], row[2] or b"") != (endpoint, key.to_bytes(), key.hs_bytes()):
                return self.bump_version(conn)
            return int(conn.execute("SELECT version FROM directory_state").fetchone()[0])

    def heartbeat(self, member_id: str, applied_version: int, now_ms: int) -> int:
        # Liveness: a crash may lose it (the next heartbeat restores it), so no fsync, which
        # would hold the database lock that plans commit under.
        with self.db.transaction(durable=False) as conn:
            changed = conn.execute(
                "UPDATE members SET last_heartbeat_ms=?, applied_version=? WHERE member_id=?",
                (now_ms, applied_version, member_id),
            ).rowcount
            if changed == 0:
                raise unknown_member(member_id)
            return int(conn.execute("SELECT version FROM directory_state").fetchone()[0])

    def record_latency(self, member_id: str, rtt_ms: float) -> None:
        self.db.execute(
            """UPDATE members SET latency_ms = CASE WHEN latency_ms = 0 THEN ?
               ELSE ? * ? + (1 - ?) * latency_ms END WHERE member_id=?""",
            (rtt_ms, LATENCY_EWMA_ALPHA, rtt_ms, LATENCY_EWMA_ALPHA, member_id),
            durable=False,  # a measurement: the next probe makes up for a lost one
        )

    # -- reads -------------------------------------------------------------------------------
    def version(self) -> int:
        row = self.db.one("SELECT version FROM directory_state")
        assert row is not None
        return int(row[0])

    def certificates(self, party_id: str | None = None) -> list[CertificateRecord]:
        sql = """SELECT serial, party_id, role, pem, issued_ms, not_after_ms, revoked_ms
                 FROM certificates"""
        rows = (self.db.all(sql + " WHERE party_id=? ORDER BY issued_ms", (party_id,))
                if party_id is not None else self.db.all(sql + " ORDER BY issued_ms"))
        return [CertificateRecord(r[0], r[1], CertRole(r[2]), r[3], r[4], r[5], r[6])
                for r in rows]

    def certificate(self, serial: str) -> CertificateRecord | None:
        row = self.db.one(
            """SELECT serial, party_id, role, pem, issued_ms, not_after_ms, revoked_ms
               FROM certificates WHERE serial=?""", (serial,))
        if row is None:
            return None
        return CertificateRecord(row[0], row[1], CertRole(row[2]), row[3], row[4], row[5], row[6])

    def members(self, now_ms: int) -> list[MemberRecord]:
        rows = self.db.all(
            """SELECT member_id, display_name, membership, endpoint, paillier_n,
                      last_heartbeat_ms, applied_version, latency_ms, paillier_hs
               FROM members ORDER BY member_id"""
        )
        certs: dict[str, list[CertificateRecord]] = {}
        for cert in self.certificates():
            if cert.role is CertRole.MEMBER and cert.valid_at(now_ms):
                certs.setdefault(cert.party_id, []).append(cert)
        return [
            MemberRecord(
                member_id=row[0],
                display_name=row[1],
                membership=Membership(row[2]),
                endpoint=row[3],
                public_key=(PaillierPublicKey.from_bytes(row[4], hs=row[8] or b"")
                            if row[4] else None),
                last_heartbeat_ms=row[5],
                applied_version=row[6],
                latency_ms=row[7],
                status=(
                    MemberStatus.ACTIVE
                    if row[5] and now_ms - row[5] <= self._stale_after_ms
                    else MemberStatus.STALE
                ),
                certificates=tuple(certs.get(row[0], ())),
            )
            for row in rows
        ]

    def get(self, member_id: str, now_ms: int) -> MemberRecord:
        for member in self.members(now_ms):
            if member.member_id == member_id:
                return member
        raise unknown_member(member_id)

    def exists(self, member_id: str) -> Membership | None:
        row = self.db.one("SELECT membership FROM members WHERE member_id=?", (member_id,))
        return Membership(row[0]) if row else None

    def directory(self, now_ms: int) -> DirectorySnapshot:
        # Expired coordinator certificates stay listed (unless revoked): members need their keys
        # to check tree heads signed long ago. Plans are accepted only under current ones.
        coordinator_certs = tuple(
            c for c in self.certificates()
            if c.role is CertRole.COORDINATOR and c.revoked_ms is None
        )
        return DirectorySnapshot(self.version(), tuple(self.members(now_ms)), coordinator_certs)

    # -- authorization -------------------------------------------------------------------------
    def authorize_member(self, identity: CertifiedIdentity) -> None:
        """The caller's certificate is a member's current, unrevoked one, and it is active."""
        if identity.role is not CertRole.MEMBER:
            raise CertificateError("a member certificate is required")
        cert = self.certificate(identity.serial)
        if cert is None or cert.party_id != identity.party_id:
            raise CertificateError("the certificate is not registered with the alliance")
        if cert.revoked_ms is not None:
            raise FedCreditError("the certificate has been revoked",
                                 code=ErrorCode.CERTIFICATE_REVOKED)
        membership = self.exists(identity.party_id)
        if membership is None:
            raise unknown_member(identity.party_id)
        if membership is not Membership.ACTIVE:
            raise FedCreditError(f"member {identity.party_id} is {membership.value.lower()}",
                                 code=ErrorCode.MEMBER_SUSPENDED)

    def unconfirmed(self, version: int, now_ms: int) -> list[str]:
        """Online active members that do not enforce directory ``version`` yet."""
        return [
            m.member_id for m in self.members(now_ms)
            if m.membership is Membership.ACTIVE and m.status is MemberStatus.ACTIVE
            and m.applied_version < version
        ]

    def ensure_coordinator_certificate(self, identity: CertifiedIdentity, pem: bytes,
                                       now_ms: int) -> None:
        """Publish the coordinator's current certificate in the directory (plan signer)."""
        with self.db.transaction() as conn:
            known = conn.execute("SELECT 1 FROM certificates WHERE serial=?",
                                 (identity.serial,)).fetchone()
            if known is None:
                self.add_certificate(conn, identity, pem, now_ms)
                self.bump_version(conn)
