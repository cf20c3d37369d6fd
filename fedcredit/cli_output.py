"""What every CLI module prints with, and how a failure ends a command."""

from __future__ import annotations

import typer
from pydantic import ValidationError
from rich.console import Console

from fedcredit.errors import FedCreditError

console = Console(width=max(Console().width, 130))
err_console = Console(stderr=True)


def fail(exc: Exception) -> typer.Exit:
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in exc.errors()
        )
        err_console.print(f"[red]configuration error:[/] {problems}")
        return typer.Exit(2)
    if isinstance(exc, FedCreditError):
        err_console.print(f"[red]{exc.code.value}:[/] {exc.detail}")
        return typer.Exit(1)
    raise exc
