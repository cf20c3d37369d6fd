"""``fedcredit node ingest`` as an operator runs it: on a Spark standalone cluster, into a
store, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpc.pseudonym import SubjectKey
from node.ingest.snapshot import verify_snapshot
from tests.e2e.test_cli import run
from tests.support.raw_tables import write_institution
from tests.support.spark_cluster import standalone_cluster

pytestmark = pytest.mark.e2e


def _env(key: SubjectKey, **extra: str) -> dict[str, str]:
    return {
        "FEDCREDIT_INGEST_SUBJECT_KEY": key.secret.hex(),
        "FEDCREDIT_INGEST_SPARK_DRIVER_MEMORY": "1g",
        "FEDCREDIT_INGEST_SPARK_EXECUTOR_MEMORY": "1g",
        "FEDCREDIT_INGEST_SPARK_SHUFFLE_PARTITIONS": "2",
        "SPARK_LOCAL_IP": "127.0.0.1",  # the driver of a cluster run: loopback here too
        **extra,
    }


def test_the_same_ingest_runs_on_a_standalone_cluster_and_loads_the_store(
    tmp_path: Path,
) -> None:
    expected = write_institution(tmp_path / "bank")
    key = SubjectKey.generate()
    store = tmp_path / "store.sqlite3"
    with standalone_cluster(tmp_path / "spark", cores=2, memory="2g") as master:
        result = run(["node", "ingest", "--config", str(tmp_path / "bank" / "ingest.yaml"),
                      "--spark-master", master, "--store", f"sqlite:///{store}"],
                     env=_env(key), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (snapshot,) = [p for p in (tmp_path / "bank" / "snapshots").iterdir()
                   if not p.name.startswith(".")]
    manifest = verify_snapshot(snapshot)
    assert manifest.pipeline["spark_master"] == master
    assert manifest.subjects == expected.subjects
    assert manifest.rejected["customers"] == expected.customers_rejected
    assert manifest.rejected["loans"] == expected.loans_rejected
    # The closing summary: rows in, rejected by reason, subjects out, wall time.
    assert "customers" in result.stdout and "bad_identifier" in result.stdout
    assert f"subjects out {expected.subjects}" in result.stdout
    assert f"{manifest.snapshot_id} is active" in result.stdout
    listed = run(["node", "snapshots", "--store", f"sqlite:///{store}"], env=_env(key))
    assert listed.returncode == 0, listed.stderr
    assert manifest.snapshot_id in listed.stdout


def test_refusals_are_one_clear_line_and_no_traceback(tmp_path: Path) -> None:
    write_institution(tmp_path)
    config = str(tmp_path / "ingest.yaml")
    no_key = run(["node", "ingest", "--config", config])
    assert no_key.returncode == 2
    assert "no subject key" in no_key.stderr and "Traceback" not in no_key.stderr
    doc = (tmp_path / "ingest.yaml").read_text().replace("cust_no", "customer_number", 1)
    (tmp_path / "ingest.yaml").write_text(doc)
    key = SubjectKey.generate()
    bad_column = run(["node", "ingest", "--config", config, "--spark-master", "local[1]"],
                     env=_env(key), timeout=180)
    assert bad_column.returncode == 1, bad_column.stdout + bad_column.stderr
    assert "INGEST_SOURCE_INVALID" in bad_column.stderr
    assert "customer_number" in bad_column.stderr and "Traceback" not in bad_column.stderr
    assert not list((tmp_path / "snapshots").glob("*/manifest.json"))
    report = json.dumps(sorted(p.name for p in (tmp_path / "snapshots").rglob("*")))
    assert "manifest.json" not in report
