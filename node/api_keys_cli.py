"""``fedcredit node api-keys``: issue, list, rotate, revoke and import lender API keys.

Run on the node's host with the node's ``FEDCREDIT_NODE_*`` environment: the commands open the
node's key store directly, and a running node sees every change on its next request. A token
is printed once, alone on stdout (so ``TOKEN=$(fedcredit node api-keys create ...)`` works),
or written to ``--token-file`` with mode 0600; it is never stored and never listed. Keys to
import are read from stdin, never from an argument (arguments end up in shell history and
process listings). Failures print ``CODE: detail`` and exit 1; bad settings exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from fedcredit.errors import FedCreditError
from fedcredit.files import write_secret
from node.api_keys import ApiKeyRecord, ApiKeyStore, ApiScope

api_keys_app = typer.Typer(help="API keys of the lender applications calling this node.",
                           no_args_is_help=True)
console = Console(width=max(Console().width, 140))
err_console = Console(stderr=True)

ScopeOption = Annotated[list[ApiScope], typer.Option(
    "--scope", help="What the key may do; repeat for several.")]
TokenFileOption = Annotated[Path | None, typer.Option(
    help="Write the token here (mode 0600) instead of printing it.")]


@contextmanager
def _store() -> Iterator[ApiKeyStore]:
    """The node's key store; a typed failure becomes ``CODE: detail`` and exit status 1."""
    from node.settings import NodeSettings

    try:
        store = ApiKeyStore(NodeSettings().api_key_store_path)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                             for e in exc.errors())
        err_console.print(f"[red]configuration error:[/] {problems}")
        raise typer.Exit(2) from None
    try:
        yield store
    except FedCreditError as exc:
        err_console.print(f"[red]{exc.code.value}:[/] {exc.detail}")
        raise typer.Exit(1) from None
    finally:
        store.close()


def _hand_over(token: str, record: ApiKeyRecord, token_file: Path | None, what: str) -> None:
    if token_file is not None:
        write_secret(token_file, (token + "\n").encode())
        err_console.print(f"{what} {record.key_id} ({record.name}); token written to "
                          f"{token_file}")
    else:
        err_console.print(f"{what} {record.key_id} ({record.name}); the token is shown once:")
        typer.echo(token)


def _when(unix_ms: int | None) -> str:
    if unix_ms is None:
        return "-"
    return datetime.fromtimestamp(unix_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


@api_keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="The lender application, e.g. 'loan-origination'.")],
    scope: ScopeOption,
    expires_days: Annotated[int | None, typer.Option(
        min=1, max=3650, help="Stop working after this many days (default: never).")] = None,
    token_file: TokenFileOption = None,
) -> None:
    """Issue a key; its token is shown once."""
    with _store() as store:
        expires_ms = None
        if expires_days is not None:
            expires_ms = int(datetime.now(UTC).timestamp() * 1000) + expires_days * 86_400_000
        record, token = store.create(name, scope, expires_ms)
        _hand_over(token, record, token_file, "created API key")


@api_keys_app.command("list")
def list_keys() -> None:
    """Every key, revoked and expired ones too (never a secret)."""
    with _store() as store:
        records = store.list()
    table = Table(title="API keys (times in UTC)")
    table.add_column("id", no_wrap=True)
    table.add_column("name")  # the one column that wraps when the terminal is narrow
    for column in ("scopes", "created", "expires", "last used", "revoked"):
        table.add_column(column, no_wrap=True)
    for r in records:
        name = f"{r.name} (imported)" if r.imported else r.name
        table.add_row(r.key_id, name, "\n".join(sorted(r.scopes)), _when(r.created_ms),
                      _when(r.expires_ms), _when(r.last_used_ms), _when(r.revoked_ms))
    console.print(table)


@api_keys_app.command("rotate")
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (see list).")],
    grace_minutes: Annotated[int, typer.Option(
        min=0, max=7 * 24 * 60,
        help="How long the old token keeps working, for the application to switch.")] = 0,
    token_file: TokenFileOption = None,
) -> None:
    """Give a key a new token (same id, name and scopes); the new token is shown once."""
    with _store() as store:
        token = store.rotate(key_id, grace_ms=grace_minutes * 60_000)
        record = store.get(key_id)
        _hand_over(token, record, token_file, "rotated API key")
        if record.previous_until_ms is not None:
            err_console.print(f"the old token works until {_when(record.previous_until_ms)}")


@api_keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (see list).")]) -> None:
    """Stop a key now, for good."""
    with _store() as store:
        record = store.revoke(key_id)
    err_console.print(f"revoked API key {record.key_id} ({record.name})")


@api_keys_app.command("import")
def import_key(
    name: Annotated[str, typer.Option(help="The lender application holding the key.")],
    scope: ScopeOption,
) -> None:
    """Keep a key from FEDCREDIT_NODE_API_KEYS: read from stdin, stored hashed."""
    if sys.stdin.isatty():
        token = typer.prompt("API key", hide_input=True)
    else:
        token = sys.stdin.read()
    with _store() as store:
        record = store.import_plaintext(name, token.strip(), scope)
    err_console.print(f"imported API key as {record.key_id} ({record.name}); the application "
                      "keeps using it unchanged")
