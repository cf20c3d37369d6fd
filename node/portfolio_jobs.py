"""Portfolio jobs as the requester keeps them: one row per job (state, progress, summary) in
``<data_dir>/portfolio/jobs.sqlite3`` and a directory per job for its files.

A job directory holds ``pseudonyms.bin`` (the job's distinct subject pseudonyms in chunk order:
what the consent's Merkle root commits to, kept to open it to an auditor) and, once the job
succeeded, ``results.parquet`` (``results.csv`` is written from it on first download). Raw
identifiers are never stored: result rows carry the request's row number and the pseudonym.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from fedcredit.errors import ErrorCode, NotFoundError
from fedcredit.sqlite import SqliteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS portfolio_jobs (
    job_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    subjects INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    chunks_done INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    model_version TEXT NOT NULL,
    query_id TEXT NOT NULL,
    error_code TEXT,
    error_detail TEXT,
    summary TEXT NOT NULL
);
"""
_COLUMNS = ("job_id, state, created_ms, updated_ms, rows, subjects, chunks, chunks_done, purpose, "
            "model_version, query_id, error_code, error_detail, summary")
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
PSEUDONYMS_FILE = "pseudonyms.bin"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    state: JobState
    created_ms: int
    updated_ms: int
    #: Rows in the request, distinct subjects among them, and chunks of those.
    rows: int
    subjects: int
    chunks: int
    chunks_done: int
    purpose: str
    model_version: str = ""
    query_id: str = ""
    error_code: ErrorCode | None = None
    error_detail: str | None = None
    #: Coverage, counts and timings, filled as the job runs (JSON-safe values only).
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def progress(self) -> float:
        return 1.0 if self.state is JobState.SUCCEEDED else (
            self.chunks_done / self.chunks if self.chunks else 0.0)


def _record(row: tuple[Any, ...]) -> JobRecord:
    return JobRecord(
        job_id=row[0], state=JobState(row[1]), created_ms=row[2], updated_ms=row[3],
        rows=row[4], subjects=row[5], chunks=row[6], chunks_done=row[7], purpose=row[8],
        model_version=row[9], query_id=row[10],
        error_code=None if row[11] is None else ErrorCode(row[11]), error_detail=row[12],
        summary=json.loads(row[13]))


class JobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._db = SqliteDatabase(root / "jobs.sqlite3", _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def directory(self, job_id: str) -> Path:
        return self.root / job_id

    def create(self, record: JobRecord) -> None:
        self.directory(record.job_id).mkdir(parents=True, exist_ok=False)
        self._db.execute(f"INSERT INTO portfolio_jobs ({_COLUMNS}) VALUES "
                         "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _row(record))

    def save(self, record: JobRecord) -> None:
        self._db.execute(
            "UPDATE portfolio_jobs SET state=?, updated_ms=?, chunks=?, chunks_done=?, "
            "model_version=?, query_id=?, error_code=?, error_detail=?, summary=? WHERE job_id=?",
            (record.state.value, record.updated_ms, record.chunks, record.chunks_done,
             record.model_version,
             record.query_id, None if record.error_code is None else record.error_code.value,
             record.error_detail, json.dumps(record.summary, sort_keys=True), record.job_id))

    def get(self, job_id: str) -> JobRecord:
        row = self._db.one(f"SELECT {_COLUMNS} FROM portfolio_jobs WHERE job_id=?", (job_id,))
        if row is None:
            raise NotFoundError(f"no portfolio job {job_id} at this node")
        return _record(row)

    def recent(self, limit: int) -> list[JobRecord]:
        rows = self._db.all(f"SELECT {_COLUMNS} FROM portfolio_jobs "
                            "ORDER BY created_ms DESC, job_id LIMIT ?", (limit,))
        return [_record(r) for r in rows]

    def interrupted(self, now_ms: int) -> list[JobRecord]:
        """Jobs a previous process left queued or running, now failed: nothing resumes them
        (the hops' sessions and the job's secret key died with that process)."""
        rows = self._db.all(f"SELECT {_COLUMNS} FROM portfolio_jobs WHERE state IN (?, ?)",
                            (JobState.QUEUED.value, JobState.RUNNING.value))
        failed = [replace(_record(r), state=JobState.FAILED, updated_ms=now_ms,
                          error_code=ErrorCode.JOB_INTERRUPTED,
                          error_detail="the node stopped while the job ran; start it again")
                  for r in rows]
        for record in failed:
            self.save(record)
        return failed


def _row(r: JobRecord) -> tuple[Any, ...]:
    return (r.job_id, r.state.value, r.created_ms, r.updated_ms, r.rows, r.subjects, r.chunks,
            r.chunks_done, r.purpose, r.model_version, r.query_id,
            None if r.error_code is None else r.error_code.value, r.error_detail,
            json.dumps(r.summary, sort_keys=True))
