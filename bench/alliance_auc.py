"""What the alliance is for: a model on joint features against any single institution's.

    python bench/alliance_auc.py --subjects 50000 --institutions 4 --json auc.json

Generates a synthetic alliance (`fedcredit generate`), runs every member's Spark ingest, joins
the snapshots by pseudonym and fits the same L2 logistic regression on (a) every member's
features — the pooled plaintext model, which the federated path reproduces exactly — and (b)
each member's own features alone; reports held-out AUCs (70/30 split). With ``--uci`` it does
the same for the real UCI/FATE vertical split (guest + host, feature-table ingest).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import load_average, machine_info

from fedcredit.demo.runner import ingest_members
from fedcredit.demo.training import AucReport, compare_auc, load_joint
from fedcredit.synth.alliance import generate_alliance
from fedcredit.synth.spec import AllianceSpec
from mpc.pseudonym import SubjectKey, pseudonymize
from node.ingest.config import IngestConfig
from node.ingest.pipeline import run_ingest
from node.ingest.spark import spark_session, stop_spark

UCI = Path(__file__).resolve().parents[1] / "data" / "uci"


def synthetic(args: argparse.Namespace, work: Path, console: Console) -> AucReport:
    raw = work / "raw"
    summary = generate_alliance(
        AllianceSpec(subjects=args.subjects, institutions=args.institutions, seed=args.seed),
        raw, overwrite=True)
    key = SubjectKey.generate()
    results = ingest_members(raw, [m.member_id for m in summary.members], key, console)
    people = pq.read_table(raw / "labels.parquet").to_pylist()
    labels = {pseudonymize(key, p["identifier_type"], p["identifier"]).value: int(p["default"])
              for p in people}
    return compare_auc(load_joint({m: r.snapshot_dir for m, r in results.items()}, labels),
                       args.seed)


def uci(args: argparse.Namespace, work: Path) -> AucReport:
    key = SubjectKey.generate()
    spark = spark_session("local[2]", driver_memory="2g", shuffle_partitions=4)
    snapshots = {}
    try:
        for member in ("guest", "host"):
            doc = yaml.safe_load((UCI / f"{member}.yaml").read_text())
            doc.update(output_dir=str(work / member), base_dir=str(UCI))
            snapshots[member] = run_ingest(spark, IngestConfig.model_validate(doc),
                                           key).snapshot_dir
    finally:
        stop_spark(spark)
    guest = pa_csv.read_csv(UCI / "default_credit_hetero_guest.csv",
                            convert_options=pa_csv.ConvertOptions(
                                column_types={"id": "string"})).to_pydict()
    labels = {pseudonymize(key, "opaque", i).value: int(y)
              for i, y in zip(guest["id"], guest["y"], strict=True)}
    return compare_auc(load_joint(snapshots, labels), args.seed)


def as_dict(report: AucReport) -> dict[str, Any]:
    best, best_auc = report.best_single
    return {
        "subjects": report.subjects,
        "default_rate": round(report.default_rate, 4),
        "joint_auc": round(report.joint_auc, 4),
        "member_auc": {k: round(v, 4) for k, v in report.member_auc.items()},
        "member_coverage": {k: round(v, 4) for k, v in report.member_coverage.items()},
        "best_single": best,
        "best_single_auc": round(best_auc, 4),
        "joint_minus_best_single": round(report.joint_auc - best_auc, 4),
    }


def render(console: Console, title: str, r: dict[str, Any]) -> None:
    table = Table(title=f"{title}: {r['subjects']:,} subjects, default rate "
                  f"{r['default_rate']:.1%}, held-out AUC")
    table.add_column("model")
    table.add_column("subjects known", justify="right")
    table.add_column("AUC", justify="right")
    table.add_column("vs joint", justify="right")
    table.add_row("joint (pooled plaintext = federated)", "100%", f"{r['joint_auc']:.4f}", "")
    for member, value in sorted(r["member_auc"].items(), key=lambda kv: -kv[1]):
        table.add_row(f"{member} alone", f"{r['member_coverage'][member]:.0%}", f"{value:.4f}",
                      f"{value - r['joint_auc']:+.4f}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=50_000)
    parser.add_argument("--institutions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--uci", action="store_true", help="also the UCI/FATE vertical split")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="fedcredit-bench-auc-"))
    started = time.monotonic()
    result: dict[str, Any] = {"synthetic": as_dict(synthetic(args, work, console))}
    render(console, f"synthetic alliance, {args.institutions} institutions",
           result["synthetic"])
    if args.uci:
        result["uci"] = as_dict(uci(args, work))
        render(console, "UCI credit card clients, FATE vertical split", result["uci"])
    result.update(
        institutions=args.institutions, seed=args.seed, seconds=round(time.monotonic() - started),
        machine=machine_info(), load_average=load_average(),
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        command="python bench/alliance_auc.py " + " ".join(sys.argv[1:]),
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
