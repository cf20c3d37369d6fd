"""Benchmark: the CPU floor of one joint evaluation, from the parts it cannot do without.

    python bench/floor.py --json out.json

A 5-node evaluation on the TREE route makes a fixed number of calls and commits whatever the
application code around them does: one lender REST request, one ``PlanInquiry`` and four
``Contribute`` calls over mutual TLS, four 2048-bit Paillier encryptions (each a fresh DJN
obfuscator, which a pool only moves off the critical path) and one decryption (one CRT half:
the packed total is read modulo the larger prime), durable commits (the coordinator's plan +
consent and the requester's report; the requester's receipt and outbox entry and each hop's
outbox entry are written without waiting for the disk and synced by the outbox flusher once per
round, docs/security.md), ECDSA signatures and verifications (plan, consent, tree heads). This
script measures each of those parts alone on this machine — client and server in one process,
CPU time of every thread (``time.process_time``) — and multiplies by the counts, so the sum is
the least CPU an evaluation can cost with this stack before any of our own code runs. Set
against the target (``--target-per-s`` evaluations per second on the usable cores) it says
whether the target is reachable by trimming our code at all.

Baselines in the same run: the parts are the baseline; ``--measured-cpu-ms`` (from
``bench/evaluate.py``: cores busy x 1000 / throughput) is compared with the floor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from machine import machine_info, usable_cores
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from mpc.obfuscators import ObfuscatorPool
from mpc.paillier import PaillierKeyPair

#: Per 5-node TREE evaluation (requester + four members: a root with three children).
COUNTS: dict[str, float] = {
    "rest_request": 1,          # POST /v1/evaluations
    "grpc_mtls_call": 5,        # PlanInquiry + Contribute to the root + three children
    "paillier_decrypt": 1,      # the requester, once
    "paillier_encrypt": 4,      # each member: a fresh DJN obfuscator, then one multiplication
    "durable_commit": 2,        # coordinator's plan + consent, requester's report
    "ecdsa_sign": 3,            # plan, consent, the commit's tree head
    "ecdsa_verify": 11,         # plan 5x, consent 4x, tree head at the requester, + 1 batch
}


def cpu_per_op(op: Callable[[], object], n: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of ``op``, after a short warm-up."""
    for _ in range(min(20, n)):
        op()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        op()
    return ((time.process_time() - cpu) * 1000 / n, (time.perf_counter() - wall) * 1000 / n)


def self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))


def grpc_call(n: int) -> tuple[float, float]:
    """A unary call over mutual TLS (gRPC's health service: the smallest real handler)."""
    key, cert = self_signed()
    server = grpc.server(futures.ThreadPoolExecutor(8))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=cert, require_client_auth=True))
    server.start()
    channel = grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(
        cert, key, cert))
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest()
    try:
        return cpu_per_op(lambda: stub.Check(request, timeout=5), n)
    finally:
        channel.close()
        server.stop(0)


class Body(BaseModel):
    applicant: dict[str, str]
    consent: dict[str, str | int]
    requested_amount: float
    term_months: int


def rest_request(n: int) -> tuple[float, float]:
    """A JSON POST to a FastAPI route (sync handler, pydantic body and response) under
    uvicorn, from an httpx client on a kept-alive connection: the lender API's frame."""
    app = FastAPI()

    @app.post("/v1/evaluations", status_code=201)
    def create(body: Body) -> dict[str, Any]:
        return {"query_id": "q", "score": 612, "amount": body.requested_amount,
                "exposures": {f"field_{i}": i for i in range(12)}}

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    body = {"applicant": {"id_type": "cn_resident_id", "identifier": "11010519491231002X"},
            "consent": {"purpose": "origination", "reference": "loan-7",
                        "expires_unix_ms": 1_900_000_000_000},
            "requested_amount": 6000.0, "term_months": 12}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            return cpu_per_op(lambda: client.post("/v1/evaluations", json=body), n)
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def durable_commit(n: int, directory: Path) -> tuple[float, float]:
    """One INSERT committed with WAL and synchronous=FULL (how every store here writes)."""
    conn = sqlite3.connect(directory / "floor.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (body TEXT)")
    row = ("x" * 300,)
    try:
        return cpu_per_op(lambda: conn.execute("INSERT INTO t VALUES (?)", row), n)
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per network part")
    parser.add_argument("--target-per-s", type=float, default=100.0)
    parser.add_argument("--measured-cpu-ms", type=float,
                        help="CPU ms per evaluation measured by bench/evaluate.py, to compare")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    console = Console(width=110)

    keypair = PaillierKeyPair.generate(2048)
    ciphertext = keypair.public.raw_encrypt(12345)
    signing_key = ec.generate_private_key(ec.SECP256R1())
    message = b"x" * 600
    signature = signing_key.sign(message, ec.ECDSA(hashes.SHA256()))
    public = signing_key.public_key()
    parts: dict[str, tuple[float, float]] = {}
    with console.status("measuring the parts…"), tempfile.TemporaryDirectory() as tmp:
        parts["rest_request"] = rest_request(args.calls)
        parts["grpc_mtls_call"] = grpc_call(args.calls)
        # What the requester does: half a decryption (encoding v4's total fits below q/2).
        parts["paillier_decrypt"] = cpu_per_op(
            lambda: keypair.raw_decrypt_signed_small(ciphertext), 200)
        pool = ObfuscatorPool(keypair.public, 0)  # empty: every take computes one
        pool.take()  # builds the key's fixed-base table once, as a node does at start
        parts["paillier_encrypt"] = cpu_per_op(
            lambda: keypair.public.encrypt_with(12345, pool.take()), 500)
        parts["durable_commit"] = durable_commit(args.calls, Path(tmp))
        parts["ecdsa_sign"] = cpu_per_op(
            lambda: signing_key.sign(message, ec.ECDSA(hashes.SHA256())), args.calls)
        parts["ecdsa_verify"] = cpu_per_op(
            lambda: public.verify(signature, message, ec.ECDSA(hashes.SHA256())), args.calls)

    cores = usable_cores()
    floor_ms = sum(COUNTS[name] * parts[name][0] for name in COUNTS)
    budget_ms = cores * 1000 / args.target_per_s
    table = Table(title=f"CPU floor of one 5-node evaluation ({cores} cores)")
    for column in ("part", "per call CPU", "per call wall", "per evaluation", "CPU / eval"):
        table.add_column(column, justify="left" if column == "part" else "right")
    for name, count in COUNTS.items():
        cpu, wall = parts[name]
        table.add_row(name, f"{cpu:.3f} ms", f"{wall:.3f} ms", f"x {count:g}",
                      f"{cpu * count:.2f} ms")
    table.add_row("[bold]floor[/]", "", "", "", f"[bold]{floor_ms:.1f} ms[/]")
    table.add_row(f"budget for {args.target_per_s:g} eval/s", "", "", "",
                  f"{budget_ms:.1f} ms")
    if args.measured_cpu_ms:
        table.add_row("measured (bench/evaluate.py)", "", "", "",
                      f"{args.measured_cpu_ms:.1f} ms")
    console.print(table)
    ceiling = cores * 1000 / floor_ms
    console.print(f"At the floor alone this machine does at most [bold]{ceiling:.0f}[/] "
                  f"evaluations/s; the floor is {floor_ms / budget_ms:.2f}x the budget of "
                  f"{args.target_per_s:g}/s.")
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "machine": machine_info(),
        "parts_cpu_ms": {k: round(v[0], 4) for k, v in parts.items()},
        "parts_wall_ms": {k: round(v[1], 4) for k, v in parts.items()},
        "counts_per_eval": COUNTS,
        "floor_cpu_ms_per_eval": round(floor_ms, 2),
        "budget_cpu_ms_per_eval": round(budget_ms, 2),
        "ceiling_evals_per_s": round(ceiling, 1),
        "measured_cpu_ms_per_eval": args.measured_cpu_ms,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
