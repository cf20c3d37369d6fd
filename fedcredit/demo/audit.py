"""The demo's closing audit: the coordinator's ledger recomputed, each member's receipts proved.

What an alliance auditor would run: ``fedcredit audit verify`` over the coordinator's database
and ``fedcredit node audit-check`` at every member (in parallel, as separate processes).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rich.console import Console

from fedcredit.launcher import LocalAlliance, fedcredit_command

#: How long the members' outboxes get to deliver the last contributions and completions.
SETTLE_S = 10.0


@dataclass(frozen=True)
class AuditSummary:
    entries: Counter[str]
    ledger_ok: bool
    ledger_message: str
    receipts_ok: dict[str, bool]

    @property
    def ok(self) -> bool:
        return self.ledger_ok and all(self.receipts_ok.values())


def _counts(alliance: LocalAlliance) -> Counter[str]:
    uri = f"file:{alliance.workdir / 'coordinator' / 'coordinator.sqlite3'}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        return Counter(dict(db.execute(
            "SELECT kind, COUNT(*) FROM ledger_entries GROUP BY kind")))
    finally:
        db.close()


def audit_alliance(alliance: LocalAlliance, evaluations: int) -> AuditSummary:
    deadline = time.monotonic() + SETTLE_S
    counts = _counts(alliance)
    while counts["completion"] < evaluations and time.monotonic() < deadline:
        time.sleep(0.1)
        counts = _counts(alliance)
    data_dir = alliance.coordinator_env()["FEDCREDIT_COORDINATOR_DATA_DIR"]

    def ledger() -> subprocess.CompletedProcess[str]:
        return subprocess.run(fedcredit_command("audit", "verify", "--data-dir", data_dir),
                              capture_output=True, text=True, check=False)

    def receipts(spec_index: int) -> tuple[str, bool]:
        spec = alliance.nodes[spec_index]
        result = subprocess.run(fedcredit_command("node", "audit-check"),
                                env={**os.environ, **alliance.node_env(spec)},
                                capture_output=True, text=True, check=False)
        return spec.member_id, result.returncode == 0

    with ThreadPoolExecutor(max_workers=len(alliance.nodes) + 1) as pool:
        verified = pool.submit(ledger)
        checked = dict(pool.map(receipts, range(len(alliance.nodes))))
        result = verified.result()
    message = (result.stdout if result.returncode == 0 else result.stderr).strip()
    return AuditSummary(counts, result.returncode == 0, message, checked)


def render_audit(console: Console, summary: AuditSummary) -> None:
    kinds = ", ".join(f"{summary.entries[k]} {k}" for k in
                      ("admission", "plan", "consent", "contribution", "completion"))
    console.print(f"audit ledger: {sum(summary.entries.values())} entries ({kinds}, …)")
    mark = "[green]✓[/]" if summary.ledger_ok else "[red]✗[/]"
    console.print(f"  {mark} coordinator: {summary.ledger_message}")
    for member, ok in summary.receipts_ok.items():
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        console.print(f"  {mark} {member}: its receipts are proved in the current signed log")
