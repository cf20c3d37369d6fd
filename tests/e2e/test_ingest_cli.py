"""``fedcredit node ingest`` as an operator runs it: on a Spark standalone cluster, one table
over JDBC, into a store, and its refusals."""

from __future__ import annotations

import csv
import json
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from mpc.pseudonym import SubjectKey
from node.ingest.snapshot import verify_snapshot
from tests.e2e.test_cli import run
from tests.support.raw_tables import write_institution
from tests.support.spark_cluster import standalone_cluster

pytestmark = pytest.mark.e2e
JDBC_DRIVER = Path("/usr/share/java/postgresql.jar")  # Debian's libpostgresql-jdbc-java


def _env(key: SubjectKey, **extra: str) -> dict[str, str]:
    return {
        "FEDCREDIT_INGEST_SUBJECT_KEY": key.secret.hex(),
        "FEDCREDIT_INGEST_SPARK_DRIVER_MEMORY": "1g",
        "FEDCREDIT_INGEST_SPARK_EXECUTOR_MEMORY": "1g",
        "FEDCREDIT_INGEST_SPARK_SHUFFLE_PARTITIONS": "2",
        "SPARK_LOCAL_IP": "127.0.0.1",  # the driver of a cluster run: loopback here too
        **extra,
    }


def _jdbc_customers(tmp_path: Path, postgres_url: str) -> tuple[dict[str, Any], Any]:
    """Move the institution's customers table into PostgreSQL; the ingest config reads it over
    JDBC (the password from the environment). Returns the config and the database URL."""
    if not JDBC_DRIVER.exists():
        message = f"{JDBC_DRIVER} missing (apt-get install libpostgresql-jdbc-java)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    import psycopg

    url = urlsplit(postgres_url)
    table = f"core_customers_{uuid.uuid4().hex[:8]}"  # one database for the whole run
    rows = list(csv.reader((tmp_path / "raw" / "customers.csv").open()))
    with psycopg.connect(postgres_url) as conn:
        conn.execute(f"CREATE TABLE {table} (cust_no text, id_no text, dob text, "
                     "income text, since text)")
        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            for row in rows[1:]:
                copy.write_row([v or None for v in row])
    doc = yaml.safe_load((tmp_path / "ingest.yaml").read_text())
    doc["tables"]["customers"] = {
        "format": "jdbc",
        "jdbc_url": f"jdbc:postgresql://{url.hostname}:{url.port}{url.path}",
        "jdbc_table": table,
        "jdbc_user": url.username,
        "jdbc_password_env": "CORE_DB_PASSWORD",
        "jdbc_driver": "org.postgresql.Driver",
        "columns": doc["tables"]["customers"]["columns"],
    }
    (tmp_path / "ingest.yaml").write_text(yaml.safe_dump(doc))
    return doc, url


def test_the_same_ingest_runs_on_a_standalone_cluster_reads_jdbc_and_loads_the_store(
    tmp_path: Path, postgres_url: str,
) -> None:
    """One Spark run shows both: a standalone cluster (not local mode), and a table read from
    a database over JDBC (the driver jar shipped to the executors)."""
    expected = write_institution(tmp_path / "bank")
    _, url = _jdbc_customers(tmp_path / "bank", postgres_url)
    key = SubjectKey.generate()
    store = tmp_path / "store.sqlite3"
    with standalone_cluster(tmp_path / "spark", cores=2, memory="2g") as master:
        result = run(["node", "ingest", "--config", str(tmp_path / "bank" / "ingest.yaml"),
                      "--spark-master", master, "--store", f"sqlite:///{store}"],
                     env=_env(key, FEDCREDIT_INGEST_SPARK_JARS=str(JDBC_DRIVER),
                              CORE_DB_PASSWORD=url.password or ""), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (snapshot,) = [p for p in (tmp_path / "bank" / "snapshots").iterdir()
                   if not p.name.startswith(".")]
    manifest = verify_snapshot(snapshot)
    assert manifest.pipeline["spark_master"] == master
    assert manifest.subjects == expected.subjects
    assert manifest.rejected["customers"] == expected.customers_rejected
    assert manifest.rejected["loans"] == expected.loans_rejected
    source = next(s for s in manifest.sources if s.table == "customers")
    assert source.format == "jdbc" and source.sha256 is None
    assert url.password and url.password not in json.dumps(manifest.to_dict())  # not recorded
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


def test_a_database_that_refuses_the_connection_is_a_clear_error(
    tmp_path: Path, postgres_url: str
) -> None:
    """Not a Java stack trace. (A JDBC read that works: the standalone-cluster test above.)"""
    write_institution(tmp_path)
    doc, url = _jdbc_customers(tmp_path, postgres_url)
    doc["tables"]["customers"]["jdbc_url"] = "jdbc:postgresql://127.0.0.1:1/none"
    (tmp_path / "ingest.yaml").write_text(yaml.safe_dump(doc))
    refused = run(["node", "ingest", "--config", str(tmp_path / "ingest.yaml"),
                   "--spark-master", "local[1]"],
                  env=_env(SubjectKey.generate(), FEDCREDIT_INGEST_SPARK_JARS=str(JDBC_DRIVER),
                           CORE_DB_PASSWORD=url.password or ""), timeout=240)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "INGEST_SOURCE_INVALID" in refused.stderr and "Traceback" not in refused.stderr
