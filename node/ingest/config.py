"""An institution's ingest config (YAML): where its tables are and how its columns are named.

The config describes the institution's data and is kept with it; secrets and deployment
choices (the subject key, the Spark master, the store) are settings
(:class:`node.ingest.settings.IngestSettings`), never in this file. Relative paths are relative
to the config file's directory.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fedcredit.errors import ConfigurationError
from mpc.pseudonym import IdentifierType
from node.ingest.datamodel import TABLES_BY_NAME

SourceFormat = Literal["parquet", "csv", "jdbc"]


class SourceConfig(BaseModel):
    """One raw table: a file (Parquet or CSV, a file or a directory of parts) or a JDBC table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = None
    format: SourceFormat | None = None
    #: canonical column name → the institution's column name (only where they differ).
    columns: dict[str, str] = Field(default_factory=dict)
    #: Extra reader options, e.g. ``{sep: ";"}`` for CSV or ``{fetchsize: "10000"}`` for JDBC.
    options: dict[str, str] = Field(default_factory=dict)
    jdbc_url: str | None = None
    jdbc_table: str | None = None
    jdbc_user: str | None = None
    #: Name of the environment variable holding the JDBC password (never the password itself).
    jdbc_password_env: str | None = None
    #: The JDBC driver class, e.g. ``org.postgresql.Driver`` (its jar: FEDCREDIT_INGEST_SPARK_JARS).
    jdbc_driver: str | None = None

    @model_validator(mode="after")
    def _one_location(self) -> SourceConfig:
        if self.resolved_format == "jdbc":
            if not (self.jdbc_url and self.jdbc_table):
                raise ValueError("a jdbc source needs jdbc_url and jdbc_table")
        elif not self.path:
            raise ValueError("a file source needs a path")
        return self

    @property
    def resolved_format(self) -> SourceFormat:
        if self.format:
            return self.format
        if self.jdbc_url:
            return "jdbc"
        suffix = Path(self.path or "").suffix.lower()
        return "csv" if suffix == ".csv" else "parquet"

    def location(self, base_dir: Path) -> str:
        """Where the data is, for messages and fingerprints (no credentials)."""
        if self.resolved_format == "jdbc":
            return f"{(self.jdbc_url or '').split('?')[0]} table {self.jdbc_table}"
        return str(self.resolved_path(base_dir))

    def resolved_path(self, base_dir: Path) -> Path:
        path = Path(self.path or "")
        return path if path.is_absolute() else base_dir / path


class FeatureTableConfig(BaseModel):
    """The real-data path: the institution already holds one row per subject."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: SourceConfig
    id_column: str
    identifier_type: IdentifierType = IdentifierType.OPAQUE
    #: Columns that are not features (e.g. a label the institution keeps to itself).
    exclude: list[str] = Field(default_factory=list)
    #: Feature names become ``prefix + column`` (e.g. ``host_``).
    prefix: str = ""


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    member_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    #: The date the features describe; later dates in the data are rejects. Default: today.
    as_of: date = Field(default_factory=lambda: datetime.now(UTC).date())
    #: Identifier type of customers.identifier when the table has no identifier_type column.
    identifier_type: IdentifierType = IdentifierType.CN_RESIDENT_ID
    #: Where snapshots are written (one directory each).
    output_dir: str = "snapshots"
    #: Months of history behind the transaction and repayment features.
    window_months: int = Field(default=12, ge=1, le=60)
    #: Whether the institution's transactions carry the customer's income (salary credits to
    #: an account it holds). A merchant's or lender's do not: their income features are then
    #: absent rather than a made-up zero.
    transactions_carry_income: bool = True
    tables: dict[str, SourceConfig] = Field(default_factory=dict)
    feature_table: FeatureTableConfig | None = None
    #: Directory of the config file; set by :func:`load_ingest_config`.
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _check_tables(self) -> IngestConfig:
        if bool(self.tables) == (self.feature_table is not None):
            raise ValueError("give either tables (raw tables) or feature_table, not both")
        for name, source in self.tables.items():
            if name not in TABLES_BY_NAME:
                raise ValueError(
                    f"unknown table {name!r}; the data model has {', '.join(TABLES_BY_NAME)}"
                )
            known = TABLES_BY_NAME[name].column_names
            for canonical in source.columns:
                if canonical not in known:
                    raise ValueError(
                        f"tables.{name}.columns maps {canonical!r}, which is not a column of "
                        f"{name} (columns: {', '.join(known)})"
                    )
        if self.tables and "customers" not in self.tables:
            raise ValueError("tables must include customers")
        if "repayments" in self.tables and "loans" not in self.tables:
            raise ValueError("repayments need the loans table they refer to")
        if self.feature_table is not None and self.feature_table.source.columns:
            raise ValueError("feature_table.source.columns is not used; name columns directly "
                             "(id_column, exclude)")
        return self

    @property
    def mode(self) -> str:
        return "raw_tables" if self.tables else "feature_table"

    @property
    def snapshot_root(self) -> Path:
        path = Path(self.output_dir)
        return path if path.is_absolute() else self.base_dir / path


def load_ingest_config(path: Path) -> IngestConfig:
    """Parse and validate a config file; every problem is a :class:`ConfigurationError`."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read ingest config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path.name} is not valid YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigurationError(f"{path.name} must be a mapping")
    doc.setdefault("base_dir", str(path.resolve().parent))
    try:
        return IngestConfig.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"{path.name}: {problems}") from None
