"""Coordinator settings: environment variables prefixed ``FEDCREDIT_COORDINATOR_``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coordinator.policy import AlliancePolicy
from fedcredit.protocol import Purpose
from fedcredit.settings_base import Environment, reject_unknown_env


class CoordinatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEDCREDIT_COORDINATOR_", extra="forbid")

    environment: Environment = "prod"
    #: The Coordinator service (mutual TLS: members only).
    bind: str = "127.0.0.1:50051"
    #: The Enrollment service (server-authenticated TLS: applicants file join requests here).
    enroll_bind: str = "127.0.0.1:50052"
    #: The admin API (HTTPS with the coordinator's certificate; admins, regulators, judges).
    admin_bind: str = "127.0.0.1:8443"
    #: Request bodies above this are refused while being read (before authentication).
    admin_max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Holds the CA, the coordinator identity and the database (``fedcredit alliance init``).
    data_dir: Path = Path("coordinator-data")
    #: Validity of the coordinator's own certificate when it renews it.
    coordinator_certificate_days: int = Field(default=365, ge=2, le=825)
    heartbeat_interval_ms: int = Field(default=2_000, ge=100)
    #: A member whose last heartbeat is older than this is STALE and left out of plans.
    stale_after_ms: int = Field(default=6_000, ge=200)
    probe_interval_ms: int = Field(default=2_000, ge=100)
    # The policy fields below seed the alliance policy on the first start; afterwards the
    # policy lives in the database and changes through the admin API (versioned, audited).
    #: Minimum plan lifetime; raised to cover the route's call budgets, up to the cap below.
    plan_ttl_ms: int = Field(default=20_000, ge=1_000)
    #: No plan lives longer than this (it bounds the window in which a plan can be replayed).
    max_plan_ttl_ms: int = Field(default=60_000, ge=1_000)
    hop_timeout_ms: int = Field(default=2_000, ge=100)
    #: Lifetime of a portfolio re-scoring plan: a job must finish within it.
    portfolio_plan_ttl_ms: int = Field(default=3_600_000, ge=60_000, le=86_400_000)
    #: "chain", "tree" or "auto" (TREE from ``tree_min_members`` members on a route).
    route_mode: Literal["chain", "tree", "auto"] = "auto"
    tree_min_members: int = Field(default=4, ge=2, le=1024)
    tree_fanout: int = Field(default=8, ge=2, le=64)
    #: Fewer answering members than this fails the evaluation. 2 keeps any single member's
    #: contribution hidden inside a sum (see docs/security.md).
    min_answered: int = Field(default=2, ge=1)
    allowed_purposes: frozenset[Purpose] = frozenset(Purpose)
    #: Member approvals a join request needs besides an admin's (0: the admin decides alone).
    admission_quorum: int = Field(default=0, ge=0, le=64)
    member_certificate_days: int = Field(default=90, ge=1, le=825)
    #: How long a suspension or revocation waits for every online member to confirm it
    #: enforces the new directory before the admin call returns.
    propagation_timeout_ms: int = Field(default=5_000, ge=0, le=60_000)
    #: If set, the coordinator writes {"grpc_port"} here once it serves (launchers).
    ready_file: Path | None = None

    #: Dev only: append every gRPC message this process receives and sends to this file, to
    #: audit what the party learns (see fedcredit/transcript.py). Refused outside dev.
    transcript_file: Path | None = None

    @model_validator(mode="after")
    def _check_secrets_and_transport(self) -> CoordinatorSettings:
        reject_unknown_env("FEDCREDIT_COORDINATOR_", type(self).model_fields)
        if self.transcript_file is not None and self.environment != "dev":
            raise ValueError("transcript_file records every message: allowed only in dev")
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
    def database_path(self) -> Path:
        """Registry, admission, policy and the audit ledger: one file, one transaction each."""
        return self.data_dir / "coordinator.sqlite3"

    @property
    def ca_certificate_path(self) -> Path:
        """The alliance CA certificate to hand to members (public)."""
        return self.data_dir / "ca.crt"

    def initial_policy(self) -> AlliancePolicy:
        return AlliancePolicy(
            route_mode=self.route_mode,
            tree_min_members=self.tree_min_members,
            tree_fanout=self.tree_fanout,
            min_answered=self.min_answered,
            hop_timeout_ms=self.hop_timeout_ms,
            plan_ttl_ms=self.plan_ttl_ms,
            max_plan_ttl_ms=self.max_plan_ttl_ms,
            portfolio_plan_ttl_ms=self.portfolio_plan_ttl_ms,
            allowed_purposes=self.allowed_purposes,
            admission_quorum=self.admission_quorum,
            member_certificate_days=self.member_certificate_days,
        )
