"""Ingest settings: environment variables prefixed ``FEDCREDIT_INGEST_``.

The institution's config file says what its data is; these say how this run is deployed: the
subject key (a secret), which Spark to run on, and which feature store to load into.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fedcredit.settings_base import Environment, check_key_bytes, reject_unknown_env
from mpc.pseudonym import SubjectKey


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEDCREDIT_INGEST_", extra="forbid")

    environment: Environment = "prod"
    #: Alliance subject key, hex (the same as the node's FEDCREDIT_NODE_SUBJECT_KEY).
    subject_key: SecretStr | None = None
    #: Or a file holding it (hex), readable by the ingest's user only.
    subject_key_file: Path | None = None
    #: ``local[N]``/``local[*]`` on this machine, or ``spark://host:7077`` for a cluster.
    spark_master: str = "local[*]"
    spark_driver_memory: str = "4g"
    spark_executor_memory: str = "4g"
    #: Shuffle partitions; about 2-4 per core is right for one machine.
    spark_shuffle_partitions: int = Field(default=8, ge=1)
    #: Comma-separated local jar files for Spark, e.g. the JDBC driver of a database source.
    spark_jars: str = ""
    #: Where to load the snapshot once written (``sqlite:///…`` or ``postgresql://…``); unset =
    #: write the snapshot only.
    store_url: SecretStr | None = None
    #: Sample rows kept per reject reason in the reject report.
    reject_samples: int = Field(default=5, ge=0, le=100)

    @field_validator("subject_key")
    @classmethod
    def _hex(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            SubjectKey.from_hex(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _check(self) -> IngestSettings:
        reject_unknown_env("FEDCREDIT_INGEST_", type(self).model_fields)
        if self.subject_key is not None and self.subject_key_file is not None:
            raise ValueError("set subject_key or subject_key_file, not both")
        return self

    def load_subject_key(self) -> SubjectKey:
        if self.subject_key is not None:
            key = SubjectKey.from_hex(self.subject_key.get_secret_value())
        elif self.subject_key_file is not None:
            try:
                key = SubjectKey.from_hex(self.subject_key_file.read_text())
            except OSError as exc:
                raise ValueError(f"cannot read subject_key_file: {exc.strerror}") from None
        else:
            raise ValueError(
                "no subject key: set FEDCREDIT_INGEST_SUBJECT_KEY or "
                "FEDCREDIT_INGEST_SUBJECT_KEY_FILE"
            )
        check_key_bytes("subject_key", key.secret, self.environment)
        return key
