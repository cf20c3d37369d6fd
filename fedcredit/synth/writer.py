"""Files: each member's raw tables and ingest config, the labels, the alliance summary.

Layout under the output folder::

    alliance.json                 the spec, rows and injected bad rows per member and table,
                                  default rates (deterministic: no timings)
    labels.parquet                synthetic ground truth no institution holds
    <member_id>/ingest.yaml       the member's mapping config for the ingest
    <member_id>/raw/<table>.parquet|csv

Tables are appended chunk by chunk (one Parquet row group or a run of CSV lines per chunk), so
memory stays bounded by the chunk, not the population.
"""

from __future__ import annotations

import queue
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from fedcredit.files import write_atomic, write_json
from fedcredit.synth.institutions import ALL_MEMBER_IDS, FileFormat, InstitutionProfile
from fedcredit.synth.spec import AllianceSpec
from node.ingest.datamodel import TABLES_BY_NAME

ALLIANCE_FILE = "alliance.json"
LABELS_FILE = "labels.parquet"
INGEST_CONFIG = "ingest.yaml"
RAW_DIR = "raw"
SNAPSHOTS_DIR = "snapshots"
IDENTIFIER_TYPE = "cn_resident_id"
CSV_TIMESTAMP = "%Y-%m-%dT%H:%M:%S"
PARQUET_COMPRESSION = "zstd"
#: The ingest's default feature window; the config names another only when the history differs.
INGEST_DEFAULT_WINDOW_MONTHS = 12
LABELS_SCHEMA = pa.schema([
    pa.field("identifier", pa.string(), nullable=False),
    pa.field("identifier_type", pa.string(), nullable=False),
    pa.field("default", pa.int64(), nullable=False),
    pa.field("lenders", pa.int64(), nullable=False),
], metadata={b"description": b"Synthetic ground truth, held by no institution: default "
                              b"within 12 months after the as-of date, and the number of "
                              b"member institutions the person borrows from."})


class OutputNotEmptyError(FileExistsError):
    """The output folder holds something and overwriting was not asked for."""


def prepare_output(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless ``overwrite``; then clear only what a run writes."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputNotEmptyError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise OutputNotEmptyError(f"{out_dir} is not empty")
        for name in (ALLIANCE_FILE, LABELS_FILE):
            (out_dir / name).unlink(missing_ok=True)
        for member in ALL_MEMBER_IDS:
            shutil.rmtree(out_dir / member / RAW_DIR, ignore_errors=True)
            (out_dir / member / INGEST_CONFIG).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def file_schema(canonical: pa.Schema, profile: InstitutionProfile, table: str) -> pa.Schema:
    """The member's file schema: its own column names; CSV timestamps as ISO text."""
    names = profile.local_names(table)
    fields = []
    for f in canonical:
        kind = pa.string() if (profile.file_format is FileFormat.CSV
                               and pa.types.is_timestamp(f.type)) else f.type
        fields.append(pa.field(names.get(f.name, f.name), kind))
    return pa.schema(fields)


class TableFile:
    """One member table on disk, appended to chunk by chunk."""

    def __init__(self, path: Path, canonical: pa.Schema, profile: InstitutionProfile,
                 table: str) -> None:
        self.path = path
        self.schema = file_schema(canonical, profile, table)
        self._csv = profile.file_format is FileFormat.CSV
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: pq.ParquetWriter | pcsv.CSVWriter
        if self._csv:
            self._writer = pcsv.CSVWriter(str(path), self.schema)
        else:
            # Dictionary-encoding a unique key only to give up on it costs time for nothing.
            key = profile.local_names(table).get(TABLES_BY_NAME[table].primary_key,
                                                 TABLES_BY_NAME[table].primary_key)
            self._writer = pq.ParquetWriter(
                str(path), self.schema, compression=PARQUET_COMPRESSION,
                use_dictionary=[n for n in self.schema.names if n != key])

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        columns = []
        for column in table.columns:
            if self._csv and pa.types.is_timestamp(column.type):
                column = pc.strftime(column, format=CSV_TIMESTAMP)
            columns.append(column)
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))

    def close(self) -> None:
        self._writer.close()


class LabelsFile:
    def __init__(self, path: Path) -> None:
        self._writer = pq.ParquetWriter(str(path), LABELS_SCHEMA)

    @staticmethod
    def table(identifiers: pa.Array, default: pa.Array, lenders: pa.Array) -> pa.Table:
        kind = pa.array([IDENTIFIER_TYPE] * len(identifiers), pa.string())
        return pa.Table.from_arrays([identifiers, kind, default, lenders], schema=LABELS_SCHEMA)

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()


class _Sink(Protocol):
    def write(self, table: pa.Table) -> None: ...


class BackgroundWriter:
    """Writes tables on one thread, in submission order, while the next chunk is generated.

    Parquet and CSV encoding release the GIL, so on two cores writing overlaps generation. The
    queue is short, which bounds the memory held by tables waiting to be written. A write
    error is raised by the next :meth:`submit` or by :meth:`close`.
    """

    def __init__(self, depth: int = 8) -> None:
        self._queue: queue.Queue[tuple[_Sink, pa.Table] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="synth-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    item[0].write(item[1])
                except BaseException as exc:  # handed to the generating thread
                    self._error = exc

    def submit(self, sink: _Sink, table: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((sink, table))

    def close(self) -> None:
        """Wait for every submitted write; raise the first error, if any."""
        self.stop()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Wait for the thread to finish what was submitted; never raises (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def _yaml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ingest_config_text(profile: InstitutionProfile, spec: AllianceSpec) -> str:
    """The member's ingest config; paths are relative to the config's folder."""
    lines = [
        f"# Ingest config of {profile.display_name} ({profile.kind.value}), written by",
        "# `fedcredit generate`. Columns map canonical names to the institution's own, only",
        "# where they differ.",
        f"member_id: {profile.member_id}",
        f"as_of: {_yaml_string(spec.as_of.isoformat())}",
        f"identifier_type: {IDENTIFIER_TYPE}",
        f"output_dir: {SNAPSHOTS_DIR}",
    ]
    if spec.months != INGEST_DEFAULT_WINDOW_MONTHS:  # the history the features may look back on
        lines.append(f"window_months: {spec.months}")
    if "transactions" in profile.tables and not profile.receives_income:
        lines.append("transactions_carry_income: false  # checkout payments, no salary")
    lines.append("tables:")
    for table in profile.tables:
        lines += [
            f"  {table}:",
            f"    path: {RAW_DIR}/{profile.file_name(table)}",
            f"    format: {profile.file_format.value}",
        ]
        names = profile.local_names(table)
        if not names:
            lines.append("    columns: {}")
            continue
        lines.append("    columns:")
        lines += [f"      {canonical}: {local}" for canonical, local in names.items()]
    return "\n".join(lines) + "\n"


def write_ingest_config(member_dir: Path, profile: InstitutionProfile,
                        spec: AllianceSpec) -> Path:
    path = member_dir / INGEST_CONFIG
    write_atomic(path, ingest_config_text(profile, spec).encode())
    return path


def write_alliance_summary(out_dir: Path, document: Mapping[str, Any]) -> None:
    write_json(out_dir / ALLIANCE_FILE, document)
