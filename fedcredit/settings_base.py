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
#: A secret containing any of these is a placeholder, e.g. the dev defaults in
#: docker-compose.yml ("...-override-me").
PLACEHOLDER_MARKERS = ("override-me", "change-me", "changeme", "placeholder", "example")
MIN_SECRET_CHARS = 16
#: A random 32-byte key has ~31 distinct byte values; a typed-in pattern has few.
MIN_DISTINCT_KEY_BYTES = 16


def check_secret(name: str, value: SecretStr, environment: Environment) -> None:
    """Raise ValueError if ``value`` is a placeholder or too short outside dev."""
    if environment == "dev":
        return
    raw = value.get_secret_value()
    lowered = raw.strip().lower()
    if (
        lowered in PLACEHOLDER_SECRETS
        or any(marker in lowered for marker in PLACEHOLDER_MARKERS)
        or len(raw) < MIN_SECRET_CHARS
    ):
        raise ValueError(
            f"{name} is a placeholder or shorter than {MIN_SECRET_CHARS} characters; "
            "set a real secret (placeholders are accepted only with environment=dev)"
        )


def check_key_bytes(name: str, key: bytes, environment: Environment) -> None:
    """Refuse patterned (typed-in, documented) keys outside dev: real keys come from a CSPRNG."""
    if environment != "dev" and len(set(key)) < MIN_DISTINCT_KEY_BYTES:
        raise ValueError(
            f"{name} looks hand-made, not random; generate one (`fedcredit alliance subject-key`)"
        )


def reject_unknown_env(
    prefix: str, fields: Iterable[str], environ: Mapping[str, str] | None = None
) -> None:
    """A misspelled ``PREFIX_*`` variable is an error naming it, not a silently unused value."""
    known = {f"{prefix}{name}".upper() for name in fields}
    env = os.environ if environ is None else environ
    unknown = sorted(k for k in env if k.upper().startswith(prefix) and k.upper() not in known)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; see docs/operations.md")
