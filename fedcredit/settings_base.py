"""What every service's settings share: the environment and refusal of placeholder secrets."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import SecretStr

Environment = Literal["dev", "prod"]

#: Values that must never guard anything outside dev.
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "secret", "password", "dev", "dev-token", "test", "token"}
)
MIN_SECRET_CHARS = 16


def check_secret(name: str, value: SecretStr, environment: Environment) -> None:
    """Raise ValueError if ``value`` is a placeholder or too short outside dev."""
    if environment == "dev":
        return
    raw = value.get_secret_value()
    if raw.strip().lower() in PLACEHOLDER_SECRETS or len(raw) < MIN_SECRET_CHARS:
        raise ValueError(
            f"{name} is a placeholder or shorter than {MIN_SECRET_CHARS} characters; "
            "set a real secret (placeholders are accepted only with environment=dev)"
        )


def check_transport(insecure_dev: bool, environment: Environment) -> None:
    if insecure_dev and environment != "dev":
        raise ValueError("insecure_dev (plaintext gRPC) is allowed only with environment=dev")


def reject_unknown_env(
    prefix: str, fields: Iterable[str], environ: Mapping[str, str] | None = None
) -> None:
    """A misspelled ``PREFIX_*`` variable is an error naming it, not a silently unused value."""
    known = {f"{prefix}{name}".upper() for name in fields}
    env = os.environ if environ is None else environ
    unknown = sorted(k for k in env if k.upper().startswith(prefix) and k.upper() not in known)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; see docs/operations.md")
