"""``fedcredit demo``: three (or more) institutions evaluate applicants jointly, on loopback."""

from __future__ import annotations

import math
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
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from fedcredit.demo.audit import audit_alliance, render_audit
from fedcredit.demo.reuse import remember, reusable
from fedcredit.demo.snapshots import PooledResult, pooled_result, read_records
from fedcredit.demo.training import (
    AucReport,
    GradeBand,
    compare_auc,
    fit_model_slices,
    grade_bands,
    load_joint,
    split,
)
from fedcredit.files import write_json
from fedcredit.launcher import LocalAlliance, NodeSpec
from fedcredit.synth.alliance import generate_alliance
from fedcredit.synth.institutions import alliance_members
from fedcredit.synth.spec import AllianceSpec
from mpc.pseudonym import SubjectKey, pseudonymize
from node.ingest.config import load_ingest_config
from node.ingest.console import RichReporter
from node.ingest.pipeline import IngestResult, run_ingest
from node.ingest.snapshot import SubjectRecord
from node.ingest.spark import spark_session, stop_spark
from node.report_page import write_report_page
from node.store import open_store
from scoring.lending_policy import default_policy
from scoring.model import ModelSlice

MODEL_VERSION = "v1"
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


@dataclass(frozen=True)
class Applicant:
    identifier: str
    id_type: str
    pseudonym: bytes


@dataclass
class DemoData:
    """What the demo prepared: snapshots per member, their records, model slices, applicants."""

    snapshots: dict[str, Path]
    records: dict[str, dict[bytes, SubjectRecord]]
    models: dict[str, ModelSlice]
    applicants: list[Applicant]
    auc: AucReport
    grades: tuple[GradeBand, ...]


def ingest_members(raw_dir: Path, members: list[str], key: SubjectKey, console: Console
                   ) -> dict[str, IngestResult]:
    """Each member's raw tables through the Spark pipeline (local[2]), one after another."""
    spark = spark_session("local[2]", driver_memory="2g", shuffle_partitions=4,
                          local_dir=raw_dir.parent / "spark")
    results: dict[str, IngestResult] = {}
    try:
        for member in members:
            config = load_ingest_config(raw_dir / member / "ingest.yaml")
            with RichReporter(console) as reporter:
                results[member] = run_ingest(spark, config, key, reporter=reporter)
    finally:
        stop_spark(spark)
    return results


def render_ingest(console: Console, results: dict[str, IngestResult]) -> None:
    table = Table(title="Spark ingest per member (raw tables → pseudonymized feature snapshot)")
    for column in ("member", "rows in", "rejected", "top reject reasons", "subjects", "features",
                   "s"):
        table.add_column(column, justify="left" if column in ("member", "top reject reasons")
                         else "right")
    for member, result in results.items():
        rows_in = sum(t.rows_in for t in result.tables)
        rejected: dict[str, int] = {}
        for report in result.tables:
            for reason, count in report.rejected.items():
                rejected[reason] = rejected.get(reason, 0) + count
        top = sorted(rejected.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(member, f"{rows_in:,}", f"{sum(rejected.values()):,}",
                      ", ".join(f"{r} {n}" for r, n in top) or "-",
                      f"{result.manifest.subjects:,}", str(len(result.manifest.features)),
                      f"{result.seconds:.1f}")
    console.print(table)


def render_auc(console: Console, auc: AucReport) -> None:
    table = Table(title=f"Held-out AUC, {auc.subjects:,} people, default rate "
                  f"{auc.default_rate:.1%} (bootstrap logistic regression)")
    table.add_column("model")
    table.add_column("customers known", justify="right")
    table.add_column("AUC", justify="right")
    table.add_row("[bold]joint (all members' features)[/]", "100%", f"[bold]{auc.joint_auc:.3f}[/]")
    for member, value in sorted(auc.member_auc.items(), key=lambda kv: -kv[1]):
        table.add_row(f"{member} alone", f"{auc.member_coverage[member]:.0%}", f"{value:.3f}")
    console.print(table)
    best, value = auc.best_single
    console.print(f"joint model vs best single institution ({best}): "
                  f"{auc.joint_auc:.3f} vs {value:.3f} ({auc.joint_auc - value:+.3f})")


def render_grades(console: Console, bands: tuple[GradeBand, ...]) -> None:
    """What each grade of the built-in policy means on this data (held-out applicants)."""
    table = Table(title="Grades of the built-in policy on the held-out applicants "
                  "(joint model)")
    for column in ("grade", "scores", "applicants", "defaults", "default rate",
                   "predicted PD"):
        table.add_column(column, justify="left" if column in ("grade", "scores") else "right")
    ceiling: int | None = None
    for band in bands:
        scores = f"{band.floor}+" if ceiling is None else f"{band.floor}-{ceiling - 1}"
        if band.floor == 0:
            scores = f"< {ceiling}"
        rate = band.default_rate
        table.add_row(band.grade.value, scores, f"{band.applicants:,}", f"{band.defaults:,}",
                      "—" if rate is None else f"{rate:.1%}",
                      "—" if not band.applicants else f"{band.mean_predicted:.1%}")
        ceiling = band.floor
    console.print(table)


def prepare(raw_dir: Path, members: list[str], key: SubjectKey, seed: int, console: Console,
            snapshots: dict[str, Path] | None = None) -> DemoData:
    """Ingest every member (unless ``snapshots`` of an earlier run are given), fit the model."""
    if snapshots is None:
        results = ingest_members(raw_dir, members, key, console)
        render_ingest(console, results)
        snapshots = {m: r.snapshot_dir for m, r in results.items()}
    people = pq.read_table(raw_dir / "labels.parquet").to_pylist()
    applicants = [
        Applicant(p["identifier"], p["identifier_type"],
                  pseudonymize(key, p["identifier_type"], p["identifier"]).value)
        for p in people
    ]
    labels = {a.pseudonym: int(p["default"]) for a, p in zip(applicants, people, strict=True)}
    data = load_joint(snapshots, labels)
    auc = compare_auc(data, seed)
    train, _ = split(len(data.labels), seed)
    models = fit_model_slices(data, train, MODEL_VERSION)
    records = {m: read_records(d) for m, d in snapshots.items()}
    grades = grade_bands(data, default_policy(), seed)
    return DemoData(snapshots, records, models, applicants, auc, grades)


def build_alliance(data: DemoData, names: dict[str, str], key: SubjectKey, workdir: Path
                   ) -> LocalAlliance:
    specs = []
    overrides = {}
    for member, snapshot in data.snapshots.items():
        models = workdir / member / "models"
        write_json(models / f"{MODEL_VERSION}.json", data.models[member].to_dict())
        store_url = f"sqlite:///{workdir / member / 'features.sqlite3'}"
        store = open_store(store_url, member_id=member)
        try:
            store.load_snapshot(snapshot)
        finally:
            store.close()
        # The catalog the demo publishes reaches each node with its next heartbeat.
        overrides[member] = {"FEDCREDIT_NODE_FEATURE_STORE_URL": store_url,
                             "FEDCREDIT_NODE_PRODUCT_REFRESH_MS": "1000"}
        specs.append(NodeSpec(member_id=member, display_name=names[member], features_file=None,
                              model_dir=models, model_version=MODEL_VERSION))
    return LocalAlliance(
        workdir=workdir,
        nodes=specs,
        subject_key_hex=key.secret.hex(),
        api_key=secrets.token_urlsafe(24),
        node_env_overrides=overrides,
    )


def evaluation_body(identifier: str, id_type: str, index: int, rng: np.random.Generator,
                    own: SubjectRecord | None = None) -> dict[str, Any]:
    """A lender's evaluation request for one applicant (consent valid for 30 days), with the
    income and spending the lender knows from its own records, when it has them."""
    expires = datetime.now(UTC) + timedelta(days=30)
    body: dict[str, Any] = {
        "applicant": {"id_type": id_type, "identifier": identifier},
        "consent": {"purpose": "origination", "expires_at": expires.isoformat(),
                    "reference": f"consent-{index:06d}"},
        "requested_amount": float(rng.choice([5000, 10000, 20000, 50000])),
        "term_months": int(rng.choice([6, 12, 24, 36])),
    }
    features = own.features if own is not None else {}
    income = next((features[f] for f in ("declared_income_monthly", "income_monthly")
                   if f in features and math.isfinite(features[f]) and features[f] > 0), None)
    if income is not None:
        body["verified_annual_income"] = round(income * 12, 2)
    spending = features.get("spending_monthly")
    if spending is not None and math.isfinite(spending) and spending >= 0:
        body["monthly_spending"] = round(spending, 2)
    return body


def matches_expected(expected: PooledResult, report: dict[str, Any]) -> bool:
    """The decrypted joint result equals the plaintext computation over the pooled data."""
    exposures = report["exposures"]
    return (
        abs(report["joint_logit"] - expected.joint_logit) <= LOGIT_TOLERANCE
        and report["institutions_with_records"] == expected.institutions_with_records
        and round(exposures["outstanding_debt"] * 100)
        == expected.exposures["outstanding_debt_cents"]
        and all(exposures[k] == v for k, v in expected.exposures.items()
                if k != "outstanding_debt_cents")
        and exposures["institutions_with_active_loans"] == expected.institutions_with_active_loans
        and all(abs(report["lending"]["reason_groups"][g] - v) <= 1e-4
                for g, v in expected.reason_groups.items())
    )


def run_evaluations(alliance: LocalAlliance, data: DemoData, count: int, seed: int
                    ) -> list[DemoRow]:
    rng = np.random.default_rng(seed + 1)
    members = [n.member_id for n in alliance.nodes]
    indices = rng.choice(len(data.applicants), size=count, replace=False)
    if count > 1:  # one member flags the second applicant on its private blacklist
        flag_applicant(alliance, members[2 % len(members)], data.applicants[int(indices[1])])
    rows: list[DemoRow] = []
    with httpx.Client(timeout=60, headers={"X-API-Key": alliance.api_key}) as client:
        for k, index in enumerate(indices):
            applicant = data.applicants[int(index)]
            requester = members[k % len(members)]
            started = time.perf_counter()
            own = data.records.get(requester, {}).get(applicant.pseudonym)
            body = evaluation_body(applicant.identifier, applicant.id_type, int(index), rng, own)
            response = client.post(f"{alliance.http_url(requester)}/v1/evaluations", json=body)
            latency = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            report = response.json()
            expected = pooled_result(data.records, data.models, applicant.pseudonym)
            rows.append(DemoRow(requester, mask(applicant.identifier), report, latency,
                                matches_expected(expected, report)))
    return rows


#: One loan product per member, as its product team would publish it (grades: who may apply).
_PRODUCTS = (
    ("personal-loan", "Personal loan", "1000", "50000", [6, 12, 24], "0.089", 1, "ABC"),
    ("flex-instalment", "Flex instalment loan", "500", "30000", [3, 6, 12, 24], "0.129", 0,
     "ABCD"),
    ("pay-later", "Pay-later credit line", "200", "8000", [3, 6, 12], "0.159", 0, "BCD"),
)


def publish_products(alliance: LocalAlliance, members: list[str], timeout_s: float = 30
                     ) -> int:
    """Each member's product, published by an admin through the HTTPS admin API, then waited
    for until every node matches against that catalog version; the number published."""
    admin = alliance.admin()
    try:
        version = 0
        for k, member in enumerate(members):
            pid, name, low, high, terms, apr, days, grades = _PRODUCTS[k % len(_PRODUCTS)]
            published = admin.call("PUT", f"/v1/products/{member}-{pid}", body={
                "member_id": member, "name": name, "min_amount": low, "max_amount": high,
                "terms_months": terms, "apr": apr, "disbursement_days": days,
                "eligible_grades": list(grades)})
            version = int(published["catalog_version"])
    finally:
        admin.close()
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5) as client:
        for member in members:
            while client.get(f"{alliance.http_url(member)}/healthz").json()[
                    "product_catalog_version"] < version:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{member} did not fetch product catalog {version}")
                time.sleep(0.1)
    return len(members)


def write_report(console: Console, rows: list[DemoRow], path: Path) -> None:
    """The printable page of one evaluation: preferably an approval with products and a
    planned schedule (the fullest page), else the first that comes closest."""
    def fullness(row: DemoRow) -> tuple[bool, bool, bool]:
        lending = row.report["lending"]
        return (lending["decision"] == "approve",
                (lending["plan"] or {}).get("outcome") == "planned", bool(lending["products"]))

    row = max(rows, key=fullness)  # the first of the fullest
    write_report_page(row.report, path)
    console.print(f"One evaluation's printable report ({row.requester}, "
                  f"{row.report['lending']['decision']}): {path.resolve()}")


def flag_applicant(alliance: LocalAlliance, member: str, applicant: Applicant) -> None:
    """As the member's fraud team would: ``fedcredit node flags add``, the identifier on stdin.
    The requester will learn that one member flags the applicant — not which, nor why."""
    spec = next(n for n in alliance.nodes if n.member_id == member)
    expires = (datetime.now(UTC) + timedelta(days=365)).strftime("%Y-%m-%d")
    alliance.run_cli(["node", "flags", "add", "--id-type", applicant.id_type, "--category",
                      "fraud", "--expires", expires, "--by", "demo-fraud-team"],
                     alliance.node_env(spec), f"{member}: flags add",
                     stdin=applicant.identifier + "\n")


def render(console: Console, rows: list[DemoRow]) -> None:
    table = Table(title="Joint evaluations (decrypted only by the requester)",
                  caption="members: institutions holding a record; debt: alliance-wide sum; "
                  "decision: the requester's policy (reason codes below); "
                  "cov: members answered/asked; exact: equals the pooled plaintext computation")
    for column in ("requester", "applicant", "score", "grade", "P(default)", "members",
                   "debt", "decision", "limit", "cov", "ms", "exact"):
        table.add_column(column, justify="right" if column not in ("requester", "applicant")
                         else "left", no_wrap=True)
    for row in rows:
        r = row.report
        cov = r["coverage"]
        table.add_row(
            row.requester, row.masked_id, str(r["score"]), r["grade"],
            f"{r['default_probability']:.1%}", str(r["institutions_with_records"]),
            f"{r['exposures']['outstanding_debt']:,.2f}", _decision_cell(r["lending"]),
            "—" if r["lending"]["credit_limit"] is None else f"{r['lending']['credit_limit']:,.0f}",
            f"{cov['answered']}/{cov['asked']}",
            f"{row.latency_ms:.0f}", "[green]✓[/]" if row.exact else "[red]✗[/]",
        )
    console.print(table)
    render_reasons(console, rows)
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


_DECISION_STYLE = {"approve": "green", "refer": "yellow", "decline": "red"}


def _decision_cell(lending: dict[str, Any]) -> str:
    decision = lending["decision"]
    codes = ",".join(r["code"] for r in lending["reasons"][:2])
    return f"[{_DECISION_STYLE[decision]}]{decision}[/]" + (f" {codes}" if codes else "")


def render_reasons(console: Console, rows: list[DemoRow]) -> None:
    """What the reason codes in the table say, and one plan, in words."""
    seen: dict[str, str] = {}
    for row in rows:
        for reason in row.report["lending"]["reasons"]:
            seen.setdefault(reason["code"], reason["text"])
    for code, text in sorted(seen.items()):
        console.print(f"  {code}: {text}")
    planned = [r for r in rows if (r.report["lending"]["plan"] or {}).get("outcome")
               == "planned"]
    chosen = next((r for r in planned if r.report["lending"]["products"]),
                  planned[0] if planned else None)
    if chosen is not None:
        lending = chosen.report["lending"]
        for product in lending["products"]:
            console.print(f"  product {product['rank']} for {chosen.masked_id}: "
                          f"{product['name']} ({product['member_id']}) — {product['reason']}")
        plan = lending["plan"]
        console.print(f"plan for {chosen.masked_id} ({chosen.requester}): "
                      f"{plan['principal']:,.2f} at {plan['apr']:.1%} APR — "
                      f"{plan['explanation']}")


def run_demo(
    nodes: int, evaluations: int, subjects: int, seed: int, workdir: Path | None,
    console: Console, report_path: Path | None = None,
) -> int:
    if evaluations < 1 or evaluations > subjects:
        raise ValueError("evaluations must be between 1 and the number of subjects")
    temp = None
    if workdir is None:
        temp = tempfile.TemporaryDirectory(prefix="fedcredit-demo-")
        workdir = Path(temp.name)
    try:
        spec = AllianceSpec(subjects=subjects, institutions=nodes, seed=seed)
        raw_dir = workdir / "raw"
        names = {m.member_id: m.display_name for m in alliance_members(nodes)}
        earlier = reusable(workdir, subjects, nodes, seed)
        if earlier is not None:
            console.print(f"[bold]{subjects:,} people[/], {nodes} institutions: reusing the "
                          f"snapshots ingested by an earlier run in {workdir}")
            key = earlier.key
            data = prepare(raw_dir, list(names), key, seed, console, earlier.snapshots)
        else:
            with console.status(f"generating raw tables of {nodes} institutions for "
                                f"{subjects:,} people…"):
                summary = generate_alliance(spec, raw_dir, overwrite=True)
            console.print(f"[bold]{subjects:,} people[/], {nodes} institutions, default rate "
                          f"{summary.default_rate:.1%}; raw tables in {raw_dir}")
            key = SubjectKey.generate()
            data = prepare(raw_dir, list(names), key, seed, console)
            if temp is None:
                remember(workdir, subjects, nodes, seed, key, data.snapshots)
        render_auc(console, data.auc)
        render_grades(console, data.grades)
        alliance = build_alliance(data, names, key, workdir)
        try:
            with console.status("starting the coordinator and member nodes "
                                "(separate processes)…"):
                alliance.start()
            console.print(f"coordinator and {nodes} nodes up on loopback (logs: "
                          f"{workdir / 'logs'}); every member admitted through the admission "
                          "flow (join request, admin approval quoting the key fingerprint, "
                          "certificate), every gRPC link mutual TLS")
            with console.status("publishing loan products through the admin API…"):
                published = publish_products(alliance, [n.member_id for n in alliance.nodes])
            console.print(f"{published} loan products published to the alliance catalog; "
                          "every node matches against it")
            with console.status(f"running {evaluations} joint evaluations…"):
                rows = run_evaluations(alliance, data, evaluations, seed)
            with console.status("auditing: recomputing the ledger, proving members' "
                                "receipts…"):
                audit = audit_alliance(alliance, len(rows))
        finally:
            with console.status("shutting down…"):
                exit_codes = alliance.stop()
        render(console, rows)
        if report_path is not None:
            write_report(console, rows, report_path)
        render_audit(console, audit)
        unclean = {name: code for name, code in exit_codes.items() if code != 0}
        if unclean:
            console.print(f"[red]processes that did not stop cleanly (exit codes): {unclean}; "
                          f"see {workdir / 'logs'}[/]")
        else:
            console.print("All processes stopped cleanly.")
        return 0 if all(r.exact for r in rows) and audit.ok and not unclean else 1
    finally:
        if temp is not None:
            temp.cleanup()
