"""The alliance policy: route planning limits, allowed purposes, admission quorum.

One current version, durable in the coordinator's database; every change is a new version
recorded in the audit ledger in the same transaction. The first start seeds it from the
coordinator's settings; from then on the admin API changes it.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fedcredit.errors import PolicyError
from fedcredit.protocol import Purpose
from fedcredit.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS policy_versions (
    version INTEGER PRIMARY KEY,
    doc TEXT NOT NULL,
    changed_ms INTEGER NOT NULL,
    changed_by TEXT NOT NULL
);
"""


class AlliancePolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: How routes are shaped: "chain" (node to node), "tree" (fan-out and aggregate at a
    #: member other than the requester) or "auto" (TREE once a route has at least
    #: ``tree_min_members`` members, CHAIN below).
    route_mode: Literal["chain", "tree", "auto"] = "auto"
    tree_min_members: int = Field(default=4, ge=2, le=1024)
    #: Children per TREE hop; larger alliances get more levels.
    tree_fanout: int = Field(default=8, ge=2, le=64)
    #: Fewer answering members than this fails an evaluation. Below 2 a requester could
    #: decrypt one member's exact share: allowed only in dev (the coordinator checks).
    min_answered: int = Field(default=2, ge=1, le=64)
    hop_timeout_ms: int = Field(default=2_000, ge=100, le=60_000)
    plan_ttl_ms: int = Field(default=20_000, ge=1_000, le=600_000)
    max_plan_ttl_ms: int = Field(default=60_000, ge=1_000, le=600_000)
    #: Lifetime of a portfolio re-scoring plan (a CHAIN walked once per chunk): the whole job
    #: must finish within it.
    portfolio_plan_ttl_ms: int = Field(default=3_600_000, ge=60_000, le=86_400_000)
    allowed_purposes: frozenset[Purpose] = frozenset(Purpose)
    #: Purposes only allowed for a subject the requester attests to be its existing customer.
    existing_customer_purposes: frozenset[Purpose] = frozenset(
        {Purpose.ACCOUNT_REVIEW, Purpose.COLLECTIONS}
    )
    #: Member approvals a join request needs besides the admin's (capped at the number of
    #: active members when the request is filed, so the first members can join).
    admission_quorum: int = Field(default=0, ge=0, le=64)
    #: Validity of member certificates issued on admission and renewal.
    member_certificate_days: int = Field(default=90, ge=1, le=825)

    @model_validator(mode="after")
    def _consistent(self) -> AlliancePolicy:
        if self.max_plan_ttl_ms < self.plan_ttl_ms:
            raise ValueError("max_plan_ttl_ms must be at least plan_ttl_ms")
        if not self.allowed_purposes:
            raise ValueError("allowed_purposes must name at least one purpose")
        return self

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def parse(cls, doc: object) -> AlliancePolicy:
        """A validated policy, or POLICY_INVALID naming every field at fault."""
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}"
                for e in exc.errors()
            )
            raise PolicyError(problems) from None


class PolicyStore:
    def __init__(self, db: SqliteDatabase, initial: AlliancePolicy, now_ms: int) -> None:
        self._db = db
        with db.transaction() as conn:
            if conn.execute("SELECT COUNT(*) FROM policy_versions").fetchone()[0] == 0:
                conn.execute(
                    "INSERT INTO policy_versions VALUES (1, ?, ?, 'settings')",
                    (initial.to_json(), now_ms),
                )

    def current(self) -> tuple[int, AlliancePolicy]:
        row = self._db.one("SELECT version, doc FROM policy_versions ORDER BY version DESC LIMIT 1")
        assert row is not None
        return int(row[0]), AlliancePolicy.model_validate_json(row[1])

    @staticmethod
    def replace(conn: sqlite3.Connection, policy: AlliancePolicy, actor: str,
                now_ms: int) -> int:
        row = conn.execute("SELECT MAX(version) FROM policy_versions").fetchone()
        version = int(row[0] or 0) + 1
        conn.execute("INSERT INTO policy_versions VALUES (?, ?, ?, ?)",
                     (version, policy.to_json(), now_ms, actor))
        return version

    def history(self) -> list[tuple[int, int, str, AlliancePolicy]]:
        rows = self._db.all("SELECT version, changed_ms, changed_by, doc FROM policy_versions "
                            "ORDER BY version")
        return [(r[0], r[1], r[2], AlliancePolicy.model_validate(json.loads(r[3]))) for r in rows]
