"""``fedcredit demo``: three (or more) institutions evaluate applicants jointly, on loopback."""

from __future__ import annotations

import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from fedcredit.demo.population import (
    Population,
    generate,
    pooled_result,
    write_applicants,
    write_member_files,
)
from fedcredit.launcher import LocalAlliance, NodeSpec
from mpc.pseudonym import SubjectKey

LOGIT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class DemoRow:
    requester: str
    masked_id: str
    report: dict[str, Any]
    latency_ms: float
    exact: bool


def mask(identifier: str) -> str:
    return identifier[:4] + "*" * (len(identifier) - 8) + identifier[-4:]


def build_alliance(population: Population, workdir: Path) -> LocalAlliance:
    files = write_member_files(population, workdir / "inputs")
    write_applicants(population, workdir / "inputs" / "applicants.csv")
    specs = [
        NodeSpec(
            member_id=inst.profile.member_id,
            display_name=inst.profile.display_name,
            features_file=files[inst.profile.member_id],
            model_dir=files[inst.profile.member_id].parent / "models",
        )
        for inst in population.institutions
    ]
    return LocalAlliance(
        workdir=workdir,
        nodes=specs,
        subject_key_hex=SubjectKey.generate().secret.hex(),
        registration_token=secrets.token_urlsafe(24),
        api_key=secrets.token_urlsafe(24),
    )


def evaluation_body(population: Population, index: int, rng: np.random.Generator) -> dict[str, Any]:
    expires = datetime.now(UTC) + timedelta(days=30)
    return {
        "applicant": {"id_type": population.id_type.value,
                      "identifier": population.identifiers[index]},
        "consent": {"purpose": "origination", "expires_at": expires.isoformat(),
                    "reference": f"consent-{index:06d}"},
        "requested_amount": float(rng.choice([5000, 10000, 20000, 50000])),
        "term_months": int(rng.choice([6, 12, 24, 36])),
    }


def matches_pooled(population: Population, index: int, report: dict[str, Any]) -> bool:
    expected = pooled_result(population, index)
    exposures = report["exposures"]
    return (
        abs(report["joint_logit"] - expected.joint_logit) <= LOGIT_TOLERANCE
        and report["institutions_with_records"] == expected.institutions_with_records
        and round(exposures["outstanding_debt"] * 100)
        == expected.exposures["outstanding_debt_cents"]
        and all(exposures[k] == v for k, v in expected.exposures.items()
                if k != "outstanding_debt_cents")
    )


def run_evaluations(
    alliance: LocalAlliance, population: Population, count: int, seed: int
) -> list[DemoRow]:
    rng = np.random.default_rng(seed + 1)
    members = [n.member_id for n in alliance.nodes]
    indices = rng.choice(len(population.identifiers), size=count, replace=False)
    rows: list[DemoRow] = []
    with httpx.Client(timeout=60, headers={"X-API-Key": alliance.api_key}) as client:
        for k, index in enumerate(indices):
            requester = members[k % len(members)]
            started = time.perf_counter()
            response = client.post(f"{alliance.http_url(requester)}/v1/evaluations",
                                   json=evaluation_body(population, int(index), rng))
            latency = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            report = response.json()
            rows.append(DemoRow(requester, mask(population.identifiers[index]), report, latency,
                                matches_pooled(population, int(index), report)))
    return rows


def render(console: Console, rows: list[DemoRow]) -> None:
    table = Table(title="Joint evaluations (decrypted only by the requester)",
                  caption="members: institutions holding a record; debt, 30+ dpd, inquiries: "
                  "alliance-wide sums; cov: members answered/asked; exact: equals the pooled "
                  "plaintext computation")
    for column in ("requester", "applicant", "score", "grade", "P(default)", "members",
                   "debt", "30+ dpd", "inquiries", "cov", "ms", "exact"):
        table.add_column(column, justify="right" if column not in ("requester", "applicant")
                         else "left", no_wrap=True)
    for row in rows:
        r = row.report
        cov = r["coverage"]
        table.add_row(
            row.requester, row.masked_id, str(r["score"]), r["grade"],
            f"{r['default_probability']:.1%}", str(r["institutions_with_records"]),
            f"{r['exposures']['outstanding_debt']:,.2f}", str(r["exposures"]["accounts_30dpd"]),
            str(r["exposures"]["inquiries_90d"]), f"{cov['answered']}/{cov['asked']}",
            f"{row.latency_ms:.0f}", "[green]✓[/]" if row.exact else "[red]✗[/]",
        )
    console.print(table)
    latencies = sorted(r.latency_ms for r in rows)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    console.print(
        f"latency over {len(rows)} evaluations: p50 {statistics.median(latencies):.0f} ms, "
        f"p99 {p99:.0f} ms, max {latencies[-1]:.0f} ms"
    )
    exact = sum(r.exact for r in rows)
    colour = "green" if exact == len(rows) else "red"
    console.print(f"[{colour}]{exact}/{len(rows)} joint results equal the pooled plaintext "
                  f"computation (exposures exact, logit within {LOGIT_TOLERANCE:g})[/]")


def run_demo(
    nodes: int, evaluations: int, subjects: int, seed: int, workdir: Path | None,
    console: Console,
) -> int:
    if evaluations < 1 or evaluations > subjects:
        raise ValueError("evaluations must be between 1 and the number of subjects")
    temp = None
    if workdir is None:
        temp = tempfile.TemporaryDirectory(prefix="fedcredit-demo-")
        workdir = Path(temp.name)
    try:
        with console.status("generating the synthetic alliance population…"):
            population = generate(subjects, nodes, seed)
        shares = ", ".join(
            f"{i.profile.display_name} {int(i.has_record.sum())}" for i in population.institutions
        )
        console.print(f"[bold]{subjects} people[/], customers per member: {shares}; "
                      f"default rate {population.defaulted.mean():.1%}")
        alliance = build_alliance(population, workdir)
        try:
            with console.status("starting the coordinator and member nodes "
                                "(separate processes)…"):
                alliance.start()
            console.print(f"coordinator and {nodes} nodes up on loopback (logs: "
                          f"{workdir / 'logs'})")
            with console.status(f"running {evaluations} joint evaluations…"):
                rows = run_evaluations(alliance, population, evaluations, seed)
        finally:
            with console.status("shutting down…"):
                exit_codes = alliance.stop()
        render(console, rows)
        unclean = {name: code for name, code in exit_codes.items() if code != 0}
        if unclean:
            console.print(f"[red]processes that did not stop cleanly (exit codes): {unclean}; "
                          f"see {workdir / 'logs'}[/]")
        else:
            console.print("All processes stopped cleanly.")
        return 0 if all(r.exact for r in rows) and not unclean else 1
    finally:
        if temp is not None:
            temp.cleanup()
