"""Versioned feature snapshots: the contract between an ingest and the online store.

A snapshot is a directory::

    <snapshot_id>/
        subjects/part-*.parquet   one row per subject pseudonym (Spark or pyarrow writes it)
        manifest.json             written last, atomically: no manifest, no snapshot
        rejects.json              the reject report (masked rows; stays at the institution)

``subjects`` holds ``pseudonym`` (32-byte binary), the exposure columns of
:data:`EXPOSURE_COLUMNS` (non-negative int64) and one nullable float64 column per feature
(null = absent: the model imputes it at its training mean). The manifest records row counts,
per-feature statistics, a hash of the schema, fingerprints of the sources and a SHA-256 of every
data file, so a store can refuse a snapshot that is incomplete, altered or not what it claims.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fedcredit.errors import SnapshotError
from fedcredit.files import write_json

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DATA_DIR_NAME = "subjects"
REJECTS_NAME = "rejects.json"
PSEUDONYM_COLUMN = "pseudonym"
PSEUDONYM_BYTES = 32

#: What a member holds about a subject, summed across the alliance (money in cents).
EXPOSURE_COLUMNS: tuple[str, ...] = (
    "outstanding_debt_cents",
    "active_loans",
    "open_credit_lines",
    "accounts_30dpd",
    "accounts_90dpd",
    "inquiries_90d",
)


@dataclass(frozen=True)
class SubjectRecord:
    """What this member knows about one subject: exposures and model features."""

    exposures: Mapping[str, int]
    features: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureStats:
    name: str
    count: int  # non-null values
    nulls: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None


@dataclass(frozen=True)
class SourceFingerprint:
    table: str
    location: str  # a path or a JDBC URL without credentials
    format: str
    bytes: int | None
    modified_unix_ms: int | None
    sha256: str | None  # of the file contents; None for a database source
    rows_in: int
    rows_rejected: int


@dataclass(frozen=True)
class DataFile:
    path: str  # relative to the snapshot directory
    bytes: int
    sha256: str


@dataclass(frozen=True)
class SnapshotManifest:
    snapshot_id: str
    member_id: str
    created_unix_ms: int
    as_of: str  # ISO date the features describe
    mode: str  # "raw_tables", "feature_table" or "feature_file"
    subjects: int
    exposures: tuple[str, ...]
    features: tuple[FeatureStats, ...]
    schema_sha256: str
    sources: tuple[SourceFingerprint, ...]
    files: tuple[DataFile, ...]
    rejected: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    pipeline: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SnapshotManifest:
        try:
            if int(doc["format_version"]) != FORMAT_VERSION:
                raise SnapshotError(f"unsupported snapshot format {doc['format_version']}")
            return cls(
                snapshot_id=str(doc["snapshot_id"]),
                member_id=str(doc["member_id"]),
                created_unix_ms=int(doc["created_unix_ms"]),
                as_of=str(doc["as_of"]),
                mode=str(doc["mode"]),
                subjects=int(doc["subjects"]),
                exposures=tuple(str(e) for e in doc["exposures"]),
                features=tuple(FeatureStats(**f) for f in doc["features"]),
                schema_sha256=str(doc["schema_sha256"]),
                sources=tuple(SourceFingerprint(**s) for s in doc["sources"]),
                files=tuple(DataFile(**f) for f in doc["files"]),
                rejected={str(t): {str(r): int(n) for r, n in v.items()}
                          for t, v in doc.get("rejected", {}).items()},
                pipeline=dict(doc.get("pipeline", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"snapshot manifest is malformed ({exc})") from None


def new_snapshot_id(created: datetime) -> str:
    """Sortable by creation time, unique without coordination: ``20261122T120000Z-3fa2c1``."""
    return created.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def subjects_schema(features: Iterable[str]) -> pa.Schema:
    return pa.schema(
        [pa.field(PSEUDONYM_COLUMN, pa.binary(), nullable=False)]
        + [pa.field(c, pa.int64(), nullable=False) for c in EXPOSURE_COLUMNS]
        + [pa.field(f, pa.float64(), nullable=True) for f in features]
    )


def schema_sha256(schema: pa.Schema) -> str:
    """Hash of the column names and types, in order (nullability aside: writers differ)."""
    text = "\n".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def data_files(snapshot_dir: Path) -> tuple[DataFile, ...]:
    parts = sorted((snapshot_dir / DATA_DIR_NAME).glob("*.parquet"))
    return tuple(
        DataFile(str(p.relative_to(snapshot_dir)), p.stat().st_size, file_sha256(p)) for p in parts
    )


def feature_stats(table: pa.Table, features: Iterable[str]) -> tuple[FeatureStats, ...]:
    import pyarrow.compute as pc

    out = []
    for name in features:
        column = table.column(name)
        valid = pc.drop_null(column)
        count = len(valid)
        if count:
            mean = pc.mean(valid).as_py()
            std = pc.stddev(valid, ddof=0).as_py()
            lo, hi = pc.min(valid).as_py(), pc.max(valid).as_py()
        else:
            mean = std = lo = hi = None
        out.append(FeatureStats(name, count, len(column) - count, mean, std, lo, hi))
    return tuple(out)


def read_manifest(snapshot_dir: Path) -> SnapshotManifest:
    path = snapshot_dir / MANIFEST_NAME
    if not path.is_file():
        raise SnapshotError(f"{snapshot_dir.name} has no manifest: the snapshot is incomplete")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        raise SnapshotError(f"{snapshot_dir.name}: the manifest cannot be read") from None
    return SnapshotManifest.from_dict(doc)


def verify_snapshot(snapshot_dir: Path) -> SnapshotManifest:
    """The manifest, once every data file matches it; :class:`SnapshotError` otherwise."""
    manifest = read_manifest(snapshot_dir)
    if manifest.snapshot_id != snapshot_dir.name:
        raise SnapshotError(
            f"{snapshot_dir.name}: the manifest names snapshot {manifest.snapshot_id}"
        )
    if tuple(manifest.exposures) != EXPOSURE_COLUMNS:
        raise SnapshotError(f"{manifest.snapshot_id}: unexpected exposure columns")
    listed = {f.path: f for f in manifest.files}
    present = {str(p.relative_to(snapshot_dir))
               for p in (snapshot_dir / DATA_DIR_NAME).glob("*.parquet")}
    if set(listed) != present:
        raise SnapshotError(f"{manifest.snapshot_id}: data files differ from the manifest")
    for entry in manifest.files:
        path = snapshot_dir / entry.path
        if path.stat().st_size != entry.bytes or file_sha256(path) != entry.sha256:
            raise SnapshotError(f"{manifest.snapshot_id}: {entry.path} does not match its hash")
    schema = pq.read_schema(snapshot_dir / manifest.files[0].path) if manifest.files else None
    expected = subjects_schema(manifest.feature_names)
    if schema is not None and schema_sha256(schema) != manifest.schema_sha256:
        raise SnapshotError(f"{manifest.snapshot_id}: data schema differs from the manifest")
    if manifest.schema_sha256 != schema_sha256(expected):
        raise SnapshotError(f"{manifest.snapshot_id}: schema is not the subjects schema")
    return manifest


def iter_records(
    snapshot_dir: Path, manifest: SnapshotManifest, batch_rows: int = 50_000
) -> Iterator[pa.RecordBatch]:
    """The subjects of a verified snapshot, in Arrow batches (bounded memory)."""
    for entry in manifest.files:
        # No pre-buffering: pyarrow would otherwise keep every chunk read until the file closes.
        parquet = pq.ParquetFile(snapshot_dir / entry.path, pre_buffer=False)
        yield from parquet.iter_batches(batch_size=batch_rows)


def records_of(batch: pa.RecordBatch, features: tuple[str, ...]) -> Iterator[
    tuple[bytes, SubjectRecord]
]:
    """Python records of one batch: null features are absent, never zero."""
    columns = batch.to_pydict()
    pseudonyms = columns[PSEUDONYM_COLUMN]
    for i, pseudonym in enumerate(pseudonyms):
        exposures = {c: int(columns[c][i]) for c in EXPOSURE_COLUMNS}
        values = {}
        for name in features:
            value = columns[name][i]
            if value is not None and math.isfinite(value):
                values[name] = float(value)
        yield bytes(pseudonym), SubjectRecord(exposures, values)


def write_snapshot(
    root: Path,
    records: Iterable[tuple[bytes, SubjectRecord]],
    *,
    member_id: str,
    features: tuple[str, ...],
    as_of: str,
    mode: str,
    sources: tuple[SourceFingerprint, ...] = (),
    pipeline: Mapping[str, Any] | None = None,
    created: datetime | None = None,
) -> SnapshotManifest:
    """Write a snapshot from Python records (the no-Spark path: small files, tests)."""
    created = created or datetime.now(UTC)
    snapshot_id = new_snapshot_id(created)
    directory = root / snapshot_id
    (directory / DATA_DIR_NAME).mkdir(parents=True)
    rows = list(records)
    schema = subjects_schema(features)
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for pseudonym, record in rows:
        if len(pseudonym) != PSEUDONYM_BYTES:
            raise SnapshotError("a pseudonym must be 32 bytes")
        columns[PSEUDONYM_COLUMN].append(pseudonym)
        for c in EXPOSURE_COLUMNS:
            columns[c].append(int(record.exposures[c]))
        for f in features:
            columns[f].append(record.features.get(f))
    table = pa.Table.from_pydict(columns, schema=schema)
    pq.write_table(table, directory / DATA_DIR_NAME / "part-00000.parquet")
    return finish_snapshot(
        directory, subjects=table.num_rows, stats=feature_stats(table, features),
        member_id=member_id, as_of=as_of, mode=mode, sources=sources, pipeline=pipeline or {},
        created=created,
    )


def finish_snapshot(
    directory: Path,
    *,
    subjects: int,
    stats: tuple[FeatureStats, ...],
    member_id: str,
    as_of: str,
    mode: str,
    sources: tuple[SourceFingerprint, ...],
    pipeline: Mapping[str, Any],
    created: datetime,
    rejected: Mapping[str, Mapping[str, int]] | None = None,
) -> SnapshotManifest:
    """Hash the data files, compute statistics and write the manifest (last, atomically)."""
    manifest = SnapshotManifest(
        snapshot_id=directory.name,
        member_id=member_id,
        created_unix_ms=int(created.timestamp() * 1000),
        as_of=as_of,
        mode=mode,
        subjects=subjects,
        exposures=EXPOSURE_COLUMNS,
        features=stats,
        schema_sha256=schema_sha256(subjects_schema(s.name for s in stats)),
        sources=sources,
        files=data_files(directory),
        rejected=rejected or {},
        pipeline=dict(pipeline),
    )
    write_json(directory / MANIFEST_NAME, manifest.to_dict())
    return manifest
