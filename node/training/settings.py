"""Settings of a training party process: environment variables prefixed
``FEDCREDIT_TRAINING_``."""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fedcredit.settings_base import Environment, reject_unknown_env


class TrainingPartySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEDCREDIT_TRAINING_", extra="forbid")

    environment: Environment = "prod"
    #: Dev only: every message this party receives is appended to
    #: ``<transcript_dir>/<party>.bin`` (fedcredit/transcript.py), to audit what it learns.
    transcript_dir: Path | None = None

    @model_validator(mode="after")
    def _transcript_only_in_dev(self) -> TrainingPartySettings:
        reject_unknown_env("FEDCREDIT_TRAINING_", type(self).model_fields)
        if self.transcript_dir is not None and self.environment != "dev":
            raise ValueError("transcript_dir records every message: allowed only in dev")
        return self
