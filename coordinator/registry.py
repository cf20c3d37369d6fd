"""The member registry: durable in SQLite (WAL), safe to share between gRPC worker threads."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from fedcredit.errors import ErrorCode, FedCreditError
from fedcredit.sqlite import SqliteDatabase
from mpc.paillier import PaillierPublicKey

_SCHEMA = """
CREATE TABLE IF NOT EXISTS members (
    member_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    paillier_n BLOB NOT NULL,
    registered_ms INTEGER NOT NULL,
    last_heartbeat_ms INTEGER NOT NULL,
    latency_ms REAL NOT NULL DEFAULT 0
)
"""
#: Weight of a new latency sample in the moving average.
LATENCY_EWMA_ALPHA = 0.3


class MemberStatus(StrEnum):
    ACTIVE = "ACTIVE"
    STALE = "STALE"


@dataclass(frozen=True)
class MemberRecord:
    member_id: str
    display_name: str
    endpoint: str
    public_key: PaillierPublicKey
    last_heartbeat_ms: int
    latency_ms: float
    status: MemberStatus


class MemberRegistry:
    def __init__(self, path: Path, stale_after_ms: int) -> None:
        self._db = SqliteDatabase(path, _SCHEMA)
        self._stale_after_ms = stale_after_ms

    def close(self) -> None:
        self._db.close()

    def register(
        self,
        member_id: str,
        display_name: str,
        endpoint: str,
        public_key: PaillierPublicKey,
        now_ms: int,
    ) -> None:
        """Insert or update a member; re-registration replaces endpoint and key."""
        self._db.execute(
            """INSERT INTO members
               (member_id, display_name, endpoint, paillier_n, registered_ms, last_heartbeat_ms)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT(member_id) DO UPDATE SET
                 display_name=excluded.display_name, endpoint=excluded.endpoint,
                 paillier_n=excluded.paillier_n, last_heartbeat_ms=excluded.last_heartbeat_ms,
                 latency_ms=0""",
            (member_id, display_name, endpoint, public_key.to_bytes(), now_ms, now_ms),
        )

    def heartbeat(self, member_id: str, now_ms: int) -> None:
        changed = self._db.execute(
            "UPDATE members SET last_heartbeat_ms=? WHERE member_id=?", (now_ms, member_id)
        )
        if changed == 0:
            raise FedCreditError(f"member {member_id!r} is not registered",
                                 code=ErrorCode.UNKNOWN_MEMBER)

    def record_latency(self, member_id: str, rtt_ms: float) -> None:
        self._db.execute(
            """UPDATE members SET latency_ms = CASE WHEN latency_ms = 0 THEN ?
               ELSE ? * ? + (1 - ?) * latency_ms END WHERE member_id=?""",
            (rtt_ms, LATENCY_EWMA_ALPHA, rtt_ms, LATENCY_EWMA_ALPHA, member_id),
        )

    def members(self, now_ms: int) -> list[MemberRecord]:
        rows = self._db.all(
            """SELECT member_id, display_name, endpoint, paillier_n, last_heartbeat_ms,
                      latency_ms FROM members ORDER BY member_id"""
        )
        return [
            MemberRecord(
                member_id=row[0],
                display_name=row[1],
                endpoint=row[2],
                public_key=PaillierPublicKey.from_bytes(row[3]),
                last_heartbeat_ms=row[4],
                latency_ms=row[5],
                status=(
                    MemberStatus.ACTIVE
                    if now_ms - row[4] <= self._stale_after_ms
                    else MemberStatus.STALE
                ),
            )
            for row in rows
        ]

    def get(self, member_id: str, now_ms: int) -> MemberRecord:
        for member in self.members(now_ms):
            if member.member_id == member_id:
                return member
        raise FedCreditError(f"member {member_id!r} is not registered",
                             code=ErrorCode.UNKNOWN_MEMBER)
