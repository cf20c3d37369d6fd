"""How an ingest looks on a terminal: Spark stage progress, then a closing summary."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from node.ingest.pipeline import IngestResult


class RichReporter:
    """One line per pipeline step; its bar follows the tasks of Spark's active stages."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} tasks"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish_current()
        self._progress.stop()

    def _finish_current(self) -> None:
        if self._task is not None:
            task = self._progress.tasks[self._task]
            total = task.total or 1
            self._progress.update(self._task, completed=total, total=total)

    def step(self, description: str) -> None:
        self._finish_current()
        self._task = self._progress.add_task(description, total=None)

    def tasks(self, done: int, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=done, total=total)


def render_summary(console: Console, result: IngestResult) -> None:
    table = Table(title=f"ingest {result.manifest.snapshot_id} ({result.manifest.member_id})")
    table.add_column("table")
    table.add_column("rows in", justify="right")
    table.add_column("accepted", justify="right")
    table.add_column("rejected", justify="right")
    table.add_column("by reason")
    for report in result.tables:
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in report.rejected.items())
        table.add_row(report.table, f"{report.rows_in:,}", f"{report.accepted:,}",
                      f"{report.rejected_total:,}", reasons or "-")
    console.print(table)
    manifest = result.manifest
    with_values = sum(1 for f in manifest.features if f.count)
    console.print(
        f"subjects out [bold]{manifest.subjects:,}[/] · features {len(manifest.features)} "
        f"({with_values} with values) · wall time {result.seconds:.1f} s\n"
        f"snapshot  {result.snapshot_dir}\n"
        f"rejects   {result.reject_report} (masked rows; keep it inside the institution)"
    )
