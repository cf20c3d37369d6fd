"""Where a feature store lives, from its URL; and the URL as it may be shown (no password).

* ``sqlite:///abs/path.db``, ``sqlite:relative/path.db`` or a bare path: an SQLite file;
* ``postgresql://user:password@host:port/db`` (or ``postgres://``): PostgreSQL, in the schema
  named by the optional ``?schema=`` parameter (default ``fedcredit_features``), so several
  members can share one server. Other parameters go to libpq unchanged (``sslmode``, …); the
  password may also come from ``PGPASSWORD`` or ``~/.pgpass`` instead of the URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from fedcredit.errors import ConfigurationError

POSTGRES_SCHEMES = ("postgresql", "postgres")
DEFAULT_SCHEMA = "fedcredit_features"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class SqliteLocation:
    path: Path


@dataclass(frozen=True)
class PostgresLocation:
    conninfo: str  # the URL without the schema parameter, as libpq takes it
    schema: str


def parse_store_url(url: str) -> SqliteLocation | PostgresLocation:
    text = url.strip()
    if not text:
        raise ConfigurationError("the feature store URL is empty")
    scheme = text.split(":", 1)[0].lower() if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", text) else ""
    if scheme in POSTGRES_SCHEMES:
        return _postgres(text)
    if scheme == "sqlite":
        rest = text[len("sqlite:"):]
        if rest.startswith("///"):
            rest = "/" + rest.lstrip("/")  # sqlite:///abs/path (or ////abs/path) → /abs/path
        elif rest.startswith("//"):
            raise ConfigurationError(
                "an SQLite feature store URL is sqlite:///absolute/path or sqlite:relative/path"
            )
        if not rest:
            raise ConfigurationError("the SQLite feature store URL names no file")
        return SqliteLocation(Path(rest))
    if "://" in text:
        raise ConfigurationError(
            f"unsupported feature store URL scheme {scheme or text.split('://')[0]!r}; "
            "use sqlite:… or postgresql://…"
        )
    return SqliteLocation(Path(text))


def _postgres(url: str) -> PostgresLocation:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    schema = schemas[-1] if schemas else DEFAULT_SCHEMA
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(
            f"feature store schema {schema!r} must be a lower-case SQL name ([a-z_][a-z0-9_]*)"
        )
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return PostgresLocation(urlunsplit(parts._replace(query=rest)), schema)


def url_passwords(url: str) -> tuple[str, ...]:
    """Every spelling of the password a URL carries (user info or ``password`` parameter,
    as written and decoded): what must never appear in a message."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    found = [v for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k == "password" and v]
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    return tuple(sorted(set(found), key=len, reverse=True))


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``: what errors and logs may show."""
    redacted = re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", redacted)
