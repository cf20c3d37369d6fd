"""Generate a synthetic alliance: people in chunks, each member's tables, files as we go.

Deterministic for a spec and chunk size: the people of chunk ``k`` come from a random stream
seeded by ``(seed, k)``, their bad rows from another, so the same spec writes byte-identical
files and the clean rows do not depend on the dirty rate.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa

from fedcredit.synth.dates import HistoryWindow
from fedcredit.synth.dirt import Defect, DirtyKeys, dirty_rows, draw_dirt, interleave
from fedcredit.synth.identifiers import IdentifierSpace, fixed_width_strings
from fedcredit.synth.institutions import InstitutionProfile, alliance_members
from fedcredit.synth.population import draw_defaults, draw_people
from fedcredit.synth.relationships import draw_relationships
from fedcredit.synth.spec import AllianceSpec
from fedcredit.synth.summary import (
    GenerationSummary,
    LenderStratum,
    MemberSummary,
    peak_rss_bytes,
)
from fedcredit.synth.tables import MemberKeys, canonical_schema, member_tables
from fedcredit.synth.writer import (
    LABELS_FILE,
    RAW_DIR,
    BackgroundWriter,
    LabelsFile,
    TableFile,
    prepare_output,
    write_alliance_summary,
    write_ingest_config,
)

#: People per chunk: bounds memory (about 1M transaction rows per chunk at the defaults).
DEFAULT_CHUNK_SUBJECTS = 50_000
#: Called after each chunk with (subjects written, subjects in all).
ProgressCallback = Callable[[int, int], None]
_SETUP, _PEOPLE, _DIRT = 0, 1, 2


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


class _Tally:
    """Counts as the chunks go by; frozen into the summary at the end."""

    def __init__(self, members: tuple[InstitutionProfile, ...]) -> None:
        self.clean = [dict.fromkeys(m.tables, 0) for m in members]
        self.rows = [dict.fromkeys(m.tables, 0) for m in members]
        self.dirty: list[dict[str, dict[str, int]]] = [defaultdict(dict) for _ in members]
        self.subjects: dict[int, int] = defaultdict(int)
        self.defaults: dict[int, int] = defaultdict(int)

    def add_people(self, lenders: np.ndarray, defaults: np.ndarray) -> None:
        for k, n in zip(*np.unique(lenders, return_counts=True), strict=True):
            self.subjects[int(k)] += int(n)
        for k, n in zip(*np.unique(lenders[defaults == 1], return_counts=True), strict=True):
            self.defaults[int(k)] += int(n)

    def add_rows(self, member: int, table: str, clean: int, bad: int,
                 defects: Mapping[Defect, int]) -> None:
        self.clean[member][table] += clean
        self.rows[member][table] += clean + bad
        reasons = self.dirty[member][table]
        for defect, n in defects.items():
            reasons[defect.reason] = reasons.get(defect.reason, 0) + n * defect.rows_each

    def strata(self) -> tuple[LenderStratum, ...]:
        return tuple(LenderStratum(k, self.subjects[k], self.defaults[k])
                     for k in sorted(self.subjects))


def generate_alliance(spec: AllianceSpec, out_dir: Path, *,
                      progress: ProgressCallback | None = None,
                      chunk_subjects: int = DEFAULT_CHUNK_SUBJECTS,
                      overwrite: bool = False) -> GenerationSummary:
    """Write the alliance described by ``spec`` under ``out_dir`` (see :mod:`.writer`).

    Refuses a non-empty ``out_dir`` (:class:`~fedcredit.synth.writer.OutputNotEmptyError`)
    unless ``overwrite``, which replaces only what a run writes.
    """
    if chunk_subjects < 1:
        raise ValueError("chunk_subjects must be at least 1")
    started = time.perf_counter()
    prepare_output(out_dir, overwrite)
    members = alliance_members(spec.institutions)
    window = HistoryWindow.ending(spec.as_of, spec.months)
    setup = _rng(spec.seed, _SETUP)
    space = IdentifierSpace.from_rng(setup)
    keys = [MemberKeys.from_rng(m, setup) for m in members]
    supplies = [DirtyKeys(k, space, spec.subjects) for k in keys]
    schemas = [{t: canonical_schema(m, t) for t in m.tables} for m in members]
    files = [{t: TableFile(out_dir / m.member_id / RAW_DIR / m.file_name(t), schemas[j][t], m, t)
              for t in m.tables} for j, m in enumerate(members)]
    labels = LabelsFile(out_dir / LABELS_FILE)
    tally = _Tally(members)
    writer = BackgroundWriter()
    try:
        for chunk, start in enumerate(range(0, spec.subjects, chunk_subjects)):
            count = min(chunk_subjects, spec.subjects - start)
            rng, dirt_rng = _rng(spec.seed, _PEOPLE, chunk), _rng(spec.seed, _DIRT, chunk)
            people = draw_people(rng, start, count, window, space)
            relationships = draw_relationships(rng, people, members)
            lenders = relationships.lenders
            defaults = draw_defaults(rng, people, lenders)
            writer.submit(labels, LabelsFile.table(fixed_width_strings(people.identifier),
                                                   pa.array(defaults), pa.array(lenders)))
            tally.add_people(lenders, defaults)
            for j, member in enumerate(members):
                tables = member_tables(rng, people, relationships, j, member, keys[j],
                                       tally.clean[j], window, spec.spending_per_month)
                for name, clean in tables.items():
                    defects = draw_dirt(dirt_rng, name, member.columns(name), clean.num_rows,
                                        spec.dirty_rate)
                    bad = dirty_rows(dirt_rng, name, clean, defects, supplies[j], window)
                    writer.submit(files[j][name], interleave(dirt_rng, clean, bad))
                    tally.add_rows(j, name, clean.num_rows, bad.num_rows, defects)
            if progress is not None:
                progress(start + count, spec.subjects)
        writer.close()
    finally:
        writer.stop()
        labels.close()
        for member_files in files:
            for table_file in member_files.values():
                table_file.close()

    for member in members:
        write_ingest_config(out_dir / member.member_id, member, spec)
    summary = GenerationSummary(
        spec=spec, out_dir=out_dir, chunk_subjects=chunk_subjects,
        members=tuple(
            MemberSummary(m.member_id, m.display_name, m.kind.value, m.file_format.value,
                          rows=dict(tally.rows[j]),
                          dirty={t: dict(sorted(tally.dirty[j][t].items()))
                                 for t in m.tables if tally.dirty[j].get(t)})
            for j, m in enumerate(members)),
        strata=tally.strata(),
        wall_seconds=time.perf_counter() - started,
        peak_rss_bytes=peak_rss_bytes(),
    )
    write_alliance_summary(out_dir, summary.to_document())
    return summary
