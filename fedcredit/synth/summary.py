"""What a generation run wrote: rows, injected bad rows, default rates; and what it cost."""

from __future__ import annotations

import resource
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedcredit.synth.spec import AllianceSpec

FORMAT_VERSION = 1


@dataclass(frozen=True)
class LenderStratum:
    """People borrowing from ``lenders`` member institutions, and how many of them default."""

    lenders: int
    subjects: int
    defaults: int

    @property
    def default_rate(self) -> float:
        return self.defaults / self.subjects if self.subjects else 0.0


@dataclass(frozen=True)
class MemberSummary:
    member_id: str
    display_name: str
    kind: str
    file_format: str
    #: Rows written per table, bad rows included.
    rows: Mapping[str, int]
    #: Bad rows injected, per table and reject reason (see :mod:`fedcredit.synth.dirt`): the
    #: reject report an ingest of these files must produce.
    dirty: Mapping[str, Mapping[str, int]]

    def dirty_rows(self, table: str) -> int:
        return sum(self.dirty.get(table, {}).values())

    def clean_rows(self, table: str) -> int:
        return self.rows[table] - self.dirty_rows(table)


@dataclass(frozen=True)
class GenerationSummary:
    spec: AllianceSpec
    out_dir: Path
    chunk_subjects: int
    members: tuple[MemberSummary, ...]
    strata: tuple[LenderStratum, ...]
    wall_seconds: float
    #: Peak resident set size of this process so far (not only of the generation).
    peak_rss_bytes: int

    @property
    def subjects(self) -> int:
        return sum(s.subjects for s in self.strata)

    @property
    def defaults(self) -> int:
        return sum(s.defaults for s in self.strata)

    @property
    def default_rate(self) -> float:
        return self.defaults / self.subjects if self.subjects else 0.0

    @property
    def dirty_total(self) -> int:
        return sum(m.dirty_rows(t) for m in self.members for t in m.rows)

    def dirty_by_kind(self) -> dict[str, int]:
        """Bad rows per kind of reason, all members and tables (``negative:balance`` is
        ``negative``)."""
        kinds: dict[str, int] = {}
        for member in self.members:
            for reasons in member.dirty.values():
                for reason, rows in reasons.items():
                    kind = reason.split(":")[0]
                    kinds[kind] = kinds.get(kind, 0) + rows
        return dict(sorted(kinds.items()))

    def member(self, member_id: str) -> MemberSummary:
        for summary in self.members:
            if summary.member_id == member_id:
                return summary
        raise KeyError(member_id)

    def to_document(self) -> dict[str, Any]:
        """``alliance.json``: deterministic for a spec (timings stay out)."""
        return {
            "format_version": FORMAT_VERSION,
            "spec": self.spec.to_dict(),
            "chunk_subjects": self.chunk_subjects,
            "labels": {
                "file": "labels.parquet",
                "note": "Synthetic ground truth that no institution holds: default within 12 "
                        "months after as_of, and lenders, the number of member institutions "
                        "the person has a loan or credit line at. For measuring models only.",
                "subjects": self.subjects,
                "default_rate": round(self.default_rate, 6),
                "by_lenders": [
                    {"lenders": s.lenders, "subjects": s.subjects, "defaults": s.defaults,
                     "default_rate": round(s.default_rate, 6)} for s in self.strata
                ],
            },
            "members": [
                {"member_id": m.member_id, "display_name": m.display_name, "kind": m.kind,
                 "format": m.file_format, "rows": dict(m.rows),
                 "dirty": {t: dict(k) for t, k in m.dirty.items()}}
                for m in self.members
            ],
        }


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
