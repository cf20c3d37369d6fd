"""Benchmark: the audit ledger at a million entries — appends, proofs, full verification.

    python bench/ledger.py --entries 1000000 --json out.json

Fills a fresh coordinator database (SQLite, WAL, ``synchronous=FULL``) with ``--entries``
synthetic entries through ``AuditLedger.append_many`` in ``--batch``-entry transactions (one
signed tree head each; the drafts are built outside the timed calls), then measures at that
size:

- ``appends_per_s``: ``--appends`` single ``append`` calls after the fill, each its own
  committed (fsync'd) transaction with its own signed tree head, one thread;
- inclusion proofs for ``--proofs`` random leaves in the tree of exactly ``--entries``
  entries: ``AuditLedger.inclusion_proof`` (generation, from the stored subtree table) and
  ``mpc.merkle.verify_inclusion`` (verification) timed apart, and the proof size;
- consistency proofs between random signed sizes and the final head, likewise;
- ``verify_seconds``: ``coordinator.audit_verify.verify_ledger`` over the whole file;
- the database's size on disk (file, WAL and shared memory).

Baseline in the same run: an inclusion proof computed the naive way, from all ``--entries``
leaf hashes read from the database and hashed up (no subtree table), ``--naive`` times; the
report gives its mean against the stored-subtree proof's mean. Every proof, stored and naive,
must verify against the signed root (``wrong`` counts failures; the exit status is 1 if any).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from machine import load_average, machine_info, peak_rss_mib
from rich.console import Console
from rich.table import Table

from coordinator.audit_verify import verify_ledger
from coordinator.ledger import AuditLedger
from fedcredit.audit import EntryDraft, EntryKind
from fedcredit.sqlite import SqliteDatabase
from mpc.merkle import node_hash, verify_consistency, verify_inclusion
from mpc.signing import Signer

MEMBERS = [f"member-{i:02d}" for i in range(12)]
KINDS = [EntryKind.PLAN, EntryKind.CONSENT, EntryKind.CONTRIBUTION, EntryKind.CONTRIBUTION,
         EntryKind.CONTRIBUTION, EntryKind.COMPLETION]


def synthetic_draft(n: int, rng: random.Random) -> EntryDraft:
    """Entries shaped like an evaluation's: plan, consent, three contributions, completion."""
    kind = KINDS[n % len(KINDS)]
    query = f"q-{n // len(KINDS):08d}"
    member = MEMBERS[rng.randrange(len(MEMBERS))]
    digest = rng.randbytes(32)
    if kind is EntryKind.PLAN:
        body: dict[str, Any] = {"route": rng.sample(MEMBERS, 4), "model_version": "v3",
                                "plan_digest": digest}
        return EntryDraft(kind, "coordinator", body, query)
    if kind is EntryKind.CONSENT:
        return EntryDraft(kind, member, {"purpose": "loan_origination", "consent_digest": digest},
                          query, rng.randbytes(32))
    if kind is EntryKind.CONTRIBUTION:
        return EntryDraft(kind, member, {"ciphertext_digest": digest}, query)
    return EntryDraft(kind, member, {"members": 4, "duration_ms": rng.randrange(200, 2000)},
                      query)


def stats_ms(values_s: list[float]) -> dict[str, float]:
    ms = np.asarray(values_s) * 1000
    return {"mean": round(float(ms.mean()), 4), "p50": round(float(np.percentile(ms, 50)), 4),
            "p99": round(float(np.percentile(ms, 99)), 4)}


def disk_mib(db_path: Path) -> float:
    files = [p for p in db_path.parent.glob(db_path.name + "*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 2**20, 1)


def fill(ledger: AuditLedger, entries: int, batch: int, rng: random.Random,
         console: Console) -> tuple[float, float]:
    """Seconds spent in append_many, and seconds spent building the drafts."""
    in_append = in_drafts = 0.0
    with console.status("filling…") as status:
        for start in range(0, entries, batch):
            t0 = time.perf_counter()
            drafts = [synthetic_draft(n, rng) for n in range(start, min(start + batch, entries))]
            t1 = time.perf_counter()
            ledger.append_many(drafts, now_ms=1_700_000_000_000 + start)
            in_append += time.perf_counter() - t1
            in_drafts += t1 - t0
            status.update(f"filling: {start + len(drafts):,} / {entries:,} entries "
                          f"({in_append:.0f} s in append_many)")
    return in_append, in_drafts


def single_appends(ledger: AuditLedger, count: int, first: int,
                   rng: random.Random) -> list[float]:
    timings = []
    for n in range(first, first + count):
        draft = synthetic_draft(n, rng)
        t0 = time.perf_counter()
        ledger.append(draft, now_ms=1_800_000_000_000 + n)
        timings.append(time.perf_counter() - t0)
    return timings


def inclusion(ledger: AuditLedger, size: int, count: int,
              rng: random.Random) -> dict[str, Any]:
    head = ledger.tree_head(size)
    indices = [rng.randrange(size) for _ in range(count)]
    leaves = {i: ledger.entry(i).leaf_hash for i in indices}
    gen, check, sizes, wrong = [], [], [], 0
    for index in indices:
        t0 = time.perf_counter()
        proof = ledger.inclusion_proof(index, size)
        t1 = time.perf_counter()
        ok = verify_inclusion(leaves[index], index, size, proof.hashes, head.root)
        check.append(time.perf_counter() - t1)
        gen.append(t1 - t0)
        sizes.append(32 * len(proof.hashes))
        wrong += not ok
    return {"generate_ms": stats_ms(gen), "verify_ms": stats_ms(check),
            "bytes_mean": round(float(np.mean(sizes)), 1), "bytes_max": max(sizes),
            "wrong": wrong}


def consistency(ledger: AuditLedger, heads: list[int], new_size: int, count: int,
                rng: random.Random) -> dict[str, Any]:
    new_root = ledger.tree_head(new_size).root
    gen, check, sizes, wrong = [], [], [], 0
    for _ in range(count):
        old = rng.choice(heads)
        old_root = ledger.tree_head(old).root
        t0 = time.perf_counter()
        proof = ledger.consistency_proof(old, new_size)
        t1 = time.perf_counter()
        ok = verify_consistency(old, new_size, old_root, new_root, proof.hashes)
        check.append(time.perf_counter() - t1)
        gen.append(t1 - t0)
        sizes.append(32 * len(proof.hashes))
        wrong += not ok
    return {"generate_ms": stats_ms(gen), "verify_ms": stats_ms(check),
            "bytes_mean": round(float(np.mean(sizes)), 1), "bytes_max": max(sizes),
            "wrong": wrong}


def naive_path(leaves: list[bytes], index: int) -> tuple[bytes, ...]:
    """PATH(index) by hashing the whole tree level by level (an odd last node is promoted,
    which is how RFC 6962's tree looks bottom-up): ~n hashes, the least work without stored
    subtrees."""
    path = []
    level = leaves
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        parents = [node_hash(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            parents.append(level[-1])
        level, index = parents, index >> 1
    return tuple(path)


def naive_inclusion(db: SqliteDatabase, ledger: AuditLedger, size: int, count: int,
                    rng: random.Random) -> dict[str, Any]:
    """The baseline: no subtree table, so every proof reads and hashes all ``size`` leaves."""
    head = ledger.tree_head(size)
    timings, reads, wrong = [], [], 0
    for _ in range(count):
        index = rng.randrange(size)
        t0 = time.perf_counter()
        leaves = [row[0] for row in db.all(
            "SELECT leaf_hash FROM ledger_entries WHERE idx < ? ORDER BY idx", (size,))]
        t1 = time.perf_counter()
        path = naive_path(leaves, index)
        timings.append(time.perf_counter() - t0)
        reads.append(t1 - t0)
        wrong += path != ledger.inclusion_proof(index, size).hashes
        wrong += not verify_inclusion(leaves[index], index, size, path, head.root)
    return {"ms": stats_ms(timings), "read_ms": stats_ms(reads), "wrong": wrong}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--appends", type=int, default=2_000)
    parser.add_argument("--proofs", type=int, default=2_000)
    parser.add_argument("--naive", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the database here")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    console = Console(width=max(Console().width, 130))
    rng = random.Random(args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fedcredit-ledger-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "coordinator.sqlite3"
    if db_path.exists():
        raise SystemExit(f"{db_path} exists: the benchmark starts from an empty ledger")
    load_before = load_average()
    signer = Signer.generate()
    db = SqliteDatabase(db_path, "")
    try:
        ledger = AuditLedger(db, signer)
        n = args.entries
        fill_s, drafts_s = fill(ledger, n, args.batch, rng, console)
        console.print(f"filled {n:,} entries: {fill_s:.1f} s in append_many "
                      f"(+{drafts_s:.1f} s building drafts)")
        single = single_appends(ledger, args.appends, n, rng)
        heads = sorted({min(s, n) for s in range(args.batch, n + args.batch, args.batch)})
        with console.status("proofs…"):
            incl = inclusion(ledger, n, args.proofs, rng)
            cons = consistency(ledger, heads, n + args.appends, args.proofs, rng)
        with console.status("naive baseline…"):
            naive = naive_inclusion(db, ledger, n, args.naive, rng)
    finally:
        db.close()
    with console.status(f"verify_ledger over {n + args.appends:,} entries…"):
        t0 = time.perf_counter()
        verification = verify_ledger(db_path, {signer.key_id: signer.verifier})
        verify_s = time.perf_counter() - t0
    size_mib = disk_mib(db_path)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = naive["ms"]["mean"] / incl["generate_ms"]["mean"]
    results = {
        "entries": n,
        "bulk_entries_per_s": round(n / fill_s),
        "draft_build_entries_per_s": round(n / drafts_s),
        "appends_per_s": round(len(single) / sum(single), 1),
        "append_ms": stats_ms(single),
        # Headline: mean time to serve one proof at this size; the distributions follow.
        "inclusion_proof_ms": incl["generate_ms"]["mean"],
        "inclusion_proof_detail_ms": {"generate": incl["generate_ms"],
                                      "verify": incl["verify_ms"]},
        "inclusion_proof_bytes": {"mean": incl["bytes_mean"], "max": incl["bytes_max"]},
        "consistency_proof_ms": {"generate": cons["generate_ms"], "verify": cons["verify_ms"]},
        "consistency_proof_bytes": {"mean": cons["bytes_mean"], "max": cons["bytes_max"]},
        "naive_inclusion_proof_ms": naive["ms"],
        "naive_reading_leaves_ms": naive["read_ms"],
        "naive_over_stored_ratio": round(ratio),
        "verify_seconds": round(verify_s, 1),
        "verify_ok": verification.ok,
        "verified_entries": verification.entries_checked,
        "verified_heads": verification.heads_checked,
        "disk_mib": size_mib,
        "disk_bytes_per_entry": round(size_mib * 2**20 / (n + args.appends)),
        "wrong": incl["wrong"] + cons["wrong"] + naive["wrong"],
    }
    table = Table(title=f"audit ledger at {n:,} entries (batches of {args.batch:,}; "
                        f"{args.appends:,} single appends; {args.proofs:,} proofs)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("bulk append (append_many)", f"{results['bulk_entries_per_s']:,} entries/s"),
        ("single durable appends", f"{results['appends_per_s']:,} /s "
                                   f"(p50 {results['append_ms']['p50']:.2f} ms, "
                                   f"p99 {results['append_ms']['p99']:.2f} ms)"),
        ("inclusion proof: generate", _fmt(incl["generate_ms"])),
        ("inclusion proof: verify", _fmt(incl["verify_ms"])),
        ("inclusion proof size", f"{incl['bytes_mean']:.0f} B (max {incl['bytes_max']})"),
        ("consistency proof: generate", _fmt(cons["generate_ms"])),
        ("consistency proof: verify", _fmt(cons["verify_ms"])),
        ("consistency proof size", f"{cons['bytes_mean']:.0f} B (max {cons['bytes_max']})"),
        ("baseline: naive inclusion proof", _fmt(naive["ms"])),
        ("  of which reading the leaves", _fmt(naive["read_ms"])),
        ("naive / stored (generation)", f"{ratio:,.0f}x"),
        ("verify_ledger (all entries, heads)", f"{verify_s:.1f} s, ok={verification.ok}"),
        ("on disk", f"{size_mib:,} MiB ({results['disk_bytes_per_entry']} B/entry)"),
        ("wrong proofs", str(results["wrong"])),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"load average before/after: {load_before} / {load_average()} "
                  f"on {machine_info()['nproc']} cores (other work skews the timings)")
    doc = {
        "benchmark": "ledger",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "batch": args.batch, "appends": args.appends, "proofs": args.proofs,
        "naive": args.naive, "seed": args.seed,
        # The headline figures at the top level, as the issue names them; all of it below.
        "entries": results["entries"],
        "appends_per_s": results["appends_per_s"],
        "inclusion_proof_ms": results["inclusion_proof_ms"],
        "verify_seconds": results["verify_seconds"],
        "results": results,
        "peak_rss_mib": peak_rss_mib(os.getpid()),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "machine": machine_info(),
    }
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        console.print(f"\nwrote {args.json}")
    return 1 if results["wrong"] or not verification.ok else 0


def _fmt(stats: dict[str, float]) -> str:
    return f"mean {stats['mean']:.3f} ms, p50 {stats['p50']:.3f}, p99 {stats['p99']:.3f}"


if __name__ == "__main__":
    sys.exit(main())
