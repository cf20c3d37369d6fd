"""Reading an institution's raw tables into the canonical data model.

Each source is read as it is (Parquet types kept; CSV as text), its columns are renamed by the
config's mapping, and each value is converted to the canonical type. A value that cannot be
converted makes its row a reject (``unparseable:<column>``) rather than a null the features would
silently treat as absent. A whole column that can never hold the canonical type (a boolean
where a date belongs), a missing required column, a mapping that names a column the source
does not have, a missing file and an empty required table are errors: nothing is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from py4j.protocol import Py4JJavaError
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.utils import AnalysisException

from fedcredit.errors import IngestSourceError
from node.ingest.config import IngestConfig, SourceConfig
from node.ingest.datamodel import Column, ColumnType, Table

REASON = "_reason"
RAW = "_raw"

NUMERIC_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType,
            T.DecimalType)
_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_ISO_TIMESTAMP = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)


@dataclass(frozen=True)
class SourceTable:
    """A raw table in canonical columns, with the row-level reason to reject each row."""

    table: Table
    frame: DataFrame  # canonical columns + REASON (null = fine so far) + RAW (rejects only)
    location: str
    format: str
    #: Canonical columns the source has (the others are nulls: features needing them absent).
    present: frozenset[str]


def read_frame(spark: SparkSession, table: Table, source: SourceConfig,
               config: IngestConfig) -> DataFrame:
    fmt = source.resolved_format
    where = source.location(config.base_dir)
    try:
        if fmt == "jdbc":
            reader = spark.read.format("jdbc").option("url", source.jdbc_url).option(
                "dbtable", source.jdbc_table
            )
            if source.jdbc_user:
                reader = reader.option("user", source.jdbc_user)
            if source.jdbc_driver:
                reader = reader.option("driver", source.jdbc_driver)
            if source.jdbc_password_env:
                password = os.environ.get(source.jdbc_password_env)
                if password is None:
                    raise IngestSourceError(
                        f"{table.name}: environment variable {source.jdbc_password_env} "
                        "(jdbc_password_env) is not set"
                    )
                reader = reader.option("password", password)
            return reader.options(**source.options).load()
        path = source.resolved_path(config.base_dir)
        if not path.exists():
            raise IngestSourceError(f"{table.name}: {where} does not exist")
        if path.is_file() and path.stat().st_size == 0:
            raise IngestSourceError(f"{table.name}: {where} is empty")
        if fmt == "csv":
            options = {"header": "true", "mode": "PERMISSIVE", "inferSchema": "false"}
            options.update(source.options)
            return spark.read.options(**options).csv(str(path))
        return spark.read.options(**source.options).parquet(str(path))
    except AnalysisException as exc:
        raise IngestSourceError(
            f"{table.name}: {where} cannot be read as {fmt} ({exc.getErrorClass() or 'error'})"
        ) from None
    except Py4JJavaError as exc:  # e.g. JDBC: no driver, refused connection, bad credentials
        cause = str(exc.java_exception.toString()).splitlines()[0]
        raise IngestSourceError(f"{table.name}: {where} cannot be read ({cause})") from None


def _convert(column: Column, raw: SparkColumn, source_type: T.DataType, where: str
             ) -> SparkColumn:
    """``raw`` as the canonical type; null where a non-null value does not convert."""
    text = isinstance(source_type, T.StringType)
    kind = column.type
    if isinstance(source_type, (T.BooleanType, T.BinaryType, T.ArrayType, T.MapType,
                                T.StructType)):
        raise IngestSourceError(
            f"{where} is {source_type.simpleString()} in the source; expected {kind.value}"
        )
    if kind is ColumnType.STRING:
        value = F.trim(raw.cast("string"))
        value = F.when(value == "", None).otherwise(value)
        if column.allowed is not None:
            value = F.lower(value)
        return value
    if kind is ColumnType.INTEGER:
        if text:
            number = F.trim(raw).try_cast("double")
            return F.when(number == F.floor(number), number.try_cast("bigint"))
        if isinstance(source_type, _INTEGRAL):
            return raw.cast("bigint")
        if isinstance(source_type, NUMERIC_TYPES):
            return F.when(raw == F.floor(raw), raw.try_cast("bigint"))
    if kind is ColumnType.AMOUNT and (text or isinstance(source_type, NUMERIC_TYPES)):
        value = F.trim(raw).try_cast("double") if text else raw.cast("double")
        return F.when(~F.isnan(value) & (F.abs(value) < F.lit(1e15)), value)
    if kind is ColumnType.DATE:
        if text:  # ISO 8601 calendar dates only: Spark would take "2026-10" as 2026-10-01
            value = F.trim(raw)
            return F.when(value.rlike(_ISO_DATE), value.try_cast("date"))
        if isinstance(source_type, (T.DateType, T.TimestampType, T.TimestampNTZType)):
            return F.to_date(raw)
    if kind is ColumnType.TIMESTAMP:
        if text:
            value = F.trim(raw)
            return F.when(value.rlike(_ISO_TIMESTAMP), value.try_cast("timestamp"))
        if isinstance(source_type, (T.DateType, T.TimestampType, T.TimestampNTZType)):
            return raw.cast("timestamp")
    raise IngestSourceError(
        f"{where} is {source_type.simpleString()} in the source; expected {kind.value}"
    )


def canonical(table: Table, frame: DataFrame, source: SourceConfig, where: str) -> DataFrame:
    """Rename, convert and flag unparseable values; add absent optional columns as nulls."""
    present = {name.lower(): name for name in frame.columns}
    converted: list[SparkColumn] = []
    raws: list[SparkColumn] = []
    unparseable: list[SparkColumn] = []
    for column in table.columns:
        mapped = source.columns.get(column.name)
        source_name = present.get((mapped or column.name).lower())
        label = f"{table.name}.{column.name}"
        if source_name is None:
            if mapped is not None:
                raise IngestSourceError(
                    f"the config maps {label} to {mapped!r}, which is not a column of {where} "
                    f"(columns: {', '.join(frame.columns)})"
                )
            if column.required:
                raise IngestSourceError(f"{where} has no column for required {label}")
            converted.append(F.lit(None).cast(_spark_type(column.type)).alias(column.name))
            raws.append(F.lit(None).cast("string").alias(column.name))
            continue
        raw = F.col(f"`{source_name}`")
        source_type = frame.schema[source_name].dataType
        value = _convert(column, raw, source_type, f"{label} ({source_name!r} in {where})")
        converted.append(value.alias(column.name))
        raws.append(raw.cast("string").alias(column.name))
        # A blank cell is a null, not a value that failed to convert (only text can be blank:
        # formatting every number as text just to ask would be most of the ingest's work).
        given = raw.isNotNull()
        if isinstance(source_type, T.StringType):
            given = given & (F.trim(raw) != "")
        unparseable.append(F.when(given & value.isNull(), F.lit(f"unparseable:{column.name}")))
    reason = F.coalesce(*unparseable) if unparseable else F.lit(None).cast("string")
    return frame.select(
        *converted,
        reason.alias(REASON),
        F.when(reason.isNotNull(), F.struct(*raws)).alias(RAW),
    )


def _spark_type(kind: ColumnType) -> str:
    return {
        ColumnType.STRING: "string",
        ColumnType.INTEGER: "bigint",
        ColumnType.AMOUNT: "double",
        ColumnType.DATE: "date",
        ColumnType.TIMESTAMP: "timestamp",
    }[kind]


def present_columns(table: Table, frame: DataFrame, source: SourceConfig) -> frozenset[str]:
    available = {name.lower() for name in frame.columns}
    return frozenset(
        c for c in table.column_names if source.columns.get(c, c).lower() in available
    )


def read_source(spark: SparkSession, table: Table, config: IngestConfig) -> SourceTable:
    source = config.tables[table.name]
    where = source.location(config.base_dir)
    frame = read_frame(spark, table, source, config)
    return SourceTable(table, canonical(table, frame, source, where), where,
                       source.resolved_format, present_columns(table, frame, source))
