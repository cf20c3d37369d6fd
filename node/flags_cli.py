"""``fedcredit node flags``: this member's private blacklist — add, check, list, withdraw.

Run on the node's host with the node's ``FEDCREDIT_NODE_*`` environment; a running node sees a
change on its next evaluation. Identifiers are read from stdin (one per line), never from an
argument (arguments end up in shell history and process listings), and pseudonymized at once
with the node's subject key: the flag store never holds a raw identifier, so ``list`` shows
flags by id, category and dates only. Failures print ``CODE: detail`` and exit 1; bad settings
exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from fedcredit.errors import FedCreditError
from mpc.pseudonym import IdentifierType, SubjectKey, pseudonymize
from node.blacklist import FlagCategory, SubjectFlag, SubjectFlags

flags_app = typer.Typer(help="This member's private blacklist (the alliance learns only how "
                        "many members flag an applicant).", no_args_is_help=True)
console = Console(width=max(Console().width, 120))
err_console = Console(stderr=True)

IdTypeOption = Annotated[IdentifierType, typer.Option(
    "--id-type", help="The identifiers' type (they are read from stdin, one per line).")]


@dataclass
class _Node:
    flags: SubjectFlags
    subject_key: SubjectKey


@contextmanager
def _node() -> Iterator[_Node]:
    """The node's flag store and subject key; typed failures become ``CODE: detail``, exit 1."""
    from node.settings import NodeSettings

    try:
        settings = NodeSettings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                             for e in exc.errors())
        err_console.print(f"[red]configuration error:[/] {problems}")
        raise typer.Exit(2) from None
    flags = SubjectFlags(settings.blacklist_store_path)
    try:
        yield _Node(flags, SubjectKey.from_hex(settings.subject_key.get_secret_value()))
    except FedCreditError as exc:
        err_console.print(f"[red]{exc.code.value}:[/] {exc.detail}")
        raise typer.Exit(1) from None
    finally:
        flags.close()


def _identifiers() -> list[str]:
    if sys.stdin.isatty():
        return [typer.prompt("identifier", hide_input=True)]
    return [line.strip() for line in sys.stdin if line.strip()]


def _when(unix_ms: int | None) -> str:
    if unix_ms is None:
        return "-"
    return datetime.fromtimestamp(unix_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _table(title: str, flags: list[SubjectFlag]) -> Table:
    table = Table(title=title)
    for column in ("id", "category", "set", "by", "expires", "withdrawn"):
        table.add_column(column, no_wrap=True)
    table.add_column("note")
    for f in flags:
        table.add_row(f.flag_id, f.category.value, _when(f.created_ms), f.created_by,
                      _when(f.expires_ms), _when(f.withdrawn_ms), f.note)
    return table


@flags_app.command("add")
def add(
    id_type: IdTypeOption,
    category: Annotated[FlagCategory, typer.Option(help="Why the subject is flagged.")],
    expires: Annotated[datetime, typer.Option(
        formats=["%Y-%m-%d"], help="The day the flag stops counting (UTC midnight).")],
    by: Annotated[str, typer.Option("--by", help="Who sets the flag (kept with it).")],
    note: Annotated[str, typer.Option(help="A reference for your own records (case "
                                           "number); never leaves this node.")] = "",
) -> None:
    """Flag the subjects whose identifiers arrive on stdin (one per line)."""
    expires_ms = int(datetime.combine(date(expires.year, expires.month, expires.day), time(),
                                      tzinfo=UTC).timestamp() * 1000)
    raw = _identifiers()
    if not raw:
        err_console.print("[red]INVALID_REQUEST:[/] no identifier on stdin")
        raise typer.Exit(1)
    with _node() as node:
        pseudonyms = []
        for i, identifier in enumerate(raw, start=1):
            try:
                pseudonyms.append(pseudonymize(node.subject_key, id_type, identifier).value)
            except FedCreditError as exc:  # checked before any flag is written
                raise type(exc)(f"line {i}: {exc.detail}", code=exc.code) from None
        added = [node.flags.add(p, category, expires_ms, by, note) for p in pseudonyms]
    for flag in added:
        typer.echo(flag.flag_id)
    err_console.print(f"flagged {len(added)} subject(s) for {category.value} until "
                      f"{_when(expires_ms)} UTC")


@flags_app.command("check")
def check(id_type: IdTypeOption) -> None:
    """This member's flags on the subject whose identifier arrives on stdin."""
    raw = _identifiers()
    if len(raw) != 1:
        err_console.print("[red]INVALID_REQUEST:[/] give exactly one identifier on stdin")
        raise typer.Exit(1)
    with _node() as node:
        pseudonym = pseudonymize(node.subject_key, id_type, raw[0]).value
        flags = node.flags.for_subject(pseudonym)
        active = node.flags.is_flagged(pseudonym, int(datetime.now(UTC).timestamp() * 1000))
    console.print(_table("flags on this subject (times in UTC)", flags))
    console.print("counts in evaluations: " + ("[red]yes[/]" if active else "no"))


@flags_app.command("list")
def list_flags(
    include_inactive: Annotated[bool, typer.Option(
        "--all", help="Expired and withdrawn flags too.")] = False,
) -> None:
    """This member's flags, by id (the subjects are pseudonymous: no identifier is stored)."""
    with _node() as node:
        flags = node.flags.list(include_inactive)
    console.print(_table("flags (times in UTC)", flags))


@flags_app.command("withdraw")
def withdraw(flag_id: Annotated[str, typer.Argument(help="The flag's id (see list).")]) -> None:
    """Stop a flag counting now; it stays on record as withdrawn."""
    with _node() as node:
        flag = node.flags.withdraw(flag_id)
    err_console.print(f"withdrew flag {flag.flag_id} ({flag.category.value})")
