"""Private set intersection for training alignment: ours (X25519) against openmined-psi.

    python bench/psi.py [--n 1000000] [--baseline-n 100000] [--json OUT]

* **ours** — :mod:`mpc.psi` in exactly the order the training roles use it
  (``node/training/guest.py`` and ``host.py``): the guest (receiver) and a host (sender) run as
  two processes joined by a pipe; the host masks its own set and sends it while the guest masks
  its request, then the host masks the request again while the guest masks the host's set; the
  guest ends with the intersection (its rows and the host's positions). Timed from both parties'
  start to the guest's result, including moving every point between the processes (the pipe
  stands in for the session's gRPC link: 32 bytes per point either way).
* **openmined-psi** (``openmined-psi`` 2.x, ECDH over P-256 with a Golomb-compressed set, the
  PSI library of the OpenMined/PySyft stack) — server setup, client request, server response,
  client intersection, in its own virtual environment (``.bench/psi-venv``, created with pip on
  first use: it pins protobuf 6, which our gRPC stubs cannot live beside), one process, as its
  Python API is used.

Both sides get ``n`` synthetic 18-character resident ids, half of them shared. Both are measured
at ``--baseline-n`` in the same run for the ratio; ours alone at ``--n``. ``rows_per_s`` is the
guest's rows aligned per second (n / seconds). Keys: ``seconds``, ``rows_per_s`` (ours at --n),
``baseline_rows_per_s`` (openmined-psi at --baseline-n) and the same-size comparison, with the
CPU seconds of each (ours: both processes) — ours uses two cores because the two parties are
two processes, openmined-psi's Python API runs both roles in one.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from machine import bench_python
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpc.psi import (
    PsiKey,
    receiver_index,
    receiver_match,
    receiver_request,
    sender_double,
    sender_set,
    split_points,
)

OPENMINED_SCRIPT = """
import json, sys, time
import private_set_intersection.python as psi
n = int(sys.argv[1])
client_items = [f"{i:018d}" for i in range(n)]
server_items = [f"{i:018d}" for i in range(n // 2, n // 2 + n)]
started, cpu = time.perf_counter(), time.process_time()
server = psi.server.CreateWithNewKey(True)
client = psi.client.CreateWithNewKey(True)
setup = server.CreateSetupMessage(1e-9, n, server_items, psi.DataStructure.GCS)
request = client.CreateRequest(client_items)
response = server.ProcessRequest(request)
found = client.GetIntersection(setup, response)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
assert len(found) >= n - n // 2, len(found)
print(json.dumps({"seconds": seconds, "rows_per_s": n / seconds, "cpu_seconds": cpu,
                  "intersection": len(found)}))
"""


def identifiers(n: int) -> tuple[list[str], list[str]]:
    """The guest's and the host's ids: n each, the upper half of the guest's shared."""
    guest = [f"{i:018d}" for i in range(n)]
    host = [f"{i:018d}" for i in range(n // 2, n // 2 + n)]
    return guest, host


def _send(conn: Connection, payload: bytes) -> threading.Thread:
    """Send in the background, as the session's transport does: both parties may be sending
    at once, and a pipe holds only a few kilobytes."""
    thread = threading.Thread(target=conn.send_bytes, args=(payload,), daemon=True)
    thread.start()
    return thread


def _host(inbox: Connection, outbox: Connection, n: int) -> None:
    _, ids = identifiers(n)
    key = PsiKey.generate()
    own = sender_set(key, ids)
    sending = _send(outbox, b"".join(own.masked))
    request = split_points(inbox.recv_bytes())
    sending.join()
    outbox.send_bytes(b"".join(sender_double(key, request)))


def ours(n: int) -> dict[str, Any]:
    """One alignment between two processes; seconds to the guest's intersection."""
    ids, _ = identifiers(n)
    ctx = mp.get_context("fork")
    to_guest_r, to_guest_w = ctx.Pipe(duplex=False)
    to_host_r, to_host_w = ctx.Pipe(duplex=False)
    before = os.times()
    started = time.perf_counter()
    host = ctx.Process(target=_host, args=(to_host_r, to_guest_w, n))
    host.start()
    key = PsiKey.generate()
    request = receiver_request(key, ids)
    sending = _send(to_host_w, b"".join(request.masked))
    theirs = receiver_index(key, split_points(to_guest_r.recv_bytes()))
    found = receiver_match(request, split_points(to_guest_r.recv_bytes()), theirs)
    seconds = time.perf_counter() - started
    sending.join()
    host.join()
    after = os.times()  # the guest (this process) and the host (its child), user + system
    cpu = sum(after[:4]) - sum(before[:4])
    expected = list(range(n // 2, n))
    assert list(found.receiver_rows) == expected, "wrong intersection"
    return {"seconds": seconds, "rows_per_s": n / seconds, "cpu_seconds": cpu,
            "intersection": len(expected)}


def openmined(n: int, python: Path) -> dict[str, Any]:
    result = subprocess.run([str(python), "-c", OPENMINED_SCRIPT, str(n)], check=True,
                            capture_output=True, text=True)
    doc: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="ids per party for ours")
    parser.add_argument("--baseline-n", type=int, default=100_000,
                        help="ids per party for the same-size comparison (0: skip)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--psi-python", help="a Python with openmined-psi installed")
    args = parser.parse_args()
    console = Console()
    results: dict[str, Any] = {"n": args.n, "baseline_n": args.baseline_n}
    table = Table(title="PSI alignment, two parties with n ids each (half shared), same run")
    for column in ("implementation", "n", "seconds", "CPU s", "rows/s", "÷ openmined-psi"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    if args.baseline_n:
        python = bench_python("psi-venv", "openmined-psi", args.psi_python, console.status)
        with console.status(f"openmined-psi at {args.baseline_n:,}…"):
            base = results["openmined_psi"] = openmined(args.baseline_n, python)
        with console.status(f"ours at {args.baseline_n:,}…"):
            small = results["ours_at_baseline_n"] = ours(args.baseline_n)
        results["baseline_rows_per_s"] = base["rows_per_s"]
        results["ratio_at_baseline_n"] = small["rows_per_s"] / base["rows_per_s"]
        table.add_row("openmined-psi (P-256, GCS, one process)", f"{args.baseline_n:,}",
                      f"{base['seconds']:.1f}", f"{base['cpu_seconds']:.1f}",
                      f"{base['rows_per_s']:,.0f}", "1.00x")
        table.add_row("ours (X25519, two processes)", f"{args.baseline_n:,}",
                      f"{small['seconds']:.1f}", f"{small['cpu_seconds']:.1f}",
                      f"{small['rows_per_s']:,.0f}", f"{results['ratio_at_baseline_n']:.2f}x")
        results["cpu_ratio_at_baseline_n"] = base["cpu_seconds"] / small["cpu_seconds"]
    with console.status(f"ours at {args.n:,}…"):
        big = results["ours"] = ours(args.n)
    results["seconds"] = big["seconds"]
    results["rows_per_s"] = big["rows_per_s"]
    table.add_row("ours (X25519, two processes)", f"{args.n:,}", f"{big['seconds']:.1f}",
                  f"{big['cpu_seconds']:.1f}", f"{big['rows_per_s']:,.0f}",
                  f"{big['rows_per_s'] / results['baseline_rows_per_s']:.2f}x"
                  if args.baseline_n else "-")
    console.print(table)
    if args.baseline_n:
        console.print(f"CPU seconds, openmined-psi ÷ ours at {args.baseline_n:,}: "
                      f"{results['cpu_ratio_at_baseline_n']:.2f}x (ours runs the two parties "
                      "as two processes, as training does; openmined-psi both in one)")
    results["meta"] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                       "machine": platform.platform(), "cpus": os.cpu_count(),
                       "command": " ".join(sys.argv)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        console.print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
