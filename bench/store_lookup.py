"""Benchmark: the feature store's load time and online lookup latency, SQLite and PostgreSQL.

    python bench/store_lookup.py --subjects 1000000 --backend both --json out.json

Writes one synthetic snapshot (``--subjects`` rows, ``--features`` float features with about
15 % absent values, the six exposures) straight with pyarrow in 100k-row chunks, then for each
backend opens an empty store, loads the snapshot (timed: verification, rows, index, activation
— what ``load_snapshot`` does) and measures ``--lookups`` single lookups through
``FeatureStore.lookup`` (half pseudonyms in the snapshot, half not, shuffled; after a 2,000
lookup warm-up), each timed on its own with ``perf_counter_ns``. Every hit must return a record
and every miss ``None``.

PostgreSQL runs as a private server started for the run (:mod:`node.store.pg_local`: default
settings, fsync on) and reached over TCP on loopback; SQLite is a file in the work dir (WAL,
``synchronous=FULL``). Both are measured from one Python thread, one lookup at a time.

The JSON holds per backend ``load_s``, ``rows_per_s``, ``p50_us``/``p90_us``/``p99_us``/``max_us``
(all lookups, and hits and misses apart) and ``disk_mib`` (SQLite: the database file and its WAL;
PostgreSQL: the schema's tables and indexes), plus the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from machine import load_average, machine_info, peak_rss_mib
from rich.console import Console
from rich.table import Table

from node.ingest.snapshot import (
    DATA_DIR_NAME,
    EXPOSURE_COLUMNS,
    PSEUDONYM_BYTES,
    FeatureStats,
    finish_snapshot,
    new_snapshot_id,
    subjects_schema,
)
from node.store import open_store
from node.store.pg_local import start_local_postgres

CHUNK_ROWS = 100_000
WARMUP_LOOKUPS = 2_000
MEMBER = "bench"


@dataclass
class RunningStats:
    """Per-feature count, nulls, sums and extremes over chunks (the manifest's statistics)."""

    count: int = 0
    nulls: int = 0
    total: float = 0.0
    squares: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, values: np.ndarray[Any, Any]) -> None:
        present = values[~np.isnan(values)]
        self.count += len(present)
        self.nulls += len(values) - len(present)
        if len(present):
            self.total += float(present.sum())
            self.squares += float((present * present).sum())
            self.low, self.high = min(self.low, present.min()), max(self.high, present.max())

    def stats(self, name: str) -> FeatureStats:
        if not self.count:
            return FeatureStats(name, 0, self.nulls, None, None, None, None)
        mean = self.total / self.count
        std = math.sqrt(max(self.squares / self.count - mean * mean, 0.0))
        return FeatureStats(name, self.count, self.nulls, mean, std, float(self.low),
                            float(self.high))


def write_synthetic_snapshot(root: Path, subjects: int, features: int, lookups: int,
                             rng: np.random.Generator) -> tuple[Path, list[bytes]]:
    """The snapshot directory, and ``lookups // 2`` pseudonyms drawn from it."""
    created = datetime.now(UTC)
    directory = root / new_snapshot_id(created)
    (directory / DATA_DIR_NAME).mkdir(parents=True)
    names = tuple(f"f{i:02d}" for i in range(features))
    schema = subjects_schema(names)
    sample = set(rng.choice(subjects, size=min(lookups // 2, subjects), replace=False).tolist())
    hits: list[bytes] = []
    running = [RunningStats() for _ in names]
    path = directory / DATA_DIR_NAME / "part-00000.parquet"
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, subjects, CHUNK_ROWS):
            n = min(CHUNK_ROWS, subjects - start)
            raw = np.frombuffer(rng.bytes(PSEUDONYM_BYTES * n), dtype=f"V{PSEUDONYM_BYTES}")
            pseudonyms = raw.tolist()
            hits += [pseudonyms[i - start] for i in sample if start <= i < start + n]
            columns: dict[str, pa.Array] = {"pseudonym": pa.array(pseudonyms, pa.binary())}
            for name in EXPOSURE_COLUMNS:
                columns[name] = pa.array(rng.integers(0, 50_000, size=n), pa.int64())
            for stats, name in zip(running, names, strict=True):
                values = rng.normal(size=n)
                values[rng.random(n) < 0.15] = np.nan
                stats.add(values)
                columns[name] = pa.array(values, pa.float64(), from_pandas=True)  # NaN -> null
            writer.write_table(pa.table(columns, schema=schema))
    finish_snapshot(directory, subjects=subjects,
                    stats=tuple(s.stats(n) for s, n in zip(running, names, strict=True)),
                    member_id=MEMBER, as_of=created.date().isoformat(), mode="feature_table",
                    sources=(), pipeline={"tool": "bench/store_lookup.py"}, created=created)
    return directory, hits


def percentiles(values_ns: list[int]) -> dict[str, float]:
    us = np.asarray(values_ns, dtype=np.float64) / 1000
    return {"p50_us": round(float(np.percentile(us, 50)), 1),
            "p90_us": round(float(np.percentile(us, 90)), 1),
            "p99_us": round(float(np.percentile(us, 99)), 1),
            "max_us": round(float(us.max()), 1)}


def measure(url: str, snapshot: Path, hits: list[bytes], rng: np.random.Generator,
            console: Console) -> dict[str, Any]:
    store = open_store(url, MEMBER)
    try:
        with console.status("loading the snapshot…") as status:
            started = time.perf_counter()
            info = store.load_snapshot(
                snapshot, progress=lambda rows: status.update(f"loading: {rows:,} rows"))
            load_s = time.perf_counter() - started
        misses = [rng.bytes(PSEUDONYM_BYTES) for _ in hits]
        queries = [(p, True) for p in hits] + [(p, False) for p in misses]
        order = rng.permutation(len(queries))
        for i in range(WARMUP_LOOKUPS):
            store.lookup(queries[order[i % len(order)]][0])
        timings: dict[bool, list[int]] = {True: [], False: []}
        wrong = 0
        for index in order:
            pseudonym, present = queries[index]
            t0 = time.perf_counter_ns()
            record = store.lookup(pseudonym)
            timings[present].append(time.perf_counter_ns() - t0)
            wrong += (record is None) == present
    finally:
        store.close()
    return {
        "subjects": info.subjects,
        "load_s": round(load_s, 2),
        "rows_per_s": round(info.subjects / load_s),
        "lookups": len(queries),
        "wrong_answers": wrong,
        **percentiles(timings[True] + timings[False]),
        "hits": percentiles(timings[True]),
        "misses": percentiles(timings[False]),
    }


def disk_mib(paths: list[Path]) -> float:
    total = 0
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        total += sum(p.stat().st_size for p in files)
    return round(total / 2**20, 1)


def postgres_mib(url: str, schema: str) -> float:
    """Tables and indexes of the store's schema (the server's WAL and catalogs aside)."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "AND c.relkind = 'r'", (schema,)).fetchone()
    return round(int(row[0] if row else 0) / 2**20, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=25)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    console = Console(width=max(Console().width, 130))
    rng = np.random.default_rng(args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fedcredit-store-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    load_before = load_average()
    try:
        with console.status(f"writing a {args.subjects:,}-subject snapshot…"):
            started = time.perf_counter()
            snapshot, hits = write_synthetic_snapshot(workdir / "snapshots", args.subjects,
                                                      args.features, args.lookups, rng)
        console.print(f"snapshot {snapshot.name}: {args.subjects:,} subjects, "
                      f"{args.features} features, {disk_mib([snapshot])} MiB Parquet "
                      f"(written in {time.perf_counter() - started:.1f} s)")
        if args.backend in ("sqlite", "both"):
            db = workdir / "features.sqlite3"
            results["sqlite"] = measure(f"sqlite://{db}", snapshot, hits, rng, console)
            results["sqlite"]["disk_mib"] = disk_mib(list(workdir.glob("features.sqlite3*")))
        if args.backend in ("postgres", "both"):
            server = start_local_postgres()
            try:
                results["postgres"] = measure(server.url() + "?schema=bench", snapshot, hits,
                                              rng, console)
                results["postgres"]["disk_mib"] = postgres_mib(server.url(), "bench")
            finally:
                server.stop()
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    table = Table(title=f"feature store: {args.subjects:,} subjects, {args.features} features, "
                        f"{args.lookups:,} lookups (half hits)")
    for column in ("backend", "load s", "rows/s", "p50 µs", "p90 µs", "p99 µs", "max µs",
                   "hit p99 µs", "miss p99 µs", "disk MiB", "wrong"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    for name, r in results.items():
        table.add_row(name, f"{r['load_s']:.1f}", f"{r['rows_per_s']:,}", f"{r['p50_us']:.0f}",
                      f"{r['p90_us']:.0f}", f"{r['p99_us']:.0f}", f"{r['max_us']:.0f}",
                      f"{r['hits']['p99_us']:.0f}", f"{r['misses']['p99_us']:.0f}",
                      f"{r['disk_mib']:,}", str(r["wrong_answers"]))
    console.print(table)
    console.print(f"load average before/after: {load_before} / {load_average()} "
                  f"on {machine_info()['nproc']} cores (other work skews the latencies)")
    doc = {
        "benchmark": "store_lookup",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "subjects": args.subjects, "features": args.features, "lookups": args.lookups,
        "seed": args.seed,
        "results": results,
        "peak_rss_mib": peak_rss_mib(os.getpid()),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "machine": machine_info(),
    }
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        console.print(f"wrote {args.json}")
    return 1 if any(r["wrong_answers"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
