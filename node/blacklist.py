"""This member's private blacklist: subjects it flagged (fraud, litigation, …), with an expiry.

Flags stay in the member's own database, keyed by subject pseudonym (the raw identifier is
pseudonymized when the flag is set and never stored). A joint evaluation learns only how many
members hold an unexpired flag on the applicant — each member adds 0 or 1 to an encrypted count
(``ContributionVector.flagged``) — never which member, which category or since when. Nobody
can list the alliance's blacklist: a member can list only its own flags, and only by flag id,
category and dates.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from fedcredit.clock import Clock, system_clock
from fedcredit.errors import InvalidRequestError, NotFoundError
from fedcredit.sqlite import SqliteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subject_flags (
    flag_id TEXT PRIMARY KEY,
    subject_pseudonym BLOB NOT NULL,
    category TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    note TEXT NOT NULL,
    withdrawn_ms INTEGER
);
CREATE INDEX IF NOT EXISTS subject_flags_by_subject
    ON subject_flags (subject_pseudonym, expires_ms);
"""
MAX_NOTE = 500


class FlagCategory(StrEnum):
    FRAUD = "fraud"
    LITIGATION = "litigation"
    IDENTITY_MISUSE = "identity_misuse"


@dataclass(frozen=True)
class SubjectFlag:
    flag_id: str
    category: FlagCategory
    created_ms: int
    expires_ms: int
    created_by: str
    note: str
    withdrawn_ms: int | None

    def active(self, now_ms: int) -> bool:
        return self.withdrawn_ms is None and self.expires_ms > now_ms


class SubjectFlags:
    """The member's flags; one SQLite file beside its other stores."""

    def __init__(self, path: Path, clock: Clock = system_clock) -> None:
        self._db = SqliteDatabase(path, _SCHEMA)
        self._clock = clock

    def close(self) -> None:
        self._db.close()

    def add(self, pseudonym: bytes, category: FlagCategory, expires_ms: int, created_by: str,
            note: str = "") -> SubjectFlag:
        now = self._clock()
        if expires_ms <= now:
            raise InvalidRequestError("a flag's expiry must be in the future")
        if not created_by.strip():
            raise InvalidRequestError("say who sets the flag (created_by)")
        if len(note) > MAX_NOTE:
            raise InvalidRequestError(f"the note is longer than {MAX_NOTE} characters")
        flag = SubjectFlag(f"flg_{secrets.token_hex(6)}", FlagCategory(category), now,
                           expires_ms, created_by.strip(), note, None)
        self._db.execute(
            "INSERT INTO subject_flags VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            (flag.flag_id, pseudonym, flag.category.value, flag.created_ms, flag.expires_ms,
             flag.created_by, flag.note))
        return flag

    def withdraw(self, flag_id: str) -> SubjectFlag:
        """Withdrawn flags are kept (who flagged whom, and when, stays on record)."""
        changed = self._db.execute(
            "UPDATE subject_flags SET withdrawn_ms = ? WHERE flag_id = ? AND withdrawn_ms IS NULL",
            (self._clock(), flag_id))
        flag = self.get(flag_id)
        if not changed:
            raise InvalidRequestError(f"flag {flag_id} was already withdrawn")
        return flag

    def get(self, flag_id: str) -> SubjectFlag:
        row = self._db.one(f"SELECT {_COLUMNS} FROM subject_flags WHERE flag_id = ?", (flag_id,))
        if row is None:
            raise NotFoundError(f"no flag {flag_id}")
        return _flag(row)

    def is_flagged(self, pseudonym: bytes, now_ms: int) -> bool:
        """Whether any unexpired, unwithdrawn flag of this member names the subject."""
        return self._db.one(
            "SELECT 1 FROM subject_flags WHERE subject_pseudonym = ? AND expires_ms > ? "
            "AND withdrawn_ms IS NULL LIMIT 1", (pseudonym, now_ms)) is not None

    def flagged_among(self, pseudonyms: Sequence[bytes], now_ms: int) -> set[bytes]:
        """Which of these subjects :meth:`is_flagged` names (one query: a portfolio chunk)."""
        flagged: set[bytes] = set()
        for start in range(0, len(pseudonyms), 8192):
            part = list(pseudonyms[start:start + 8192])
            flagged.update(r[0] for r in self._db.all(
                "SELECT DISTINCT subject_pseudonym FROM subject_flags WHERE subject_pseudonym IN "
                f"({', '.join('?' * len(part))}) AND expires_ms > ? AND withdrawn_ms IS NULL",
                (*part, now_ms)))
        return flagged

    def for_subject(self, pseudonym: bytes) -> list[SubjectFlag]:
        return [_flag(r) for r in self._db.all(
            f"SELECT {_COLUMNS} FROM subject_flags WHERE subject_pseudonym = ? "
            "ORDER BY created_ms", (pseudonym,))]

    def list(self, include_inactive: bool = False) -> list[SubjectFlag]:
        flags = [_flag(r) for r in self._db.all(
            f"SELECT {_COLUMNS} FROM subject_flags ORDER BY created_ms, flag_id")]
        now = self._clock()
        return flags if include_inactive else [f for f in flags if f.active(now)]


_COLUMNS = "flag_id, category, created_ms, expires_ms, created_by, note, withdrawn_ms"


def _flag(row: tuple[object, ...]) -> SubjectFlag:
    flag_id, category, created, expires, by, note, withdrawn = row
    return SubjectFlag(str(flag_id), FlagCategory(str(category)), int(str(created)),
                       int(str(expires)), str(by), str(note),
                       None if withdrawn is None else int(str(withdrawn)))
