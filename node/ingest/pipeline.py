"""``fedcredit node ingest``: raw tables → validated, pseudonymized, versioned feature snapshot.

Steps: open every source (schemas only, so a missing file or column fails before any work);
read and convert each table; apply the row rules; pseudonymize the customers and checkpoint
them (Parquet in a private work directory removed afterwards, identifiers masked); apply the
set rules with small key sets computed once; count every row as accepted or rejected by one
reason; compute features from the accepted rows; write the snapshot (Parquet, then the
manifest last) and the reject report. Nothing is dropped silently:
``rows_in == accepted + Σ rejected`` for every table.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyspark
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from fedcredit.errors import IngestSourceError
from fedcredit.files import write_atomic
from mpc.pseudonym import SubjectKey
from node.ingest.config import IngestConfig, SourceConfig
from node.ingest.datamodel import CUSTOMERS, TABLES
from node.ingest.features import subject_features
from node.ingest.pseudonyms import pseudonym_column
from node.ingest.snapshot import (
    DATA_DIR_NAME,
    REJECTS_NAME,
    FeatureStats,
    SnapshotManifest,
    SourceFingerprint,
    file_sha256,
    finish_snapshot,
    new_snapshot_id,
)
from node.ingest.sources import RAW, REASON, SourceTable, read_source
from node.ingest.spark import interruptible, stage_progress
from node.ingest.validation import (
    PSEUDONYM,
    duplicate_keys,
    duplicate_rule,
    for_staging,
    parent_keys,
    reference_rule,
    row_rules,
)

PIPELINE_VERSION = "1"
#: Parents up to this many rows have their keys broadcast for the reference check (~100 MB).
BROADCAST_PARENT_ROWS = 5_000_000


class Reporter(Protocol):
    def step(self, description: str) -> None: ...

    def tasks(self, done: int, total: int) -> None: ...


class _Silent:
    def step(self, description: str) -> None:
        pass

    def tasks(self, done: int, total: int) -> None:
        pass


@dataclass(frozen=True)
class TableReport:
    table: str
    location: str
    format: str
    rows_in: int
    accepted: int
    rejected: Mapping[str, int]
    samples: Mapping[str, list[dict[str, str | None]]] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


@dataclass(frozen=True)
class IngestResult:
    manifest: SnapshotManifest
    snapshot_dir: Path
    tables: tuple[TableReport, ...]
    seconds: float

    @property
    def reject_report(self) -> Path:
        return self.snapshot_dir / REJECTS_NAME


@dataclass
class _Run:
    spark: SparkSession
    config: IngestConfig
    work_dir: Path
    reporter: Reporter
    reject_samples: int
    staged: dict[str, DataFrame] = field(default_factory=dict)
    parent_keys: dict[str, DataFrame] = field(default_factory=dict)
    reports: list[TableReport] = field(default_factory=list)
    present: dict[str, frozenset[str]] = field(default_factory=dict)

    def checkpoint(self, name: str, frame: DataFrame) -> DataFrame:
        """Write ``frame`` once and read it back: the set rules branch off the row-checked
        rows several times, and without this each branch would recompute them (pseudonyms
        included) from the source."""
        path = self.work_dir / name
        frame.write.mode("error").parquet(str(path))
        return self.spark.read.parquet(str(path))

    def small(self, frame: DataFrame) -> DataFrame:
        """Compute a key set once and keep it (executor memory, spilling to disk): every
        later step that needs it reuses it instead of recomputing it."""
        return frame.localCheckpoint(eager=True)

    def keys_of(self, table: str, key: str) -> DataFrame:
        cached = self.parent_keys.get(table)
        if cached is None:
            cached = self.parent_keys[table] = self.small(parent_keys(self.staged[table], key))
        return cached

    def dedupe(self, frame: DataFrame, key: str, reason: str) -> DataFrame:
        return duplicate_rule(frame, self.small(duplicate_keys(frame, key)), key, reason)

    def stage(self, name: str, frame: DataFrame) -> DataFrame:
        """The fully annotated rows of a table: the source (or, for customers, the masked
        checkpoint) with the row rules and the small, already computed key sets joined in —
        cheap to recompute for each consumer (counts, samples, features, child tables)."""
        self.staged[name] = frame
        return frame

    def report(self, name: str, staged: DataFrame, location: str, fmt: str) -> TableReport:
        counts = {
            row[REASON]: int(row["count"])
            for row in staged.groupBy(REASON).count().collect()
        }
        accepted = counts.pop(None, 0)
        samples: dict[str, list[dict[str, str | None]]] = {}
        if self.reject_samples and counts:
            # One job for every reason's samples, whatever the number of reasons.
            order = Window.partitionBy(REASON).orderBy(*staged.columns[:1])
            picked = (
                staged.filter(F.col(REASON).isNotNull())
                .withColumn("_n", F.row_number().over(order))
                .filter(F.col("_n") <= self.reject_samples)
                .drop("_n")
                .collect()
            )
            for row in picked:
                samples.setdefault(row[REASON], []).append(_sample(row))
        report = TableReport(name, location, fmt, accepted + sum(counts.values()), accepted,
                             dict(sorted(counts.items())), samples)
        self.reports.append(report)
        return report


def _sample(row: Any) -> dict[str, str | None]:
    """A reject as the source had it where it did not convert, else as converted."""
    data = row.asDict(recursive=True)
    raw = data.pop(RAW, None)
    data.pop(REASON, None)
    data.pop(PSEUDONYM, None)
    if raw:
        data.update(raw)
    return {k: (None if v is None else str(v)) for k, v in data.items()}


def _customers(run: _Run, source: SourceTable, key: SubjectKey) -> DataFrame:
    frame = row_rules(CUSTOMERS, source.frame, run.config.as_of)
    id_type = F.coalesce(F.col("identifier_type"), F.lit(run.config.identifier_type.value))
    frame = frame.withColumn("identifier_type", id_type).withColumn(
        PSEUDONYM, pseudonym_column(key, F.col("identifier"), id_type)
    )
    frame = frame.withColumn(
        REASON,
        F.coalesce(F.col(REASON), F.when(F.col(PSEUDONYM).isNull(), F.lit("bad_identifier"))),
    )
    # Mask before the checkpoint: no raw identifier is ever written, not even to staging.
    frame = run.checkpoint("customers-rows", for_staging(CUSTOMERS, frame))
    frame = run.dedupe(frame, "customer_id", "duplicate_key")
    frame = run.dedupe(frame, PSEUDONYM, "duplicate_identifier")
    staged = run.stage("customers", frame)
    report = run.report("customers", staged, source.location, source.format)
    if report.rows_in == 0:
        raise IngestSourceError(f"customers: {source.location} holds no rows")
    return staged


def _child(run: _Run, source: SourceTable) -> None:
    table = source.table
    # No checkpoint here: for a wide table (transactions) writing the checked rows costs more
    # than the few passes that recompute them (measured at 25M rows: write 90 s, pass 28 s).
    frame = row_rules(table, source.frame, run.config.as_of)
    frame = run.dedupe(frame, table.primary_key, "duplicate_key")
    rows_by_table = {r.table: r.rows_in for r in run.reports}
    for column in table.columns:
        if column.references is not None:
            parent = column.references.table
            key = column.references.column
            frame = reference_rule(
                frame, column.name, run.keys_of(parent, key), key,
                broadcast=rows_by_table[parent] <= BROADCAST_PARENT_ROWS,
            )
    staged = run.stage(table.name, frame)
    run.report(table.name, staged, source.location, source.format)


def fingerprint(source: SourceConfig, config: IngestConfig, report: TableReport
                ) -> SourceFingerprint:
    fmt = source.resolved_format
    if fmt == "jdbc":
        return SourceFingerprint(report.table, report.location, fmt, None, None, None,
                                 report.rows_in, report.rejected_total)
    path = source.resolved_path(config.base_dir)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    if len(files) == 1:
        digest = file_sha256(files[0])
    else:
        combined = hashlib.sha256()
        for part in files:
            combined.update(f"{part.relative_to(path)}:{file_sha256(part)}\n".encode())
        digest = combined.hexdigest()
    return SourceFingerprint(
        report.table, report.location, fmt,
        sum(p.stat().st_size for p in files),
        max(int(p.stat().st_mtime * 1000) for p in files),
        digest, report.rows_in, report.rejected_total,
    )


def feature_statistics(spark: SparkSession, path: Path, names: tuple[str, ...]
                       ) -> tuple[int, tuple[FeatureStats, ...]]:
    frame = spark.read.parquet(str(path))
    aggregates = [F.count(F.lit(1)).alias("_rows")]
    for name in names:
        column = F.col(name)
        aggregates += [
            F.count(column).alias(f"{name}__count"),
            F.avg(column).alias(f"{name}__mean"),
            F.stddev_pop(column).alias(f"{name}__std"),
            F.min(column).alias(f"{name}__min"),
            F.max(column).alias(f"{name}__max"),
        ]
    row = frame.agg(*aggregates).collect()[0].asDict()
    rows = int(row["_rows"])
    stats = tuple(
        FeatureStats(
            name=name,
            count=int(row[f"{name}__count"]),
            nulls=rows - int(row[f"{name}__count"]),
            mean=row[f"{name}__mean"],
            std=row[f"{name}__std"],
            min=row[f"{name}__min"],
            max=row[f"{name}__max"],
        )
        for name in names
    )
    return rows, stats


def write_reject_report(path: Path, config: IngestConfig, reports: tuple[TableReport, ...]
                        ) -> None:
    """The reject report holds (masked) source rows: the institution's eyes only (0600)."""
    doc = {
        "member_id": config.member_id,
        "as_of": config.as_of.isoformat(),
        "tables": {
            r.table: {
                "location": r.location,
                "rows_in": r.rows_in,
                "accepted": r.accepted,
                "rejected": dict(r.rejected),
                "samples": {k: list(v) for k, v in r.samples.items()},
            }
            for r in reports
        },
    }
    write_atomic(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), mode=0o600)


def run_ingest(
    spark: SparkSession,
    config: IngestConfig,
    key: SubjectKey,
    *,
    reject_samples: int = 5,
    reporter: Reporter | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> IngestResult:
    """Run one ingest; on any error no manifest is written, so no store will load it."""
    from node.ingest.feature_table import run_feature_table

    reporter = reporter or _Silent()
    started = time.monotonic()
    created = now()
    root = config.snapshot_root
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_work_dirs(root, time.time())
    snapshot_id = new_snapshot_id(created)
    snapshot_dir = root / snapshot_id
    work_dir = root / f".work-{snapshot_id}"
    work_dir.mkdir(mode=0o700)
    os.chmod(work_dir, 0o700)
    run = _Run(spark, config, work_dir, reporter, reject_samples)
    try:
        with interruptible(spark), stage_progress(spark, reporter.tasks):
            if config.mode == "feature_table":
                frame, names = run_feature_table(run, key)
            else:
                frame, names = _raw_tables(run, key)
            reporter.step("writing the snapshot")
            data_path = snapshot_dir / DATA_DIR_NAME
            frame.write.mode("error").parquet(str(data_path))
            reporter.step("feature statistics")
            subjects, stats = feature_statistics(spark, data_path, names)
        reports = tuple(run.reports)
        write_reject_report(snapshot_dir / REJECTS_NAME, config, reports)
        sources = tuple(
            fingerprint(_source_of(config, r.table), config, r) for r in reports
        )
        seconds = time.monotonic() - started
        manifest = finish_snapshot(
            snapshot_dir,
            subjects=subjects,
            stats=stats,
            member_id=config.member_id,
            as_of=config.as_of.isoformat(),
            mode=config.mode,
            sources=sources,
            pipeline={
                "version": PIPELINE_VERSION,
                "spark_version": pyspark.__version__,
                "spark_master": spark.sparkContext.master,
                "window_months": config.window_months,
                "seconds": round(seconds, 3),
            },
            created=created,
            rejected={r.table: dict(r.rejected) for r in reports},
        )
        return IngestResult(manifest, snapshot_dir, reports, seconds)
    except BaseException:
        if run.reports:
            # Keep the reject report where the steward will look, without a manifest.
            snapshot_dir.mkdir(parents=True, exist_ok=True)
            write_reject_report(snapshot_dir / REJECTS_NAME, config, tuple(run.reports))
        raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


#: A work directory this old belongs to an ingest that was killed (SIGKILL, power loss).
STALE_WORK_DIR_S = 6 * 3600


def remove_stale_work_dirs(root: Path, now_s: float) -> None:
    for path in root.glob(".work-*"):
        try:
            if now_s - path.stat().st_mtime > STALE_WORK_DIR_S:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _source_of(config: IngestConfig, table: str) -> SourceConfig:
    if config.feature_table is not None:
        return config.feature_table.source
    return config.tables[table]


def _raw_tables(run: _Run, key: SubjectKey) -> tuple[DataFrame, tuple[str, ...]]:
    run.reporter.step("checking sources")
    # Open every source first (lazily: schemas only), so a missing file or column anywhere is
    # reported before any real work.
    sources = [read_source(run.spark, t, run.config) for t in TABLES if t.name in run.config.tables]
    run.present = {s.table.name: s.present for s in sources}
    run.reporter.step("customers: validate, pseudonymize")
    _customers(run, sources[0], key)
    for source in sources[1:]:
        run.reporter.step(f"{source.table.name}: validate")
        _child(run, source)
    accepted = {
        name: staged.filter(F.col(REASON).isNull()).drop(REASON, RAW)
        for name, staged in run.staged.items()
    }
    if run.reports[0].accepted == 0:
        raise IngestSourceError("no customer passed validation; see the reject report")
    run.reporter.step("computing features")
    return subject_features(
        accepted, run.present, run.config.as_of, run.config.window_months,
        run.config.transactions_carry_income
    )
