"""The evaluation report a lender receives, and its durable store."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from fedcredit.errors import NotFoundError
from fedcredit.sqlite import SqliteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    query_id TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    subject_pseudonym BLOB NOT NULL,
    report TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Exposures:
    outstanding_debt: float  # currency units (cents / 100)
    active_loans: int
    open_credit_lines: int
    accounts_30dpd: int
    accounts_90dpd: int
    inquiries_90d: int
    #: Members holding an active loan of the applicant's, and members that flag the applicant
    #: on their private blacklists (counts only; reports stored before they existed: 0).
    institutions_with_active_loans: int = 0
    blacklist_flags: int = 0


@dataclass(frozen=True)
class SkippedMember:
    member_id: str
    error_code: str


@dataclass(frozen=True)
class CoverageReport:
    asked: int
    answered: int
    skipped: list[SkippedMember]


@dataclass(frozen=True)
class Timings:
    plan_ms: float
    route_ms: float
    decrypt_ms: float
    total_ms: float


@dataclass(frozen=True)
class EvaluationReport:
    query_id: str
    requester_id: str
    created_at_ms: int
    model_version: str
    purpose: str
    consent_reference: str
    requested_amount: float
    term_months: int
    score: int
    default_probability: float
    grade: str
    joint_logit: float
    institutions_with_records: int
    exposures: Exposures
    coverage: CoverageReport
    timings: Timings
    #: The lender's decision under its policy (scoring.decision.lending_document); reports
    #: stored before decisions existed have none.
    lending: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready dicts and lists (what ``dataclasses.asdict`` gives, without
        its deep copy of the lending document, which cost more than the rest of the report:
        the document is shared, read-only)."""
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["exposures"] = asdict(self.exposures)
        doc["coverage"] = asdict(self.coverage)
        doc["timings"] = asdict(self.timings)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> EvaluationReport:
        cov = doc["coverage"]
        return cls(
            **{
                **doc,
                "exposures": Exposures(**doc["exposures"]),
                "coverage": CoverageReport(
                    asked=cov["asked"],
                    answered=cov["answered"],
                    skipped=[SkippedMember(**s) for s in cov["skipped"]],
                ),
                "timings": Timings(**doc["timings"]),
            }
        )


class EvaluationStore:
    """Reports are committed (synchronous=FULL) before the API answers."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteDatabase(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def save(self, report: EvaluationReport, pseudonym: bytes) -> None:
        self._db.execute(
            "INSERT INTO evaluations VALUES (?, ?, ?, ?)",
            (report.query_id, report.created_at_ms, pseudonym, json.dumps(report.to_dict())),
        )

    def get(self, query_id: str) -> EvaluationReport:
        row = self._db.one("SELECT report FROM evaluations WHERE query_id=?", (query_id,))
        if row is None:
            raise NotFoundError(f"no evaluation {query_id} at this node")
        return EvaluationReport.from_dict(json.loads(row[0]))

    def count(self) -> int:
        row = self._db.one("SELECT COUNT(*) FROM evaluations")
        return int(row[0]) if row else 0
