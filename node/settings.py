"""Node settings: environment variables prefixed ``FEDCREDIT_NODE_``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fedcredit.protocol import Purpose
from fedcredit.settings_base import (
    Environment,
    check_key_bytes,
    reject_unknown_env,
)
from fedcredit.tls import TlsFiles
from mpc.paillier import DEFAULT_KEY_BITS
from mpc.pseudonym import SubjectKey


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEDCREDIT_NODE_", extra="forbid")

    environment: Environment = "prod"
    member_id: str
    display_name: str = ""
    data_dir: Path = Path("node-data")
    grpc_bind: str = "127.0.0.1:50061"
    #: Address other members dial; defaults to the bound gRPC address.
    advertise_endpoint: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8081, ge=0, le=65535)
    coordinator_address: str = "127.0.0.1:50051"
    #: The coordinator's Enrollment service, where ``node join`` files the join request.
    coordinator_enroll_address: str = "127.0.0.1:50052"
    #: The alliance CA certificate, obtained out of band; ``node join`` trusts only it and
    #: copies it into the identity directory.
    ca_file: Path | None = None
    #: How the alliance admins reach this institution (shown with its join request).
    contact: str = ""
    #: Renew this member's certificate (new key) when less than this remains.
    renew_before_days: int = Field(default=30, ge=1, le=365)
    #: Alliance subject key, hex. Members only; the coordinator never has it.
    subject_key: SecretStr
    #: Directory of this member's model slices, one ``<version>.json`` each.
    model_dir: Path = Path("models")
    #: The model version this node asks for when it is the requester. Empty: whichever model
    #: the coordinator's registry has active for this member (an admin promotes it); a name
    #: pins that version, e.g. slices installed by hand such as the demo's seed ``v1``.
    model_version: str = Field(default="", pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$")
    paillier_key_bits: int = DEFAULT_KEY_BITS
    #: Precomputed Paillier obfuscators kept per requester key (memory only, each used once;
    #: 512 bytes each at 2048 bits); 0 computes every one during the evaluation.
    obfuscator_pool_size: int = Field(default=64, ge=0, le=100_000)
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Threads that run the lender API's evaluations and key checks (an evaluation holds one
    #: while its route runs); requests beyond them wait their turn.
    api_workers: int = Field(default=40, ge=1, le=1_000)
    #: Subjects one portfolio re-scoring job may hold (``POST /v1/portfolio-evaluations``).
    portfolio_max_subjects: int = Field(default=1_000_000, ge=1, le=10_000_000)
    #: Body limit of that route alone (a million identifiers are about 25 MB of JSON).
    portfolio_max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    #: Chunks of 4,096 subjects a portfolio job keeps on the route at once: the members work
    #: on different chunks at the same time.
    portfolio_chunks_in_flight: int = Field(default=3, ge=1, le=16)
    #: Subjects per chunk (one CKKS ciphertext holds 4,096; smaller chunks only for tests).
    portfolio_chunk_subjects: int = Field(default=4096, ge=1, le=4096)
    coordinator_timeout_ms: int = Field(default=3_000, ge=100)
    #: The least time between two batches of this member's ledger entries (contribution
    #: digests, completions) sent to the coordinator: the longest an entry waits in the
    #: outbox when the coordinator is up. Longer: fewer, larger batches.
    audit_flush_interval_ms: int = Field(default=200, ge=10, le=60_000)
    #: When an outbox entry (and a kept receipt) reaches the disk. "batch": with the flusher's
    #: next round, about a flush interval later (while the coordinator does not answer: about a
    #: second, or the coordinator timeout if it hangs) — a crash of the node's process loses
    #: nothing, a crash of its machine at most the entries of that last stretch. "entry": before
    #: the hop answers (one fsync per entry: more CPU per evaluation).
    audit_outbox_sync: Literal["batch", "entry"] = "batch"
    #: How often, at most, to ask the coordinator whether the product catalog changed (checked
    #: with each heartbeat; an unchanged catalog costs one small round trip).
    product_refresh_ms: int = Field(default=10_000, ge=100)
    allowed_purposes: frozenset[Purpose] = frozenset(Purpose)
    #: If set, the node writes {"grpc_port", "http_port"} here once it serves (launchers).
    ready_file: Path | None = None
    #: The feature store: ``sqlite:///abs/path``, ``sqlite:rel/path``, a bare path, or
    #: ``postgresql://user:password@host:port/db[?schema=name]``. Default: the SQLite file
    #: :attr:`feature_store_path`. Secret: it may carry a password.
    feature_store_url: SecretStr | None = None
    #: This lender's decision policy (YAML: admission rules, grade floors, limit multiples,
    #: installment share; scoring/lending_policy.py). Default: the built-in policy.
    lending_policy: Path | None = None
    #: Take part in the federated training sessions the coordinator starts (features from the
    #: active snapshot; see docs/training.md). Off unless the member's operator turns it on.
    training_enabled: bool = False
    #: The guest's repayment outcomes (CSV or Parquet: ``identifier_type``, ``identifier`` and
    #: :attr:`training_label_column`, 1 = default). Only a lender with labels can be the guest.
    training_labels: Path | None = None
    training_label_column: str = "default"
    #: Where ``load-features`` writes its snapshots, and where rollback finds pruned ones.
    #: Default: ``<data_dir>/snapshots``.
    snapshot_dir: Path | None = None

    @field_validator("subject_key")
    @classmethod
    def _subject_key_is_hex(cls, value: SecretStr) -> SecretStr:
        SubjectKey.from_hex(value.get_secret_value())
        return value

    #: Dev only: append every gRPC message this process receives and sends to this file, to
    #: audit what the party learns (see fedcredit/transcript.py). Refused outside dev.
    transcript_file: Path | None = None

    @model_validator(mode="after")
    def _check_secrets_and_transport(self) -> NodeSettings:
        reject_unknown_env("FEDCREDIT_NODE_", type(self).model_fields)
        if self.transcript_file is not None and self.environment != "dev":
            raise ValueError("transcript_file records every message: allowed only in dev")
        check_key_bytes(
            "subject_key",
            SubjectKey.from_hex(self.subject_key.get_secret_value()).secret,
            self.environment,
        )
        return self

    @property
    def feature_store_path(self) -> Path:
        """The default (SQLite) feature store file."""
        return self.data_dir / "features.sqlite3"

    @property
    def feature_store_location(self) -> str:
        """The URL :func:`node.store.open_store` takes (may hold a password: never log it)."""
        if self.feature_store_url is not None:
            return self.feature_store_url.get_secret_value()
        return str(self.feature_store_path)

    @property
    def portfolio_dir(self) -> Path:
        """Portfolio jobs: their table and one directory of files per job."""
        return self.data_dir / "portfolio"

    @property
    def snapshot_root(self) -> Path:
        return self.snapshot_dir if self.snapshot_dir is not None else self.data_dir / "snapshots"

    @property
    def evaluation_store_path(self) -> Path:
        return self.data_dir / "evaluations.sqlite3"

    @property
    def audit_store_path(self) -> Path:
        """This member's ledger receipts and its outbox of entries not yet recorded."""
        return self.data_dir / "audit.sqlite3"

    @property
    def training_dir(self) -> Path:
        """Per-session training reports (progress, private metrics, test split)."""
        return self.data_dir / "training"

    @property
    def blacklist_store_path(self) -> Path:
        """This member's private flags on subjects: ``fedcredit node flags``."""
        return self.data_dir / "flags.sqlite3"

    @property
    def api_key_store_path(self) -> Path:
        """The lender applications' API keys (hashed, scoped): ``fedcredit node api-keys``."""
        return self.data_dir / "api-keys.sqlite3"

    @property
    def identity_files(self) -> TlsFiles:
        """This member's alliance identity: key, certificate, CA (written by ``node join``)."""
        return TlsFiles(self.data_dir / "identity")

    @property
    def paillier_key_path(self) -> Path:
        return self.data_dir / "paillier-key.json"
