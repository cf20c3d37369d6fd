"""The Spark ingest on real Spark (local[2]): rejects, features, snapshot, errors, privacy."""

from __future__ import annotations

import csv
import json
import math
import stat
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import SparkSession

from fedcredit.errors import ConfigurationError, IngestSourceError
from mpc.pseudonym import SubjectKey, pseudonymize
from node.ingest.config import load_ingest_config
from node.ingest.pipeline import IngestResult, run_ingest
from node.ingest.snapshot import EXPOSURE_COLUMNS, MANIFEST_NAME, verify_snapshot
from tests.support.raw_tables import (
    BAD_CUSTOMERS,
    GOOD_CUSTOMERS,
    Expected,
    cn_id,
    write_institution,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory, spark: SparkSession,
         subject_key: SubjectKey) -> tuple[Path, Expected, IngestResult]:
    root = tmp_path_factory.mktemp("bank")
    expected = write_institution(root)
    result = run_ingest(spark, load_ingest_config(root / "ingest.yaml"), subject_key)
    return root, expected, result


def _subjects(result: IngestResult) -> dict[bytes, dict[str, Any]]:
    table = pq.read_table(result.snapshot_dir / "subjects")
    return {row["pseudonym"]: row for row in table.to_pylist()}


def test_every_row_is_accepted_or_rejected_for_one_reason(
    bank: tuple[Path, Expected, IngestResult],
) -> None:
    _, expected, result = bank
    reports = {r.table: r for r in result.tables}
    assert reports["customers"].rows_in == expected.customers_in
    assert dict(reports["customers"].rejected) == expected.customers_rejected
    assert dict(reports["loans"].rejected) == expected.loans_rejected
    assert dict(reports["repayments"].rejected) == expected.repayments_rejected
    assert dict(reports["transactions"].rejected) == expected.transactions_rejected
    assert dict(reports["inquiries"].rejected) == expected.inquiries_rejected
    for report in result.tables:
        assert report.rows_in == report.accepted + report.rejected_total
    assert result.manifest.subjects == expected.subjects
    assert result.manifest.rejected["loans"] == expected.loans_rejected


def test_snapshot_verifies_and_its_manifest_describes_it(
    bank: tuple[Path, Expected, IngestResult],
) -> None:
    _, _, result = bank
    manifest = verify_snapshot(result.snapshot_dir)
    assert manifest == result.manifest
    assert manifest.mode == "raw_tables" and manifest.as_of == "2026-10-31"
    assert {s.table for s in manifest.sources} == {
        "customers", "loans", "repayments", "transactions", "inquiries"}
    assert all(s.sha256 and s.bytes for s in manifest.sources)
    income = next(f for f in manifest.features if f.name == "income_monthly")
    assert income.count == 2 and income.nulls == 2  # C1 and C3 have transactions
    assert manifest.pipeline["spark_master"] == "local[2]"


def test_feature_values_match_a_hand_computation(
    bank: tuple[Path, Expected, IngestResult], subject_key: SubjectKey,
) -> None:
    _, _, result = bank
    rows = _subjects(result)
    c1 = rows[pseudonymize(subject_key, "cn_resident_id", cn_id(1)).value]
    # Open: mortgage 320000 (current) + card 2500/10000 (35 dpd).
    assert c1["active_loans"] == 1 and c1["open_credit_lines"] == 1
    assert c1["outstanding_debt_cents"] == 32_250_000
    assert c1["accounts_30dpd"] == 1 and c1["accounts_90dpd"] == 0
    assert c1["revolving_utilization"] == pytest.approx(0.25)
    assert c1["worst_status"] == 2 and c1["max_days_past_due"] == 35
    # Installments due Aug, Sep, Oct: on time, 19 days late, unpaid (P7 was rejected).
    assert c1["installments_window"] == 3
    assert c1["repayment_ratio"] == pytest.approx(2 / 3)
    assert c1["on_time_rate"] == pytest.approx(1 / 3)
    # Salary 9000 in Sep and Oct; groceries 1200 + 1 in Oct; loan repayment 3000 in Oct.
    assert c1["income_monthly"] == pytest.approx(9000) and c1["income_cv"] == 0
    assert c1["spending_monthly"] == pytest.approx(600.5)
    assert c1["surplus_monthly"] == pytest.approx(9000 - 600.5 - 1500)
    assert c1["age_years"] == 41 and c1["declared_income_monthly"] == 9000
    c2 = rows[pseudonymize(subject_key, "cn_resident_id", cn_id(2, "19900101")).value]
    assert c2["accounts_90dpd"] == 1 and c2["worst_status"] == 4
    assert c2["inquiries_90d"] == 1 and c2["inquiries_window"] == 2
    assert c2["late_installments_window"] == 1
    # No transactions at all: absent, not zero. No income declared: absent.
    assert c2["income_monthly"] is None and c2["declared_income_monthly"] is None
    c4 = rows[pseudonymize(subject_key, "cn_resident_id", cn_id(4, "19951111")).value]
    assert c4["loans_total"] == 0 and c4["revolving_utilization"] is None
    assert c4["customer_tenure_months"] is None


def test_nothing_identifying_reaches_the_snapshot(
    bank: tuple[Path, Expected, IngestResult],
) -> None:
    root, _, result = bank
    identifiers = [row[1] for row in GOOD_CUSTOMERS + BAD_CUSTOMERS]
    needles = {i.encode() for i in identifiers} | {
        i.replace(" ", "").upper().encode() for i in identifiers}
    needles |= {row[0].encode() for row in GOOD_CUSTOMERS}  # institution-local keys too
    for path in result.snapshot_dir.rglob("*"):
        if path.is_file() and path.name != "rejects.json":
            data = path.read_bytes()
            leaked = [n for n in needles if n in data]
            assert not leaked, f"{path.name} holds {leaked}"
    report = result.reject_report
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    text = report.read_text()
    assert not [i for i in identifiers if i in text]  # samples mask identifiers
    assert "****" in text
    assert not list((root / "snapshots").glob(".work-*"))  # staging is gone


def test_reject_samples_show_the_offending_source_value(
    bank: tuple[Path, Expected, IngestResult],
) -> None:
    _, _, result = bank
    doc = json.loads(result.reject_report.read_text())
    sample = doc["tables"]["loans"]["samples"]["unparseable:principal"][0]
    assert sample["principal"] == "abc" and sample["loan_id"] == "L10"
    assert doc["tables"]["customers"]["rejected"]["duplicate_key"] == 2


def _config(root: Path, **tables: dict[str, Any]) -> Path:
    doc = {"member_id": "bank", "as_of": "2026-10-31", "tables": tables}
    path = root / "ingest.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _customers_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_a_table_or_column_the_institution_lacks_means_absent_features(
    tmp_path: Path, spark: SparkSession, subject_key: SubjectKey,
) -> None:
    _customers_csv(tmp_path / "c.csv", ["customer_id", "identifier"], [["A", cn_id(1)]])
    config = load_ingest_config(_config(tmp_path, customers={"path": "c.csv"}))
    result = run_ingest(spark, config, subject_key)
    assert result.manifest.feature_names == ()  # no birth date, income, loans, transactions
    row = next(iter(_subjects(result).values()))
    assert all(row[c] == 0 for c in EXPOSURE_COLUMNS)
    # Loans without credit_limit, repayments without paid_date/paid_amount.
    _customers_csv(tmp_path / "l.csv", ["loan_id", "customer_id", "product", "principal",
                                        "balance", "open_date", "status", "days_past_due"],
                   [["L", "A", "credit_card", "0", "50", "2020-01-01", "active", "0"]])
    _customers_csv(tmp_path / "r.csv", ["installment_id", "loan_id", "due_date", "due_amount"],
                   [["I", "L", "2026-10-01", "120"]])
    config = load_ingest_config(_config(
        tmp_path, customers={"path": "c.csv"}, loans={"path": "l.csv"},
        repayments={"path": "r.csv"}))
    result = run_ingest(spark, config, subject_key)
    names = set(result.manifest.feature_names)
    assert {"loans_total", "total_balance", "debt_service_monthly"} <= names
    assert not names & {"revolving_utilization", "repayment_ratio", "on_time_rate",
                        "late_installments_window", "income_monthly"}
    row = next(iter(_subjects(result).values()))
    assert row["open_credit_lines"] == 1 and row["debt_service_monthly"] == pytest.approx(10)


@pytest.mark.parametrize(
    ("header", "rows", "mapping", "message"),
    [
        (["customer_id"], [["A"]], {}, "no column for required customers.identifier"),
        (["customer_id", "identifier"], [["A", cn_id(1)]], {"birth_date": "dob"},
         "maps customers.birth_date to 'dob', which is not a column"),
        (["customer_id", "identifier"], [], {}, "holds no rows"),
    ],
    ids=["missing-required-column", "mapped-column-absent", "empty-input"],
)
def test_source_errors_are_clear_and_write_no_snapshot(
    tmp_path: Path, spark: SparkSession, subject_key: SubjectKey,
    header: list[str], rows: list[list[str]], mapping: dict[str, str], message: str,
) -> None:
    _customers_csv(tmp_path / "c.csv", header, rows)
    config = load_ingest_config(
        _config(tmp_path, customers={"path": "c.csv", "columns": mapping}))
    with pytest.raises(IngestSourceError, match=message):
        run_ingest(spark, config, subject_key)
    assert not list((tmp_path / "snapshots").glob(f"*/{MANIFEST_NAME}"))


def test_a_column_of_the_wrong_type_is_refused(
    tmp_path: Path, spark: SparkSession, subject_key: SubjectKey,
) -> None:
    import pyarrow as pa

    pq.write_table(pa.table({"customer_id": ["A"], "identifier": [cn_id(1)],
                             "birth_date": [True]}), tmp_path / "c.parquet")
    config = load_ingest_config(_config(tmp_path, customers={"path": "c.parquet"}))
    with pytest.raises(IngestSourceError, match=r"birth_date .* is boolean in the source"):
        run_ingest(spark, config, subject_key)


def test_missing_and_zero_byte_files(
    tmp_path: Path, spark: SparkSession, subject_key: SubjectKey,
) -> None:
    config = load_ingest_config(_config(tmp_path, customers={"path": "nope.csv"}))
    with pytest.raises(IngestSourceError, match="does not exist"):
        run_ingest(spark, config, subject_key)
    (tmp_path / "nope.csv").write_bytes(b"")
    with pytest.raises(IngestSourceError, match="is empty"):
        run_ingest(spark, config, subject_key)


def test_every_customer_rejected_is_an_error_with_a_report(
    tmp_path: Path, spark: SparkSession, subject_key: SubjectKey,
) -> None:
    _customers_csv(tmp_path / "c.csv", ["customer_id", "identifier"], [["A", "123"]])
    config = load_ingest_config(_config(tmp_path, customers={"path": "c.csv"}))
    with pytest.raises(IngestSourceError, match="no customer passed validation"):
        run_ingest(spark, config, subject_key)
    reports = list((tmp_path / "snapshots").glob("*/rejects.json"))
    assert len(reports) == 1
    assert json.loads(reports[0].read_text())["tables"]["customers"]["rejected"] == {
        "bad_identifier": 1}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"member_id": "bk", "tables": {"loans": {"path": "l.csv"}}}, "must include customers"),
        ({"member_id": "bk", "tables": {"customers": {"path": "c.csv"}, "cars": {"path": "x"}}},
         "unknown table 'cars'"),
        ({"member_id": "bk", "tables": {"customers": {"path": "c.csv",
                                                     "columns": {"colour": "c"}}}},
         "maps 'colour', which is not a column of customers"),
        ({"member_id": "bk"}, "either tables"),
        ({"member_id": "B A D", "tables": {"customers": {"path": "c.csv"}}}, "member_id"),
    ],
)
def test_config_errors(tmp_path: Path, doc: dict[str, Any], message: str) -> None:
    path = tmp_path / "ingest.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigurationError, match=message):
        load_ingest_config(path)


def test_an_interrupted_ingest_leaves_no_loadable_snapshot(
    tmp_path: Path, spark: SparkSession, subject_key: SubjectKey,
) -> None:
    write_institution(tmp_path)

    class Interrupt:
        def step(self, description: str) -> None:
            if description == "feature statistics":  # the Parquet is written by now
                raise KeyboardInterrupt

        def tasks(self, done: int, total: int) -> None:
            pass

    with pytest.raises(KeyboardInterrupt):
        run_ingest(spark, load_ingest_config(tmp_path / "ingest.yaml"), subject_key,
                   reporter=Interrupt())
    (partial,) = [p for p in (tmp_path / "snapshots").iterdir() if not p.name.startswith(".")]
    assert (partial / "subjects").is_dir() and not (partial / MANIFEST_NAME).exists()
    assert not list((tmp_path / "snapshots").glob(".work-*"))


def test_uci_vertical_split_loads_as_two_institutions(
    spark: SparkSession, subject_key: SubjectKey, tmp_path: Path,
) -> None:
    data = Path(__file__).resolve().parents[2] / "data" / "uci"
    results = {}
    for member in ("guest", "host"):
        doc = yaml.safe_load((data / f"{member}.yaml").read_text())
        doc["output_dir"] = str(tmp_path / member)
        doc["base_dir"] = str(data)
        from node.ingest.config import IngestConfig

        results[member] = run_ingest(spark, IngestConfig.model_validate(doc), subject_key)
    guest, host = results["guest"], results["host"]
    assert guest.manifest.subjects == host.manifest.subjects == 30_000
    assert guest.manifest.feature_names == tuple(f"guest_x{i}" for i in range(13))
    assert "guest_y" not in guest.manifest.feature_names  # the label stays home
    assert host.manifest.feature_names == tuple(f"host_x{i}" for i in range(10))
    stats = {f.name: f for f in host.manifest.features}
    assert stats["host_x0"].mean == pytest.approx(0.0, abs=1e-3)  # z-scored upstream
    assert stats["host_x0"].std == pytest.approx(1.0, abs=1e-2)
    # The same person has the same pseudonym at both: the join key of the alliance.
    p25115 = pseudonymize(subject_key, "opaque", "25115").value
    assert p25115 in _subjects(guest) and p25115 in _subjects(host)
    assert math.isclose(_subjects(host)[p25115]["host_x0"], 1.483795, rel_tol=1e-9)
