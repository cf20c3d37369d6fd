"""``fedcredit generate``: write a synthetic alliance of raw institution tables.

Registered in :mod:`fedcredit.cli` with ``app.command("generate")(generate)``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedcredit.synth.alliance import generate_alliance
from fedcredit.synth.spec import (
    DEFAULT_AS_OF,
    DEFAULT_SPENDING_PER_MONTH,
    AllianceSpec,
    InvalidSpecError,
)
from fedcredit.synth.summary import GenerationSummary
from fedcredit.synth.writer import OutputNotEmptyError
from node.ingest.datamodel import TABLES


def _parse_as_of(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)",
                                 param_hint="'--as-of'") from None


def _option(field: str) -> str:
    return f"'--{field.replace('_', '-')}'"


def summary_tables(summary: GenerationSummary) -> tuple[Table, Table]:
    """Rows per member and table (bad rows in brackets), and default rates by lender count."""
    names = [t.name for t in TABLES]
    rows = Table(title=f"{summary.out_dir}: rows written (deliberately bad rows)")
    for header in ("member", "kind", "format", *names):
        rows.add_column(header, justify="right" if header in names else "left")
    for member in summary.members:
        cells = []
        for table in names:
            if table not in member.rows:
                cells.append("—")
                continue
            bad = member.dirty_rows(table)
            cells.append(f"{member.rows[table]:,}" + (f" ({bad:,})" if bad else ""))
        rows.add_row(member.member_id, member.kind, member.file_format, *cells)
    defaults = Table(title="labels.parquet: default within 12 months")
    for header in ("lenders", "subjects", "defaults", "default rate"):
        defaults.add_column(header, justify="right")
    for stratum in summary.strata:
        defaults.add_row(str(stratum.lenders), f"{stratum.subjects:,}",
                         f"{stratum.defaults:,}", f"{stratum.default_rate:.1%}")
    defaults.add_row("all", f"{summary.subjects:,}", f"{summary.defaults:,}",
                     f"{summary.default_rate:.1%}", style="bold")
    return rows, defaults


def generate(
    out: Annotated[Path, typer.Argument(help="Output folder; must be empty unless --force.")],
    subjects: Annotated[int, typer.Option(help="People in the population.")] = 10_000,
    institutions: Annotated[int, typer.Option(
        help="Member institutions, 1-8 (bank, finco, shop, bank2, ...).")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same files.")]
    = 7,
    as_of: Annotated[str, typer.Option(help="As-of date of the extracts (YYYY-MM-DD).")]
    = DEFAULT_AS_OF.isoformat(),
    months: Annotated[int, typer.Option(help="Months of history before the as-of date.")] = 12,
    dirty_rate: Annotated[float, typer.Option(
        help="Share of deliberately bad rows added to every table (0: clean data).")] = 0.002,
    spending_per_month: Annotated[float, typer.Option(
        help="Mean spending debits per person-month on a current account.")]
    = DEFAULT_SPENDING_PER_MONTH,
    force: Annotated[bool, typer.Option(
        "--force", help="Write into a non-empty OUT, replacing a previous run's files.")]
    = False,
) -> None:
    """Generate a synthetic alliance: raw tables and ingest configs per member, and labels."""
    try:
        spec = AllianceSpec(subjects=subjects, institutions=institutions, seed=seed,
                            as_of=_parse_as_of(as_of), months=months,
                            spending_per_month=spending_per_month, dirty_rate=dirty_rate)
    except InvalidSpecError as exc:
        raise typer.BadParameter(exc.message, param_hint=_option(exc.field)) from None
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a folder", param_hint="'OUT'")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise typer.BadParameter(f"{out} is not empty (--force writes into it anyway)",
                                 param_hint="'OUT'")
    console = Console(width=max(Console().width, 130))
    with Progress(TextColumn("[bold]generating"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("subjects"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task("subjects", total=subjects)
        try:
            summary = generate_alliance(
                spec, out, overwrite=force,
                progress=lambda done, total: progress.update(task, completed=done))
        except OutputNotEmptyError as exc:
            raise typer.BadParameter(str(exc), param_hint="'OUT'") from None
    for table in summary_tables(summary):
        console.print(table)
    kinds = ", ".join(f"{kind} {rows:,}" for kind, rows in summary.dirty_by_kind().items())
    console.print(f"{summary.dirty_total:,} deliberately bad rows"
                  + (f" ({kinds}); by member, table and reason in alliance.json" if kinds else ""))
    console.print(f"wall time {summary.wall_seconds:.1f} s; peak RSS "
                  f"{summary.peak_rss_bytes / 2**20:,.0f} MiB; ingest configs: "
                  f"{out}/<member>/ingest.yaml")
