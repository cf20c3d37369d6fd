"""Ingest benchmark: generate one institution's raw tables, run the Spark ingest, load the
snapshot into the online store and time lookups.

    python bench/ingest.py --subjects 1000000 --json bench-ingest.json

Targets (2 cores): 1M subjects / 10M transactions ingested in ≤ 5 minutes with local[2]; store
lookups p99 ≤ 1 ms at 1M subjects. Baselines in the same run: reading every raw table with
pyarrow and nothing else (the I/O floor of any ingest), and a Python dict lookup (the floor of
any store lookup); the ratios say how far above each floor we are.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import load_average, machine_info, peak_rss_mib

from fedcredit.synth.alliance import generate_alliance
from fedcredit.synth.spec import AllianceSpec
from mpc.pseudonym import SubjectKey
from node.ingest.config import load_ingest_config
from node.ingest.console import RichReporter
from node.ingest.pipeline import run_ingest
from node.ingest.snapshot import PSEUDONYM_COLUMN
from node.ingest.spark import descendants, spark_session, stop_spark
from node.store import open_store

LOOKUPS = 20_000


def sum_peak_rss(pids: list[int]) -> float:
    return round(sum(peak_rss_mib(p) or 0.0 for p in pids), 1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_lookups(lookup: Any, keys: list[bytes]) -> list[float]:
    out = []
    for key in keys:
        started = time.perf_counter_ns()
        lookup(key)
        out.append((time.perf_counter_ns() - started) / 1000)
    return out


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fedcredit-bench-ingest-"))
    raw = work / "raw"
    spec = AllianceSpec(subjects=args.subjects, institutions=1, seed=args.seed,
                        dirty_rate=args.dirty_rate, spending_per_month=args.spending_per_month,
                        months=args.months)
    with console.status(f"generating {args.subjects:,} subjects (not timed as ingest)…"):
        started = time.monotonic()
        generated = generate_alliance(spec, raw, overwrite=True)
        generate_s = time.monotonic() - started
    member = generated.members[0].member_id
    raw_rows = sum(generated.members[0].rows.values())
    config = load_ingest_config(raw / member / "ingest.yaml")

    # Baseline 1: the I/O floor, every raw table read with pyarrow and nothing else.
    started = time.monotonic()
    for source in config.tables.values():
        pq.read_table(source.resolved_path(config.base_dir))
    read_floor_s = time.monotonic() - started

    key = SubjectKey.generate()
    started = time.monotonic()
    spark = spark_session(args.master, driver_memory=args.driver_memory,
                          shuffle_partitions=args.shuffle_partitions)
    spark_start_s = time.monotonic() - started
    try:
        with RichReporter(console) as reporter:
            result = run_ingest(spark, config, key, reporter=reporter)
        ingest_s = time.monotonic() - started
        jvm_and_workers = descendants(os.getpid())
        peak = sum_peak_rss([os.getpid(), *jvm_and_workers])
    finally:
        stop_spark(spark)

    store = open_store(f"sqlite:///{work / 'store.sqlite3'}", member_id=member)
    try:
        started = time.monotonic()
        store.load_snapshot(result.snapshot_dir)
        load_s = time.monotonic() - started
        table = pq.read_table(result.snapshot_dir / "subjects", columns=[PSEUDONYM_COLUMN])
        known = [bytes(p) for p in table.column(PSEUDONYM_COLUMN).to_pylist()]
        rng = random.Random(args.seed)
        keys = [rng.choice(known) if i % 2 == 0 else rng.randbytes(32) for i in range(LOOKUPS)]
        store.lookup(keys[0])  # warm the statement cache
        store_us = time_lookups(store.lookup, keys)
    finally:
        store.close()
    # Baseline 2: the floor of any lookup, a Python dict in this process.
    floor = dict.fromkeys(known, 1)
    dict_us = time_lookups(floor.get, keys)

    transactions = next((t.rows_in for t in result.tables if t.table == "transactions"), 0)
    return {
        "subjects": args.subjects,
        "subjects_out": result.manifest.subjects,
        "raw_rows": raw_rows,
        "transactions": transactions,
        "rejected_rows": sum(t.rejected_total for t in result.tables),
        "features": len(result.manifest.features),
        "seconds": round(ingest_s, 1),
        "spark_start_seconds": round(spark_start_s, 1),
        "rows_per_s": round(raw_rows / ingest_s),
        "peak_rss_mb": peak,
        "store_load_seconds": round(load_s, 1),
        "lookup_p50_us": round(percentile(store_us, 0.5), 1),
        "lookup_p99_us": round(percentile(store_us, 0.99), 1),
        "baseline_read_floor_seconds": round(read_floor_s, 1),
        "ingest_vs_read_floor": round(ingest_s / read_floor_s, 1),
        "baseline_dict_lookup_p99_us": round(percentile(dict_us, 0.99), 2),
        "generate_seconds": round(generate_s, 1),
        "master": args.master,
        "machine": machine_info(),
        "load_average": load_average(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/ingest.py " + " ".join(sys.argv[1:]),
    }


def render(console: Console, r: dict[str, Any]) -> None:
    table = Table(title=f"ingest benchmark: {r['subjects']:,} subjects, {r['raw_rows']:,} raw rows "
                  f"({r['transactions']:,} transactions), Spark {r['master']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target / baseline", justify="right")
    table.add_row("ingest wall time (incl. Spark start)", f"{r['seconds']:.1f} s", "≤ 300 s")
    table.add_row("rows per second", f"{r['rows_per_s']:,}", "")
    table.add_row("read floor (pyarrow reads only)", f"{r['baseline_read_floor_seconds']:.1f} s",
                  f"ingest = {r['ingest_vs_read_floor']}x floor")
    table.add_row("peak RSS (driver + JVM + workers)", f"{r['peak_rss_mb']:,.0f} MiB", "")
    table.add_row("store load (SQLite)", f"{r['store_load_seconds']:.1f} s", "")
    table.add_row("lookup p50", f"{r['lookup_p50_us']:.0f} µs", "")
    table.add_row("lookup p99", f"{r['lookup_p99_us']:.0f} µs",
                  f"≤ 1000 µs; dict floor {r['baseline_dict_lookup_p99_us']} µs")
    table.add_row("subjects out / rejected rows", f"{r['subjects_out']:,} / "
                  f"{r['rejected_rows']:,}", "")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dirty-rate", type=float, default=0.002)
    parser.add_argument("--spending-per-month", type=float, default=1.0,
                        help="spending debits per subject-month at the bank")
    parser.add_argument("--months", type=int, default=5,
                        help="months of history (5 with 1 spending debit a month: ~10 "
                        "transactions per subject, the 1M/10M target's shape)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    console = Console()
    result = run(args, console)
    render(console, result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
