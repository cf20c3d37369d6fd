"""Benchmark: joint evaluations through the lender REST API, against in-process baselines.

    python bench/evaluate.py --nodes 3 --seconds 30 --json out.json

Starts a coordinator and ``--nodes`` member nodes as separate processes on loopback (the same
:class:`~fedcredit.launcher.LocalAlliance` the demo and the end-to-end tests use), warms up,
then for ``--seconds`` keeps ``--concurrency`` lender clients busy posting
``POST /v1/evaluations``, rotating the requester across members (closed loop: the most the
alliance serves). With ``--rate R`` the load is open instead: requests are due at a steady R
per second whatever the answers, on up to ``--concurrency`` clients, and each latency counts
from the moment its request was due — a request that waits for a free client waits on the
clock (no coordinated omission). Reports p50/p99 latency, throughput (successful evaluations
per second) and errors (non-201 responses and exceptions). Every successful report is also
checked against the pooled plaintext computation.

After the alliance is stopped (so the baselines do not compete with idle servers), the same run
measures two in-process baselines on the same subjects:

* **pooled plaintext** — the same joint result (logit, exposures, score/grade) computed directly
  over the pooled data, as :func:`fedcredit.demo.population.pooled_result` does;
* **crypto, recipe vs naive phe** — the encrypted secure sum of one evaluation, mirroring the wire
  path (every member except the requester encrypts its contribution vector and adds it to the
  accumulator; the requester decrypts and adds its own share in the clear), done once with our
  :mod:`mpc.secure_sum` recipe (``accumulate`` / ``decrypt_total``) and once with
  python-paillier's high-level ``EncryptedNumber`` API (``encrypt`` per field, ``+``,
  ``decrypt``). Same 2048-bit key, same members, same vectors; the two are interleaved.

The JSON holds ``p50_ms``, ``p99_ms``, ``throughput_per_s`` and ``errors`` at the top level, plus
counts, server-side timings, each process's CPU milliseconds per evaluation
(``cpu_ms_per_evaluation``: coordinator, each node, the bench client), the machine, the date,
the baselines and their ratios.
"""

from __future__ import annotations

import argparse
import csv
import gc
import http.client
import itertools
import json
import os
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from baselines import crypto_baselines, pooled_plaintext_ms
from machine import (
    CpuSnapshot,
    cpu_ms_per_unit,
    cpu_usage,
    load_average,
    machine_info,
    peak_rss_mib,
    usable_cores,
)
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedcredit.demo.population import (
    MAX_NODES,
    Population,
    generate,
    pooled_result,
    population_alliance,
)
from fedcredit.demo.runner import evaluation_body, matches_expected
from fedcredit.launcher import LocalAlliance

REQUEST_TIMEOUT_S = 60.0


# -- load phase ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    requester: str
    latency_ms: float
    ok: bool
    error: str | None = None
    exact: bool | None = None
    timings: dict[str, float] | None = None
    #: When the request was sent (or due, in the open loop), on time.perf_counter()'s clock.
    sent_at: float = 0.0


@dataclass
class LoadState:
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)

    def snapshot(self) -> tuple[int, int, float | None]:
        with self.lock:
            ok = [s.latency_ms for s in self.samples if s.ok]
            errors = len(self.samples) - len(ok)
        return len(ok), errors, (float(np.median(ok)) if ok else None)


class LenderClient:
    """The lender applications' side: keep-alive HTTP/1.1 from the standard library, one
    connection per node. The load generator shares the machine's cores with the alliance, so
    it should cost as little as it can (httpx cost about 1.6 times as much CPU per request:
    1.0 to 1.1 against 0.6 to 0.7 ms in bench runs on this machine)."""

    def __init__(self, headers: dict[str, str], timeout_s: float) -> None:
        self._headers = {**headers, "Content-Type": "application/json"}
        self._timeout_s = timeout_s
        self._connections: dict[str, http.client.HTTPConnection] = {}

    def post_json(self, base_url: str, path: str, body: Any) -> tuple[int, Any]:
        """POST ``body`` as JSON; the status and the decoded reply (None if not JSON). A
        failed connection is dropped (the next request opens a new one) and re-raised."""
        connection = self._connections.get(base_url)
        if connection is None:
            url = urlsplit(base_url)
            connection = self._connections[base_url] = http.client.HTTPConnection(
                url.hostname or "127.0.0.1", url.port, timeout=self._timeout_s)
        try:
            connection.request("POST", path, json.dumps(body).encode(), self._headers)
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            del self._connections[base_url]
            raise
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, None

    def __enter__(self) -> LenderClient:
        return self

    def __exit__(self, *_: object) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()


def one_evaluation(
    client: LenderClient, alliance: LocalAlliance, population: Population, requester: str,
    index: int, rng: np.random.Generator, check: bool, due: float | None = None,
) -> Sample:
    """One POST; its latency from ``due`` (the open loop's schedule) when given, else from
    the moment it is sent."""
    body = evaluation_body(population.identifiers[index], population.id_type.value, index, rng)
    started = time.perf_counter() if due is None else due
    try:
        status, reply = client.post_json(alliance.http_url(requester), "/v1/evaluations", body)
    except Exception as exc:  # every failure is an error sample
        latency = (time.perf_counter() - started) * 1000
        return Sample(requester, latency, False, error=type(exc).__name__, sent_at=started)
    latency = (time.perf_counter() - started) * 1000
    if status != 201:
        code = ""
        try:
            code = reply["error"]["code"]
        except Exception:  # the error body is best effort
            pass
        error = f"HTTP {status} {code}".strip()
        return Sample(requester, latency, False, error=error, sent_at=started)
    report = reply
    exact = matches_expected(pooled_result(population, index), report) if check else None
    return Sample(requester, latency, True, exact=exact, timings=report.get("timings"),
                  sent_at=started)


def run_load(
    alliance: LocalAlliance, population: Population, seconds: float, concurrency: int,
    warmup: int, seed: int, check: bool, console: Console, rate: float | None = None,
    warmup_seconds: float = 0.0,
) -> tuple[list[Sample], float, dict[str, float] | None, dict[str, float] | None]:
    members = [n.member_id for n in alliance.nodes]
    headers = {"X-API-Key": alliance.api_key}
    turn = itertools.count()
    turn_lock = threading.Lock()

    def next_requester() -> str:
        with turn_lock:
            return members[next(turn) % len(members)]

    # Warm-up: every member serves at least one request (gRPC channels, key caches, imports).
    warm_rng = np.random.default_rng(seed + 100)
    with LenderClient(headers, REQUEST_TIMEOUT_S) as client, console.status(
        f"warming up ({max(warmup, len(members))} evaluations)…"
    ):
        for k in range(max(warmup, len(members))):
            index = int(warm_rng.integers(len(population.identifiers)))
            sample = one_evaluation(client, alliance, population, members[k % len(members)],
                                    index, warm_rng, check=False)
            if not sample.ok:
                console.print(f"[yellow]warm-up request failed: {sample.error}[/]")

    def drive(state: LoadState, seconds: float, phase_seed: int, check: bool,
              progress: Progress | None) -> float:
        """``seconds`` of the load (closed loop, or the open loop's schedule) into ``state``;
        the elapsed time, requests in flight at the deadline included."""
        slots = itertools.count()
        slot_lock = threading.Lock()
        started = time.perf_counter()
        deadline = started + seconds

        def worker(worker_id: int) -> None:
            rng = np.random.default_rng([phase_seed, worker_id])
            with LenderClient(headers, REQUEST_TIMEOUT_S) as client:
                while not state.stop.is_set():
                    due = None
                    if rate is not None:  # request k is due at started + k / rate
                        with slot_lock:
                            due = started + next(slots) / rate
                        # Every request due before the deadline is sent, however late a
                        # busy client gets to it (its lateness counts in its latency).
                        if due >= deadline or state.stop.wait(
                                max(0.0, due - time.perf_counter())):
                            return
                    elif time.perf_counter() >= deadline:
                        return
                    index = int(rng.integers(len(population.identifiers)))
                    state.add(one_evaluation(client, alliance, population, next_requester(),
                                             index, rng, check, due))

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            task = None if progress is None else progress.add_task(
                "load", total=seconds, ok=0, errors=0, p50="-")
            futures = [pool.submit(worker, w) for w in range(concurrency)]
            try:
                while not all(f.done() for f in futures):
                    time.sleep(0.25)
                    if progress is not None and task is not None:
                        ok, errors, p50 = state.snapshot()
                        progress.update(
                            task, completed=min(seconds, time.perf_counter() - started), ok=ok,
                            errors=errors, p50="-" if p50 is None else f"{p50:.0f} ms",
                        )
            finally:
                state.stop.set()
            for f in futures:
                f.result()
            if progress is not None and task is not None:
                progress.update(task, completed=seconds)
        return time.perf_counter() - started

    if warmup_seconds > 0:
        # The same load, untimed: what a node builds on first use under load (a requester's
        # fixed-base table and obfuscator pool, channels to the hops of each tree, threads) is
        # a start-up cost, not the sustained rate's.
        warm = LoadState()
        with console.status(f"warming up under the same load for {warmup_seconds:g} s…"):
            drive(warm, warmup_seconds, seed + 300, False, None)
        failed = sum(1 for s in warm.samples if not s.ok)
        if failed:
            console.print(f"[yellow]{failed} of {len(warm.samples)} warm-up requests failed[/]")

    state = LoadState()
    names = {os.getpid(): "bench client",
             **{p.popen.pid: p.name for p in alliance.node_procs.values()}}
    if alliance.coordinator is not None:
        names[alliance.coordinator.popen.pid] = "coordinator"
    pids = list(names)
    progress = Progress(
        TextColumn("[bold]load[/]"), BarColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[ok]} ok · {task.fields[errors]} errors · p50 {task.fields[p50]}"),
        console=console, transient=False,
    )
    # This process's own garbage collector stays out of the timed phase: a full collection here
    # (the population, numpy, pandas, rich: a few hundred thousand objects) stopped every
    # client for ~100 ms about 50 s into each run, and the alliance got the blame (a latency
    # episode in the samples). What start-up built is frozen; the rest waits for the end.
    gc.collect()
    gc.freeze()
    gc.disable()
    cpu_before = CpuSnapshot.take(pids)
    try:
        with progress:
            elapsed = drive(state, seconds, seed, check, progress)
    finally:
        gc.enable()
        gc.unfreeze()
    cpu_after = CpuSnapshot.take(pids)
    cpu = cpu_usage(cpu_before, cpu_after, elapsed, usable_cores())
    per_eval = cpu_ms_per_unit(cpu_before, cpu_after, names,
                               sum(1 for s in state.samples if s.ok))
    return state.samples, elapsed, cpu, per_eval


# -- baselines -------------------------------------------------------------------------------
# -- report ----------------------------------------------------------------------------------
def write_samples(path: Path, samples: list[Sample]) -> None:
    """One row per timed request, in the order sent; ``sent_s`` counts from the first."""
    ordered = sorted(samples, key=lambda s: s.sent_at)
    origin = ordered[0].sent_at if ordered else 0.0
    keys = ("plan_ms", "route_ms", "decrypt_ms", "total_ms")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(("sent_s", "requester", "ok", "latency_ms", *keys, "error"))
        for sample in ordered:
            timings = sample.timings or {}
            out.writerow((f"{sample.sent_at - origin:.4f}", sample.requester, int(sample.ok),
                          f"{sample.latency_ms:.3f}", *(timings.get(k, "") for k in keys),
                          sample.error or ""))


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(samples: list[Sample], elapsed: float) -> dict[str, Any]:
    ok = [s for s in samples if s.ok]
    latencies = [s.latency_ms for s in ok]
    server: dict[str, float] = {}
    with_timings = [s.timings for s in ok if s.timings]
    for key in ("plan_ms", "route_ms", "decrypt_ms", "total_ms"):
        values = [t[key] for t in with_timings if key in t]
        if values:
            server[key] = float(np.median(values))
    per_requester = Counter(s.requester for s in ok)
    return {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "throughput_per_s": len(ok) / elapsed if elapsed > 0 else 0.0,
        "errors": len(samples) - len(ok),
        "count": len(samples),
        "ok": len(ok),
        "mismatches": sum(1 for s in ok if s.exact is False),
        "mean_ms": float(np.mean(latencies)) if latencies else None,
        "min_ms": min(latencies) if latencies else None,
        "max_ms": max(latencies) if latencies else None,
        "elapsed_s": elapsed,
        "error_kinds": dict(Counter(s.error for s in samples if not s.ok)),
        "per_requester": dict(sorted(per_requester.items())),
        "server_timings_p50_ms": server,
    }


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def render(console: Console, result: dict[str, Any]) -> None:
    load = (f"open loop at {result['rate']:g}/s on up to {result['concurrency']} clients"
            if result.get("rate") else f"concurrency {result['concurrency']}")
    title = (f"Joint evaluations via REST — {result['nodes']} nodes, {result['route_mode']} "
             f"routes, {load}, {result['seconds']:g} s")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("evaluations (ok / total)", f"{result['ok']} / {result['count']}")
    table.add_row("errors", str(result["errors"]))
    table.add_row("mismatches vs pooled", str(result["mismatches"]))
    table.add_row("p50 latency", fmt(result["p50_ms"], " ms"))
    table.add_row("p99 latency", fmt(result["p99_ms"], " ms"))
    table.add_row("mean / max latency",
                  f"{fmt(result['mean_ms'], ' ms')} / {fmt(result['max_ms'], ' ms')}")
    table.add_row("throughput", fmt(result["throughput_per_s"], " eval/s", 2))
    server = result["server_timings_p50_ms"]
    if server:
        table.add_row("server p50: plan / route / decrypt",
                      " / ".join(fmt(server.get(k), " ms") for k in
                                 ("plan_ms", "route_ms", "decrypt_ms")))
    cpu = result.get("cpu_during_load")
    if cpu:
        table.add_row("CPU cores busy: ours / other processes",
                      f"{cpu['alliance_and_bench_cores']:.2f} / "
                      f"{cpu['other_processes_cores']:.2f} of {cpu['cores']}")
    per_eval = result.get("cpu_ms_per_evaluation")
    if per_eval:
        nodes = [v for k, v in per_eval.items() if k not in ("coordinator", "bench client")]
        alliance_ms = sum(nodes) + per_eval.get("coordinator", 0.0)
        table.add_row("CPU per evaluation: alliance (coordinator + nodes) / bench client",
                      f"{alliance_ms:.1f} ms ({per_eval.get('coordinator', 0.0):.1f} + "
                      f"{len(nodes)} x {sum(nodes) / max(1, len(nodes)):.1f}) / "
                      f"{per_eval.get('bench client', 0.0):.1f} ms")
    rss = {k: v for k, v in (result.get("peak_rss_mib") or {}).items() if v is not None}
    if rss:
        table.add_row("peak RSS per process",
                      ", ".join(f"{name} {mib:.0f} MiB" for name, mib in rss.items()))
    if result.get("loadavg_before") and result.get("loadavg_after"):
        table.add_row("machine load avg (1 min) before / after",
                      f"{result['loadavg_before'][0]:.2f} / {result['loadavg_after'][0]:.2f}")
    console.print(table)
    if result["error_kinds"]:
        console.print(f"[red]errors by kind:[/] {result['error_kinds']}")

    baselines = result.get("baselines")
    if not baselines:
        return
    crypto = baselines["crypto"]
    pooled = baselines["pooled_plaintext"]
    ratios = result["ratios"]
    table = Table(title=(
        f"Baselines (same run, in-process, {crypto['members']} members: "
        f"{crypto['contributors_per_eval']} encrypt x {crypto['fields']} fields — packed in "
        f"{crypto['ciphertexts_encrypted_per_eval']} ciphertext(s) by the recipe, "
        f"{crypto['naive_ciphertexts_encrypted_per_eval']} by naive phe — "
        f"{crypto['key_bits']}-bit key, median of {crypto['evals']})"))
    for column in ("per evaluation", "encrypt+add", "decrypt", "total", "ratio"):
        table.add_column(column, justify="left" if column == "per evaluation" else "right")
    table.add_row("REST end-to-end (p50)", "", "", fmt(result["p50_ms"], " ms"), "1.00x")
    table.add_row("pooled plaintext", "", "", fmt(pooled["per_eval_ms"], " ms", 4),
                  f"REST is {fmt(ratios['p50_over_pooled_plaintext'], 'x', 0)} slower")
    for name, label in (("recipe", "mpc.secure_sum recipe"),
                        ("naive_phe", "naive phe EncryptedNumber")):
        row = crypto[name]
        share = row["total_ms"] / result["p50_ms"] * 100 if result["p50_ms"] else None
        table.add_row(label, fmt(row["encrypt_add_ms"], " ms"), fmt(row["decrypt_ms"], " ms"),
                      fmt(row["total_ms"], " ms"), fmt(share, "% of p50", 0))
    console.print(table)
    speedup = ratios["naive_phe_over_recipe"]
    verdict = ("faster than" if speedup > 1.05 else "slower than" if speedup < 0.95
               else "within +/-5% of (so no faster than)")
    console.print(
        f"naive phe / recipe crypto time = [bold]{speedup:.2f}x[/]: our recipe is {verdict} "
        f"the naive EncryptedNumber version ({crypto['disagreements']} disagreements)."
    )


# -- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3, help=f"members, 3..{MAX_NODES}")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed load duration")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="parallel lender clients (with --rate: the most in flight)")
    parser.add_argument("--rate", type=float,
                        help="open loop: evaluations due per second, whatever the answers "
                             "(latency counted from each one's due time)")
    parser.add_argument("--route-mode", choices=("auto", "chain", "tree"), default="auto",
                        help="the alliance policy's route shape (auto: TREE from 4 members)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests first")
    parser.add_argument("--warmup-seconds", type=float, default=0.0,
                        help="then this long under the timed phase's own load, untimed")
    parser.add_argument("--subjects", type=int, default=3000, help="synthetic population")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--baseline-evals", type=int, default=30,
                        help="evaluations for the in-process crypto baselines (0: skip)")
    parser.add_argument("--no-check", action="store_true",
                        help="do not compare each report with the pooled plaintext result")
    parser.add_argument("--workdir", type=Path, help="keep data and logs here")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--samples", type=Path,
                        help="write every timed request here as CSV (when it was sent, its "
                             "latency, the server's timings): for plotting and for stalls")
    args = parser.parse_args(argv)
    if not 3 <= args.nodes <= MAX_NODES:
        parser.error(f"--nodes must be between 3 and {MAX_NODES}")
    if args.seconds <= 0 or args.concurrency < 1 or args.warmup < 0 or args.baseline_evals < 0:
        parser.error("--seconds and --concurrency must be positive, counts non-negative")
    if args.warmup_seconds < 0:
        parser.error("--warmup-seconds must not be negative")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=max(Console().width, 110))
    temp = None
    workdir = args.workdir
    if workdir is None:
        temp = tempfile.TemporaryDirectory(prefix="fedcredit-bench-")
        workdir = Path(temp.name)
    result: dict[str, Any] = {
        "nodes": args.nodes,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "route_mode": args.route_mode,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "warmup_seconds": args.warmup_seconds,
        "subjects": args.subjects,
        "seed": args.seed,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
    }
    try:
        with console.status("generating the synthetic alliance population…"):
            population = generate(args.subjects, args.nodes, args.seed)
        alliance = population_alliance(population, workdir)
        alliance.extra_coordinator_env["FEDCREDIT_COORDINATOR_ROUTE_MODE"] = args.route_mode
        try:
            with console.status(f"starting the coordinator and {args.nodes} nodes…"):
                alliance.start()
            result["loadavg_before"] = load_average()
            samples, elapsed, cpu, per_eval = run_load(
                alliance, population, args.seconds, args.concurrency, args.warmup, args.seed,
                not args.no_check, console, args.rate, args.warmup_seconds)
            result["peak_rss_mib"] = {
                proc.name: peak_rss_mib(proc.popen.pid)
                for proc in [*alliance.node_procs.values(), alliance.coordinator]
                if proc is not None
            }
        finally:
            with console.status("stopping the alliance…"):
                alliance.stop()
        result["loadavg_after"] = load_average()
        result.update(summarize(samples, elapsed))
        if args.samples is not None:
            write_samples(args.samples, samples)
        result["cpu_during_load"] = cpu
        # Per successful evaluation, each process (the nodes also serve as each other's hops).
        result["cpu_ms_per_evaluation"] = per_eval

        if args.baseline_evals:
            rng = np.random.default_rng(args.seed + 200)
            indices = [int(i) for i in rng.choice(len(population.identifiers),
                                                  size=args.baseline_evals, replace=False)]
            cpu_before = CpuSnapshot.take([os.getpid()])
            started = time.perf_counter()
            pooled = pooled_plaintext_ms(population, indices)
            crypto = crypto_baselines(population, indices, console)
            crypto["cpu_during_baselines"] = cpu_usage(
                cpu_before, CpuSnapshot.take([os.getpid()]), time.perf_counter() - started,
                usable_cores())
            result["baselines"] = {"pooled_plaintext": pooled, "crypto": crypto}
            p50 = result["p50_ms"]
            result["ratios"] = {
                "p50_over_pooled_plaintext": p50 / pooled["per_eval_ms"] if p50 else None,
                "naive_phe_over_recipe":
                    crypto["naive_phe"]["total_ms"] / crypto["recipe"]["total_ms"],
                "recipe_crypto_share_of_p50":
                    crypto["recipe"]["total_ms"] / p50 if p50 else None,
            }
            result["ratio"] = result["ratios"]["naive_phe_over_recipe"]
        render(console, result)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
            console.print(f"results written to {args.json}")
    finally:
        if temp is not None:
            temp.cleanup()
    failed = result.get("ok", 0) == 0 or result.get("mismatches", 0) > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
