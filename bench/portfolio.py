"""Benchmark: a portfolio re-scored jointly through the lender REST API, against baselines.

    python bench/portfolio.py --subjects 1000000 --json out.json

Generates a synthetic three-member alliance whose first member (the requester, ``bank``)
holds at least ``--subjects`` customers, loads every member's feature store (in parallel,
untimed), starts the coordinator and the nodes as separate processes on loopback, then times
one ``POST /v1/portfolio-evaluations`` with ``--subjects`` of the requester's customers until
the job has succeeded (``seconds``). The downloaded results are checked against the pooled
plaintext computation: every integer exposure exactly, the joint logit to 1e-5, the score.

Baselines in the same run, in-process, after the alliance stopped:

* **pooled plaintext** — the same joint results computed directly over the pooled data with
  numpy (what a central bureau holding everyone's raw data would do);
* **per-subject Paillier** — the online path's crypto (``mpc.secure_sum``: each other member
  encrypts its packed vector under a 2048-bit key and adds it, the requester decrypts),
  timed on a sample of subjects and extrapolated to ``--subjects``; and python-paillier's
  ``EncryptedNumber`` per field the same way ("naive phe").
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
from baselines import crypto_baselines
from machine import CpuSnapshot, cpu_usage, machine_info, peak_rss_mib, usable_cores
from rich.console import Console
from rich.table import Table

from fedcredit.demo.population import Population, generate, population_alliance
from mpc.contribution import EXPOSURE_FIELDS
from node.ingest.snapshot import EXPOSURE_COLUMNS
from scoring.assessment import assess_many

REQUESTER = "bank"
LOGIT_TOLERANCE = 1e-5
OUT_NAMES = {"has_record": "institutions_with_records", "flagged": "blacklist_flags",
             "with_active_loans": "institutions_with_active_loans"}


def pooled(population: Population, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The joint results of ``rows`` over the pooled data (vectorized, as a bureau would)."""
    model = population.models[REQUESTER]
    partial = np.zeros(len(rows))
    ints = {name: np.zeros(len(rows), dtype=np.int64) for name in EXPOSURE_FIELDS}
    for inst in population.institutions:
        has = inst.has_record[rows]
        slice_ = population.models[inst.profile.member_id]
        part = slice_.partial_logits({k: v[rows] for k, v in inst.features.items()}, len(rows))
        partial += np.where(has, part, 0.0)
        for name in EXPOSURE_COLUMNS:
            ints[name] += np.where(has, inst.exposures[name][rows], 0)
        ints["has_record"] += has
        ints["with_active_loans"] += has & (inst.exposures["active_loans"][rows] > 0)
    scored = assess_many(partial, model.intercept, model.scale)
    return {"joint_logit": scored.logits, "score": scored.scores, "grade": scored.grades,
            **{OUT_NAMES.get(n, n): v for n, v in ints.items()}}


def check(population: Population, rows: np.ndarray, table: Any) -> dict[str, Any]:
    expected = pooled(population, rows)
    got = {name: table.column(name).to_numpy(zero_copy_only=False) for name in expected}
    exposure_names = [OUT_NAMES.get(n, n) for n in EXPOSURE_FIELDS]
    wrong = {n: int(np.count_nonzero(got[n] != expected[n])) for n in exposure_names}
    error = np.abs(got["joint_logit"] - expected["joint_logit"])
    return {
        "rows_checked": len(rows),
        "exposures_exact": all(v == 0 for v in wrong.values()),
        "exposure_mismatches": wrong,
        "max_abs_logit_error": float(error.max()),
        "logit_mismatches": int(np.count_nonzero(error > LOGIT_TOLERANCE)),
        "score_mismatches": int(np.count_nonzero(got["score"] != expected["score"])),
        "statuses": {s: int(c) for s, c in zip(*np.unique(
            table.column("status").to_numpy(zero_copy_only=False), return_counts=True),
            strict=True)},
    }


def pooled_seconds(population: Population, rows: np.ndarray) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        pooled(population, rows)
        best = min(best, time.perf_counter() - started)
    return best


def run_job(alliance: Any, identifiers: list[str], console: Console) -> dict[str, Any]:
    body = {
        "subjects": {"id_type": "cn_resident_id", "identifiers": identifiers},
        "consent": {"purpose": "account_review", "relationship": "existing_customer",
                    "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
                    "reference": "bench-portfolio"},
    }
    payload = json.dumps(body).encode()
    base = alliance.http_url(REQUESTER)
    headers = {"X-API-Key": alliance.api_key, "Content-Type": "application/json"}
    pids = [os.getpid(), *(p.popen.pid for p in alliance.node_procs.values())]
    if alliance.coordinator is not None:
        pids.append(alliance.coordinator.popen.pid)
    cpu_before = CpuSnapshot.take(pids)
    with httpx.Client(timeout=600, headers=headers) as client:
        started = time.perf_counter()
        response = client.post(f"{base}/v1/portfolio-evaluations", content=payload)
        accepted = time.perf_counter()
        if response.status_code != 202:
            raise SystemExit(f"the job was refused: {response.status_code} {response.text}")
        location = f"{base}{response.headers['Location']}"
        with console.status("running…") as status:
            while True:
                job = client.get(location).json()
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    break
                status.update(f"{job['state']}: chunk {job['chunks_done']}/{job['chunks']} "
                              f"({time.perf_counter() - started:.0f} s)")
                time.sleep(0.2)
        finished = time.perf_counter()
        cpu = cpu_usage(cpu_before, CpuSnapshot.take(pids), finished - started, usable_cores())
        if job["state"] != "succeeded":
            raise SystemExit(f"the job ended {job['state']}: {job.get('error')}")
        download = client.get(f"{base}{job['results']['parquet']}")
        downloaded = time.perf_counter()
    return {
        "seconds": finished - started,
        "accept_seconds": accepted - started,
        "download_seconds": downloaded - finished,
        "request_bytes": len(payload),
        "job": job,
        "cpu_during_job": cpu,
        "table": pq.read_table(io.BytesIO(download.content)),
    }


def render(console: Console, result: dict[str, Any]) -> None:
    table = Table(title=(f"Portfolio re-scoring via REST — {result['subjects']:,} subjects x "
                         f"{result['institutions']} institutions"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    job = result["job"]
    table.add_row("seconds (POST → succeeded)", f"{result['seconds']:.1f} s")
    table.add_row("  accepted after (pseudonymize + checks)", f"{result['accept_seconds']:.1f} s")
    steps = job["summary"]
    for key, label in (("lookup_seconds", "read own records, chunk, Merkle root"),
                       ("key_and_plan_seconds", "job key pair, batch plan"),
                       ("own_shares_seconds", "own shares (vectorized)"),
                       ("consent_and_open_seconds", "consent in the ledger, open the hops"),
                       ("route_seconds", "chunks: route, decrypt, score"),
                       ("results_seconds", "write results.parquet")):
        table.add_row(f"  {label}", f"{steps[key]:.1f} s")
    table.add_row("subjects per second", f"{result['subjects_per_s']:,.0f}")
    table.add_row("chunks of 4,096", str(job["chunks"]))
    check_ = result["check"]
    table.add_row("integer exposures exact", "yes" if check_["exposures_exact"] else "NO")
    table.add_row("max |logit error| / scores differing",
                  f"{check_['max_abs_logit_error']:.1e} / {check_['score_mismatches']}")
    cpu = result["cpu_during_job"]
    if cpu:
        table.add_row("CPU cores busy (ours / others)",
                      f"{cpu['alliance_and_bench_cores']:.2f} / {cpu['other_processes_cores']:.2f}"
                      f" of {cpu['cores']}")
    rss = {k: v for k, v in result["peak_rss_mib"].items() if v is not None}
    table.add_row("peak RSS", ", ".join(f"{k} {v:.0f} MiB" for k, v in rss.items()))
    console.print(table)
    base = Table(title="Baselines, same run (per-subject ones extrapolated from a sample)")
    base.add_column("way")
    base.add_column(f"seconds for {result['subjects']:,}", justify="right")
    base.add_column("vs ours", justify="right")
    for row in result["baselines"].values():
        base.add_row(row["label"], f"{row['seconds']:,.1f}", f"{row['ratio_to_ours']:.2f}x")
    console.print(base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--baseline-evals", type=int, default=20,
                        help="subjects for the per-subject Paillier baselines (0: skip)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 110))
    temp = None
    workdir = args.workdir
    if workdir is None:
        temp = tempfile.TemporaryDirectory(prefix="fedcredit-portfolio-")
        workdir = Path(temp.name)
    result: dict[str, Any] = {
        "subjects": args.subjects, "institutions": 3, "seed": args.seed,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
    }
    try:
        with console.status("generating the population…"):
            population = generate(int(args.subjects * 1.5) + 1000, 3, args.seed)
        bank = next(i for i in population.institutions if i.profile.member_id == REQUESTER)
        rows = np.flatnonzero(bank.has_record)[: args.subjects]
        if len(rows) < args.subjects:
            raise SystemExit(f"only {len(rows)} customers generated")
        identifiers = [population.identifiers[i] for i in rows]
        alliance = population_alliance(population, workdir)
        with console.status("loading the three feature stores (untimed)…"):
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(alliance.load_features, alliance.nodes))
            alliance.nodes = [replace(s, features_file=None) for s in alliance.nodes]
        try:
            with console.status("starting the coordinator and three nodes…"):
                alliance.start()
            run = run_job(alliance, identifiers, console)
            result["peak_rss_mib"] = {
                proc.name: peak_rss_mib(proc.popen.pid)
                for proc in [*alliance.node_procs.values(), alliance.coordinator]
                if proc is not None}
        finally:
            with console.status("stopping the alliance…"):
                alliance.stop()
        table = run.pop("table")
        result.update(run)
        result["subjects_per_s"] = args.subjects / run["seconds"]
        with console.status("checking every row against the pooled computation…"):
            result["check"] = check(population, rows, table)
        plain = pooled_seconds(population, rows)
        result["baselines"] = {"pooled_plaintext": {
            "label": "pooled plaintext (numpy, no privacy)", "seconds": plain}}
        if args.baseline_evals:
            sample = [int(i) for i in rows[:: max(1, len(rows) // args.baseline_evals)]][
                : args.baseline_evals]
            crypto = crypto_baselines(population, sample, console)
            for name, label in (("recipe", "per-subject packed Paillier (online path)"),
                                ("naive_phe", "per-subject naive phe")):
                result["baselines"][name] = {
                    "label": label, "per_subject_ms": crypto[name]["total_ms"],
                    "seconds": crypto[name]["total_ms"] / 1000 * args.subjects}
        for row in result["baselines"].values():
            row["ratio_to_ours"] = row["seconds"] / result["seconds"]
        render(console, result)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
            console.print(f"results written to {args.json}")
    finally:
        if temp is not None:
            temp.cleanup()
    return 0 if result.get("check", {}).get("exposures_exact") else 1


if __name__ == "__main__":
    sys.exit(main())
