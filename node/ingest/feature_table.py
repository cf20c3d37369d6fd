"""The real-data path: an institution that already holds one row per subject.

Every column but the identifier and the excluded ones is a numeric feature (named
``prefix + column``); a value that is not a number is a reject (``unparseable:<column>``), an
empty cell is an absent feature. Identifiers are pseudonymized as in the raw-tables path.
Exposures are zero: a feature table says nothing about what the institution has lent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from fedcredit.errors import IngestSourceError
from mpc.pseudonym import SubjectKey
from node.ingest.datamodel import Column, ColumnType, Table
from node.ingest.pseudonyms import pseudonym_column
from node.ingest.snapshot import EXPOSURE_COLUMNS
from node.ingest.sources import NUMERIC_TYPES, RAW, REASON, read_frame
from node.ingest.validation import PSEUDONYM, for_staging

if TYPE_CHECKING:
    from node.ingest.pipeline import _Run



def run_feature_table(run: _Run, key: SubjectKey) -> tuple[DataFrame, tuple[str, ...]]:
    spec = run.config.feature_table
    assert spec is not None
    source = spec.source
    table = Table("features", spec.id_column, (
        Column(spec.id_column, ColumnType.STRING, identifying=True),
    ))
    run.reporter.step("feature table: read, validate, pseudonymize")
    frame = read_frame(run.spark, table, source, run.config)
    where = source.location(run.config.base_dir)
    by_lower = {c.lower(): c for c in frame.columns}
    id_column = by_lower.get(spec.id_column.lower())
    if id_column is None:
        raise IngestSourceError(
            f"the config names id column {spec.id_column!r}, which is not a column of {where} "
            f"(columns: {', '.join(frame.columns)})"
        )
    for name in spec.exclude:
        if name.lower() not in by_lower:
            raise IngestSourceError(f"the config excludes {name!r}, which {where} does not have")
    excluded = {id_column.lower(), *(n.lower() for n in spec.exclude)}
    feature_columns = [c for c in frame.columns if c.lower() not in excluded]
    if not feature_columns:
        raise IngestSourceError(f"{where} has no feature columns")
    names = tuple(f"{spec.prefix}{c}" for c in feature_columns)
    if len(set(names)) != len(names) or set(names) & set(EXPOSURE_COLUMNS):
        raise IngestSourceError(f"{where}: feature names clash; set a prefix")
    converted = []
    unparseable = []
    for column, name in zip(feature_columns, names, strict=True):
        raw = F.col(f"`{column}`")
        kind = frame.schema[column].dataType
        if isinstance(kind, T.StringType):
            value = F.trim(raw).try_cast("double")
        elif isinstance(kind, NUMERIC_TYPES):
            value = raw.cast("double")
        else:
            raise IngestSourceError(
                f"{where}: column {column!r} is {kind.simpleString()}, not a number"
            )
        value = F.when(~F.isnan(value) & (F.abs(value) < F.lit(1e15)), value)
        converted.append(value.alias(name))
        unparseable.append(F.when(raw.isNotNull() & value.isNull(),
                                  F.lit(f"unparseable:{column}")))
    identifier = F.trim(F.col(f"`{id_column}`").cast("string"))
    pseudonym = pseudonym_column(key, identifier, F.lit(spec.identifier_type.value))
    reason = F.coalesce(
        F.when(identifier.isNull() | (identifier == ""), F.lit(f"missing:{spec.id_column}")),
        F.when(pseudonym.isNull(), F.lit("bad_identifier")),
        *unparseable,
    )
    annotated = frame.select(
        identifier.alias(spec.id_column),
        pseudonym.alias(PSEUDONYM),
        *converted,
        reason.alias(REASON),
        F.when(reason.isNotNull(), F.struct(
            identifier.alias(spec.id_column),
            *(F.col(f"`{c}`").cast("string").alias(c) for c in feature_columns),
        )).alias(RAW),
    )
    annotated = run.checkpoint("features-rows", for_staging(table, annotated))
    staged = run.stage("features", run.dedupe(annotated, PSEUDONYM, "duplicate_identifier"))
    report = run.report("features", staged, where, source.resolved_format)
    if report.rows_in == 0:
        raise IngestSourceError(f"{where} holds no rows")
    if report.accepted == 0:
        raise IngestSourceError("no row passed validation; see the reject report")
    accepted = staged.filter(F.col(REASON).isNull())
    return accepted.select(
        F.col(PSEUDONYM),
        *(F.lit(0).cast("bigint").alias(c) for c in EXPOSURE_COLUMNS),
        *(F.col(f"`{n}`").cast("double").alias(n) for n in names),
    ), names
