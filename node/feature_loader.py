"""``fedcredit node load-features FILE``: a CSV or Parquet file into the feature store.

Expected columns: ``subject_id`` and ``id_type`` (see :class:`mpc.pseudonym.IdentifierType`),
the exposure columns of :data:`node.ingest.snapshot.EXPOSURE_COLUMNS` (non-negative integers;
money in cents), and any number of numeric model feature columns (empty = absent). Identifiers
are normalized, validated and pseudonymized here; raw identifiers are not stored.

Validation is all-or-nothing: a file with any bad row loads nothing and the error lists the
first problems by row number and column (never by value). A valid file becomes a snapshot
(mode ``feature_file``) in the node's snapshot directory — the same contract the Spark ingest
writes — which the store then verifies, loads and activates like any other.

This is the no-Spark path for small files: the rows are held in memory while they are checked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fedcredit.clock import Clock, system_clock
from fedcredit.errors import FeatureFileError, MalformedIdentifierError
from mpc.contribution import MAX_EXPOSURE
from mpc.pseudonym import SubjectKey, pseudonymize
from node.ingest.snapshot import (
    EXPOSURE_COLUMNS,
    PSEUDONYM_COLUMN,
    SourceFingerprint,
    SubjectRecord,
    file_sha256,
    write_snapshot,
)
from node.store import FeatureStore, SnapshotInfo

ID_COLUMNS = ("subject_id", "id_type")
MAX_ABS_FEATURE = 1e15
MAX_REPORTED_PROBLEMS = 10


@dataclass(frozen=True)
class Problem:
    row: int  # 1-based data row (header excluded)
    column: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.reason}"


def read_table(path: Path) -> pa.Table:
    if not path.exists():
        raise FeatureFileError(f"{path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path)
        if suffix == ".csv":
            return pa_csv.read_csv(
                path,
                convert_options=pa_csv.ConvertOptions(
                    column_types={"subject_id": pa.string(), "id_type": pa.string()}
                ),
            )
    except (pa.ArrowInvalid, OSError) as exc:
        # Arrow's messages quote the offending row: keep only its shape, never its values.
        shape = re.search(r"Expected \d+ columns, got \d+", str(exc))
        reason = shape.group(0) if shape else "malformed file"
        raise FeatureFileError(f"{path.name} cannot be read ({reason})") from None
    raise FeatureFileError(f"{path.name}: expected a .csv or .parquet file")


@dataclass(frozen=True)
class LoadSummary:
    rows: int
    source: str
    source_sha256: str
    snapshot: SnapshotInfo


def feature_columns(table: pa.Table) -> tuple[str, ...]:
    """The model feature columns: every column that is not an identifier or an exposure."""
    missing = [c for c in (*ID_COLUMNS, *EXPOSURE_COLUMNS) if c not in table.column_names]
    if missing:
        raise FeatureFileError("missing required columns: " + ", ".join(missing))
    if PSEUDONYM_COLUMN in table.column_names:
        raise FeatureFileError(f"column name {PSEUDONYM_COLUMN} is reserved")
    return tuple(
        c for c in table.column_names if c not in ID_COLUMNS and c not in EXPOSURE_COLUMNS
    )


def parse_rows(
    table: pa.Table, key: SubjectKey
) -> list[tuple[bytes, SubjectRecord]]:
    feature_names = feature_columns(table)
    for name in (*EXPOSURE_COLUMNS, *feature_names):
        kind = table.schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
            what = "exposure" if name in EXPOSURE_COLUMNS else "feature"
            raise FeatureFileError(f"{what} column {name} is not numeric")
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    problems: list[Problem] = []
    seen: dict[bytes, int] = {}
    out: list[tuple[bytes, SubjectRecord]] = []
    for i in range(table.num_rows):
        row = i + 1
        try:
            pseudonym = pseudonymize(
                key, columns["id_type"][i] or "", columns["subject_id"][i] or ""
            )
        except MalformedIdentifierError as exc:
            problems.append(Problem(row, "subject_id", exc.detail))
            continue
        if pseudonym.value in seen:
            problems.append(Problem(row, "subject_id", f"duplicate of row {seen[pseudonym.value]}"))
            continue
        seen[pseudonym.value] = row
        exposures: dict[str, int] = {}
        for name in EXPOSURE_COLUMNS:
            value = columns[name][i]
            if value is None:
                exposures[name] = 0
            elif not math.isfinite(value) or not float(value).is_integer() or value < 0:
                problems.append(Problem(row, name, "must be a non-negative integer"))
            elif value >= MAX_EXPOSURE:
                problems.append(Problem(row, name, "must be below 2**53"))
            else:
                exposures[name] = int(value)
        features: dict[str, float] = {}
        for name in feature_names:
            value = columns[name][i]
            if value is None:
                continue
            if not math.isfinite(float(value)) or abs(value) > MAX_ABS_FEATURE:
                problems.append(Problem(row, name, "must be finite and at most 1e15 in size"))
            else:
                features[name] = float(value)
        if len(exposures) == len(EXPOSURE_COLUMNS):
            out.append((pseudonym.value, SubjectRecord(exposures=exposures, features=features)))
    if problems:
        shown = "; ".join(str(p) for p in problems[:MAX_REPORTED_PROBLEMS])
        more = len(problems) - MAX_REPORTED_PROBLEMS
        raise FeatureFileError(
            f"{len(problems)} problem(s), nothing loaded: {shown}"
            + (f"; and {more} more" if more > 0 else "")
        )
    return out


def load_features(
    path: Path,
    store: FeatureStore,
    key: SubjectKey,
    *,
    member_id: str,
    snapshot_root: Path,
    clock: Clock = system_clock,
) -> LoadSummary:
    """Validate the file, write it as a snapshot under ``snapshot_root``, load and activate
    it; nothing is written if the file has a bad row."""
    table = read_table(path)
    features = feature_columns(table)
    rows = parse_rows(table, key)
    digest = file_sha256(path)
    stat = path.stat()
    source = SourceFingerprint(
        table="features", location=str(path), format=path.suffix.lower().lstrip("."),
        bytes=stat.st_size, modified_unix_ms=int(stat.st_mtime * 1000), sha256=digest,
        rows_in=table.num_rows, rows_rejected=0,
    )
    created = datetime.fromtimestamp(clock() / 1000, UTC)
    manifest = write_snapshot(
        snapshot_root, rows, member_id=member_id, features=features,
        as_of=created.date().isoformat(), mode="feature_file", sources=(source,),
        pipeline={"tool": "fedcredit node load-features"}, created=created,
    )
    info = store.load_snapshot(snapshot_root / manifest.snapshot_id)
    return LoadSummary(rows=len(rows), source=path.name, source_sha256=digest, snapshot=info)
