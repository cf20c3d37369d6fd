"""Coordinator settings: environment variables prefixed ``FEDCREDIT_COORDINATOR_``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fedcredit.protocol import Purpose
from fedcredit.settings_base import (
    Environment,
    check_secret,
    check_transport,
    reject_unknown_env,
)


class CoordinatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEDCREDIT_COORDINATOR_", extra="forbid")

    environment: Environment = "prod"
    #: Plaintext gRPC on loopback. Required (and only allowed) until mutual TLS lands.
    insecure_dev: bool = False
    bind: str = "127.0.0.1:50051"
    data_dir: Path = Path("coordinator-data")
    #: Shared secret members present to register, heartbeat and ask for plans (pre-mTLS).
    registration_token: SecretStr = SecretStr("")
    heartbeat_interval_ms: int = Field(default=2_000, ge=100)
    #: A member whose last heartbeat is older than this is STALE and left out of plans.
    stale_after_ms: int = Field(default=6_000, ge=200)
    probe_interval_ms: int = Field(default=2_000, ge=100)
    #: Minimum plan lifetime; raised to cover the route's call budgets, up to the cap below.
    plan_ttl_ms: int = Field(default=20_000, ge=1_000)
    #: No plan lives longer than this (it bounds the window in which a plan can be replayed).
    max_plan_ttl_ms: int = Field(default=60_000, ge=1_000)
    hop_timeout_ms: int = Field(default=2_000, ge=100)
    #: Fewer answering members than this fails the evaluation. 2 keeps any single member's
    #: contribution hidden inside a sum (see docs/security.md).
    min_answered: int = Field(default=2, ge=1)
    allowed_purposes: frozenset[Purpose] = frozenset(Purpose)
    #: If set, the coordinator writes {"grpc_port"} here once it serves (launchers).
    ready_file: Path | None = None

    @model_validator(mode="after")
    def _check_secrets_and_transport(self) -> CoordinatorSettings:
        reject_unknown_env("FEDCREDIT_COORDINATOR_", type(self).model_fields)
        check_secret("registration_token", self.registration_token, self.environment)
        check_transport(self.insecure_dev, self.environment)
        if self.stale_after_ms <= self.heartbeat_interval_ms:
            raise ValueError("stale_after_ms must exceed heartbeat_interval_ms")
        if self.max_plan_ttl_ms < self.plan_ttl_ms:
            raise ValueError("max_plan_ttl_ms must be at least plan_ttl_ms")
        if self.min_answered < 2 and self.environment != "dev":
            raise ValueError(
                "min_answered below 2 lets a requester decrypt one member's exact share; "
                "allowed only with environment=dev"
            )
        return self

    @property
    def registry_path(self) -> Path:
        return self.data_dir / "registry.sqlite3"

    @property
    def signing_key_path(self) -> Path:
        return self.data_dir / "plan-signing-key.pem"

    @property
    def verify_key_path(self) -> Path:
        """Published verification key; nodes are configured with a copy of this file."""
        return self.data_dir / "plan-verify-key.pem"
