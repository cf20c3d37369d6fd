"""Benchmark: CPU per unary call of gRPC Python's two servers, thread pool (ours) and asyncio.

    python bench/grpc_servers.py --calls 4000 --json out.json

Whether moving the Node and Coordinator services to ``grpc.aio`` would save CPU per call is a
question for a measurement, not a rewrite: this script serves gRPC's health service (the
smallest real handler) over mutual TLS from a separate server process, once with
``grpc.server(ThreadPoolExecutor)`` — what the nodes and the coordinator run — and once with
``grpc.aio.server()`` and an ``async`` handler, and drives each from this process with blocking
calls on one and on four threads, as our clients make them. It reports the server process's CPU
per call (from ``/proc``, so every thread of it counts, gRPC's own included) and the client's.
Every server kind runs ``--rounds`` times, interleaved, and the table shows each round (the
machine's speed drifts).

Baseline in the same run: the thread-pool server is the baseline the asyncio server is set
against (``ratio`` = asyncio / thread pool, below 1 means asyncio is cheaper).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from floor import self_signed
from grpc_health.v1 import health_pb2, health_pb2_grpc
from machine import machine_info
from rich.console import Console
from rich.table import Table

KINDS = ("threadpool", "asyncio")


class _Health(health_pb2_grpc.HealthServicer):
    def Check(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


class _AsyncHealth(health_pb2_grpc.HealthServicer):
    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def serve(kind: str, key_file: Path, cert_file: Path) -> None:
    """The server process: print the port, serve until killed."""
    key, cert = key_file.read_bytes(), cert_file.read_bytes()
    credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=cert,
                                              require_client_auth=True)
    if kind == "threadpool":
        server = grpc.server(futures.ThreadPoolExecutor(16))
        health_pb2_grpc.add_HealthServicer_to_server(_Health(), server)
        port = server.add_secure_port("127.0.0.1:0", credentials)
        server.start()
        print(port, flush=True)
        server.wait_for_termination()
        return

    async def main() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(_AsyncHealth(), server)
        port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        print(port, flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, threads: int, calls: int, key_file: Path,
            cert_file: Path) -> dict[str, float]:
    """Server and client CPU ms per call, and calls per second, for one server kind."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--key", str(key_file),
         "--cert", str(cert_file)], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        cert, key = cert_file.read_bytes(), key_file.read_bytes()
        channel = grpc.secure_channel(f"localhost:{port}",
                                      grpc.ssl_channel_credentials(cert, key, cert))
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        for _ in range(200):  # connection, TLS handshake, first-call costs
            stub.Check(request, timeout=5)
        server_before, client_before = process_cpu_s(server.pid), time.process_time()
        started = time.perf_counter()

        def run() -> None:
            for _ in range(calls // threads):
                stub.Check(request, timeout=5)

        workers = [threading.Thread(target=run) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        done = calls // threads * threads
        result = {
            "server_cpu_ms_per_call": (process_cpu_s(server.pid) - server_before) * 1000 / done,
            "client_cpu_ms_per_call": (time.process_time() - client_before) * 1000 / done,
            "calls_per_s": done / elapsed,
        }
        channel.close()
        return result
    finally:
        server.kill()
        server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4000, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cert", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.key, args.cert)
        return 0

    console = Console(width=110)
    key, cert = self_signed()
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"grpc-servers-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    key_file, cert_file = folder / "key.pem", folder / "cert.pem"
    key_file.write_bytes(key)
    cert_file.write_bytes(cert)
    runs: list[dict[str, Any]] = []
    try:
        with console.status("measuring…"):
            for round_ in range(1, args.rounds + 1):
                for threads in (1, 4):
                    for kind in KINDS:
                        runs.append({"round": round_, "kind": kind, "client_threads": threads,
                                     **measure(kind, threads, args.calls, key_file, cert_file)})
    finally:
        key_file.unlink()
        cert_file.unlink()
        folder.rmdir()

    table = Table(title="gRPC Python servers: CPU per unary call over mutual TLS")
    for column in ("round", "client threads", "server", "server CPU / call",
                   "client CPU / call", "calls/s"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for run in runs:
        table.add_row(str(run["round"]), str(run["client_threads"]), run["kind"],
                      f"{run['server_cpu_ms_per_call']:.3f} ms",
                      f"{run['client_cpu_ms_per_call']:.3f} ms", f"{run['calls_per_s']:.0f}")
    console.print(table)
    ratios = {}
    for threads in (1, 4):
        median = {kind: statistics.median(r["server_cpu_ms_per_call"] for r in runs
                                          if r["kind"] == kind and r["client_threads"] == threads)
                  for kind in KINDS}
        ratios[f"{threads}_threads"] = round(median["asyncio"] / median["threadpool"], 3)
        console.print(f"{threads} client thread(s): asyncio server CPU per call "
                      f"{median['asyncio']:.3f} ms vs thread pool {median['threadpool']:.3f} ms "
                      f"(ratio {ratios[f'{threads}_threads']:.2f})")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python", *sys.argv]),
            "machine": machine_info(),
            "runs": runs,
            "server_cpu_ratio_asyncio_over_threadpool": ratios,
        }, indent=2) + "\n")
        console.print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
