"""Validation rules: every rejected row gets exactly one reason, and every row is counted.

Row rules: first ``unparseable:<col>`` (in column order); then, column by column in the data
model's order, ``missing:<col>``, ``not_allowed:<col>``, ``negative:<col>``, ``future:<col>``
(the first failing check of the first failing column wins); then ``close_before_open`` (loans)
and ``bad_identifier`` (customers). Set rules, on the rows that passed: ``duplicate_key``
(every copy: which one is right is unknowable), ``duplicate_identifier`` (two customer records
of one person), ``orphan`` (refers to a key its parent table does not have) and
``parent_rejected`` (refers to a row that was rejected).
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from node.ingest.datamodel import ColumnType, Table
from node.ingest.sources import RAW, REASON

PSEUDONYM = "pseudonym"
_PARENT_OK = "_parent_ok"


def row_rules(table: Table, frame: DataFrame, as_of: date) -> DataFrame:
    checks: list[SparkColumn] = [F.col(REASON)]
    for column in table.columns:
        value = F.col(column.name)
        if not column.nullable:
            checks.append(F.when(value.isNull(), F.lit(f"missing:{column.name}")))
        if column.allowed is not None:
            checks.append(F.when(~value.isin(*sorted(column.allowed)),
                                 F.lit(f"not_allowed:{column.name}")))
        if column.non_negative:
            checks.append(F.when(value < 0, F.lit(f"negative:{column.name}")))
        if column.not_in_future:
            limit = (F.lit(as_of + timedelta(days=1)).cast("timestamp")
                     if column.type is ColumnType.TIMESTAMP else F.lit(as_of))
            comparison = value >= limit if column.type is ColumnType.TIMESTAMP else value > limit
            checks.append(F.when(comparison, F.lit(f"future:{column.name}")))
    if table.name == "loans":
        checks.append(F.when(F.col("close_date") < F.col("open_date"),
                             F.lit("close_before_open")))
    return frame.withColumn(REASON, F.coalesce(*checks))


def duplicate_keys(frame: DataFrame, key: str) -> DataFrame:
    """The keys held by more than one row still in (a small set: duplicates are rare).

    Rows are grouped by a 64-bit hash of the key, which is cheaper to shuffle than the key;
    only keys whose hash repeats are then compared exactly.
    """
    # Count copies among accepted rows only: a malformed twin must not take a good row down.
    accepted = frame.filter(F.col(REASON).isNull() & F.col(key).isNotNull()).select(
        key, F.xxhash64(key).alias("_h")
    )
    repeated = accepted.groupBy("_h").count().filter(F.col("count") > 1).select("_h")
    return (
        accepted.join(F.broadcast(repeated), on="_h", how="left_semi")
        .groupBy(key).count().filter(F.col("count") > 1).select(key)
    )


def duplicate_rule(frame: DataFrame, duplicated: DataFrame, key: str, reason: str
                   ) -> DataFrame:
    """Reject every copy of the ``duplicated`` keys (see :func:`duplicate_keys`)."""
    flagged = duplicated.select(key, F.lit(True).alias("_duplicated"))
    joined = frame.join(F.broadcast(flagged), on=key, how="left")
    return joined.withColumn(
        REASON,
        F.coalesce(F.col(REASON), F.when(F.col("_duplicated"), F.lit(reason))),
    ).drop("_duplicated")


def parent_keys(parent: DataFrame, parent_key: str) -> DataFrame:
    """Each key of a parent table and whether any row holding it was accepted."""
    # OK if any copy was accepted: a malformed twin must not take a good parent down.
    return parent.filter(F.col(parent_key).isNotNull()).groupBy(parent_key).agg(
        F.max(F.col(REASON).isNull().cast("int")).alias(_PARENT_OK)
    )


def reference_rule(frame: DataFrame, column: str, keys: DataFrame, parent_key: str,
                   *, broadcast: bool = False) -> DataFrame:
    """``orphan`` if the parent has no such key, ``parent_rejected`` if it rejected it.

    ``keys`` comes from :func:`parent_keys`. With ``broadcast`` the parent's keys (not its
    rows) are sent to every task, so the child table is not shuffled: right for parents up to
    a few million rows.
    """
    keys = keys.withColumnRenamed(parent_key, column)
    joined = frame.join(F.broadcast(keys) if broadcast else keys, on=column, how="left")
    return joined.withColumn(
        REASON,
        F.coalesce(
            F.col(REASON),
            F.when(F.col(_PARENT_OK).isNull(), F.lit("orphan")),
            F.when(F.col(_PARENT_OK) == 0, F.lit("parent_rejected")),
        ),
    ).drop(_PARENT_OK)


def mask_identifier(value: SparkColumn) -> SparkColumn:
    """Length and the last two characters only: enough for a data steward to find the row."""
    length = F.length(value)
    return F.when(
        length > 4, F.concat(F.repeat(F.lit("*"), length - 2), F.substring(value, -2, 2))
    ).otherwise(F.repeat(F.lit("*"), length))


def for_staging(table: Table, frame: DataFrame) -> DataFrame:
    """What may be written to the staging area: identifiers masked (idempotent), so that
    reject samples can show them and nothing raw is ever written."""
    identifying = [c.name for c in table.columns if c.identifying]
    out = frame
    for name in identifying:
        out = out.withColumn(name, mask_identifier(F.col(name)))
    if identifying and RAW in frame.columns:
        raw_fields = frame.schema[RAW].dataType.fieldNames()  # type: ignore[attr-defined]
        fields = [
            mask_identifier(F.col(f"{RAW}.`{name}`")).alias(name) if name in identifying
            else F.col(f"{RAW}.`{name}`").alias(name)
            for name in raw_fields
        ]
        out = out.withColumn(RAW, F.when(F.col(RAW).isNotNull(), F.struct(*fields)))
    return out
