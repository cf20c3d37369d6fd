"""The online feature store: one row per subject pseudonym, in SQLite (WAL).

A load replaces the whole table inside one transaction, so readers keep seeing the previous
contents until the new ones are complete (the data-plane issue adds versioned snapshots on top).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fedcredit.sqlite import SqliteDatabase

EXPOSURE_COLUMNS: tuple[str, ...] = (
    "outstanding_debt_cents",
    "active_loans",
    "open_credit_lines",
    "accounts_30dpd",
    "accounts_90dpd",
    "inquiries_90d",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS subjects (
    pseudonym BLOB PRIMARY KEY,
    {", ".join(f"{c} INTEGER NOT NULL" for c in EXPOSURE_COLUMNS)},
    features TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS load_history (
    loaded_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    rows INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class SubjectRecord:
    """What this member knows about one subject: exposures and model features."""

    exposures: Mapping[str, int]
    features: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadSummary:
    rows: int
    source: str
    source_sha256: str
    loaded_ms: int


class FeatureStore:
    def __init__(self, path: Path) -> None:
        self._db = SqliteDatabase(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def lookup(self, pseudonym: bytes) -> SubjectRecord | None:
        row = self._db.one(
            f"SELECT {', '.join(EXPOSURE_COLUMNS)}, features FROM subjects WHERE pseudonym=?",
            (pseudonym,),
        )
        if row is None:
            return None
        return SubjectRecord(
            exposures=dict(zip(EXPOSURE_COLUMNS, row[:-1], strict=True)),
            features=json.loads(row[-1]),
        )

    def replace_all(
        self, rows: Iterable[tuple[bytes, SubjectRecord]], summary: LoadSummary
    ) -> None:
        """Atomically replace every subject: all rows or none become visible."""
        placeholders = ", ".join("?" for _ in range(len(EXPOSURE_COLUMNS) + 2))
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM subjects")
            conn.executemany(
                f"INSERT INTO subjects VALUES ({placeholders})",
                (
                    (
                        pseudonym,
                        *(record.exposures[c] for c in EXPOSURE_COLUMNS),
                        json.dumps(dict(record.features), sort_keys=True),
                    )
                    for pseudonym, record in rows
                ),
            )
            conn.execute(
                "INSERT INTO load_history VALUES (?, ?, ?, ?)",
                (summary.loaded_ms, summary.source, summary.source_sha256, summary.rows),
            )

    def count(self) -> int:
        row = self._db.one("SELECT COUNT(*) FROM subjects")
        return int(row[0]) if row else 0

