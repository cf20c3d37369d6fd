"""The online feature store: one row per subject pseudonym, in SQLite (WAL).

A load replaces the whole table inside one transaction, so readers keep seeing the previous
contents until the new ones are complete (the data-plane issue adds versioned snapshots on top).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def lookup(self, pseudonym: bytes) -> SubjectRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(EXPOSURE_COLUMNS)}, features FROM subjects WHERE pseudonym=?",
                (pseudonym,),
            ).fetchone()
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
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM subjects")
                self._db.executemany(
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
                self._db.execute(
                    "INSERT INTO load_history VALUES (?, ?, ?, ?)",
                    (summary.loaded_ms, summary.source, summary.source_sha256, summary.rows),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM subjects").fetchone()[0])

    def last_load(self) -> LoadSummary | None:
        with self._lock:
            row = self._db.execute(
                "SELECT rows, source, source_sha256, loaded_ms FROM load_history "
                "ORDER BY rowid DESC LIMIT 1"
            ).fetchone()
        return None if row is None else LoadSummary(*row)
