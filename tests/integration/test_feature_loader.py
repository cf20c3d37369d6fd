from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedcredit.errors import FeatureFileError
from mpc.pseudonym import SubjectKey, pseudonymize
from node.feature_loader import LoadSummary, load_features
from node.ingest.snapshot import EXPOSURE_COLUMNS, verify_snapshot
from node.store import FeatureStore, open_store

pytestmark = pytest.mark.integration
IDS = ["11010519491231002X", "110105194912310037"]
HEADER = "subject_id,id_type," + ",".join(EXPOSURE_COLUMNS) + ",income,dpd\n"


def valid_second_id() -> str:
    from mpc.pseudonym import cn_check_character

    first17 = "11010519800101003"
    return first17 + cn_check_character(first17)


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    opened = open_store(str(tmp_path / "features.sqlite3"), "bank")
    yield opened
    opened.close()


def load(path: Path, store: FeatureStore, key: SubjectKey) -> LoadSummary:
    return load_features(path, store, key, member_id="bank",
                         snapshot_root=path.parent / "snapshots")


def test_csv_rows_are_pseudonymized_and_typed(
    tmp_path: Path, store: FeatureStore, subject_key: SubjectKey
) -> None:
    other = valid_second_id()
    path = write_csv(tmp_path / "f.csv", [
        f"{IDS[0].lower()},cn_resident_id,150000,2,3,1,0,4,8200.5,",
        f"{other},cn_resident_id,0,0,1,0,0,0,,3",
    ])
    summary = load(path, store, subject_key)
    assert summary.rows == 2 and store.count() == 2
    record = store.lookup(pseudonymize(subject_key, "cn_resident_id", IDS[0]).value)
    assert record is not None
    assert record.exposures["outstanding_debt_cents"] == 150000
    assert record.features == {"income": 8200.5}  # empty cells are absent, not zero
    # The file became a verified snapshot of this member, and it is what the store serves.
    snapshot = tmp_path / "snapshots" / summary.snapshot.snapshot_id
    manifest = verify_snapshot(snapshot)
    assert (manifest.mode, manifest.member_id, manifest.feature_names) == (
        "feature_file", "bank", ("income", "dpd"))
    assert manifest.sources[0].sha256 == summary.source_sha256
    active = store.active()
    assert active is not None and active.snapshot_id == manifest.snapshot_id
    stored = [*tmp_path.glob("features.sqlite3*"), *snapshot.rglob("*.parquet")]
    for raw in (p.read_bytes() for p in stored):
        assert IDS[0].encode() not in raw and other.encode() not in raw


def test_parquet_is_loaded_too(tmp_path: Path, store: FeatureStore,
                               subject_key: SubjectKey) -> None:
    table = pa.table({
        "subject_id": [IDS[0]], "id_type": ["cn_resident_id"],
        **{c: [1] for c in EXPOSURE_COLUMNS}, "income": [1.5],
    })
    pq.write_table(table, tmp_path / "f.parquet")
    assert load(tmp_path / "f.parquet", store, subject_key).rows == 1


def test_a_bad_file_loads_nothing_and_the_old_data_keeps_serving(
    tmp_path: Path, store: FeatureStore, subject_key: SubjectKey
) -> None:
    first = load(write_csv(tmp_path / "ok.csv", [f"{IDS[0]},cn_resident_id,1,1,1,0,0,0,1,1"]),
                 store, subject_key)
    bad = write_csv(tmp_path / "bad.csv", [
        f"{valid_second_id()},cn_resident_id,1,1,1,0,0,0,1,1",
        f"{IDS[1]},cn_resident_id,1,1,1,0,0,0,1,1",       # wrong check digit
        f"{IDS[0]},cn_resident_id,1,1.5,1,0,0,0,1,1",      # fractional count
        f"{IDS[0]},cn_resident_id,1,1,1,0,0,0,1,1",        # duplicate (after row 3 fails)
        f"{IDS[0]},us_ssn,1,1,1,0,0,0,1,1",
    ])
    with pytest.raises(FeatureFileError) as info:
        load(bad, store, subject_key)
    message = info.value.detail
    assert "nothing loaded" in message
    assert "row 2, column subject_id: cn_resident_id check character" in message
    assert "row 3, column active_loans" in message
    assert "row 5, column subject_id" in message
    assert store.count() == 1
    assert [p.name for p in (tmp_path / "snapshots").iterdir()] == [first.snapshot.snapshot_id]
    assert store.lookup(pseudonymize(subject_key, "cn_resident_id", IDS[0]).value) is not None


def test_missing_columns_and_wrong_types(tmp_path: Path, store: FeatureStore,
                                         subject_key: SubjectKey) -> None:
    path = tmp_path / "m.csv"
    path.write_text("subject_id,id_type,active_loans\n" + f"{IDS[0]},cn_resident_id,1\n")
    with pytest.raises(FeatureFileError, match="missing required columns: outstanding_debt"):
        load(path, store, subject_key)
    text = write_csv(tmp_path / "t.csv", [f"{IDS[0]},cn_resident_id,1,1,1,0,0,0,high,1"])
    with pytest.raises(FeatureFileError, match="income is not numeric"):
        load(text, store, subject_key)
    with pytest.raises(FeatureFileError, match=r"expected a \.csv or \.parquet"):
        (tmp_path / "x.json").write_text("{}")
        load(tmp_path / "x.json", store, subject_key)
    with pytest.raises(FeatureFileError, match="does not exist"):
        load(tmp_path / "nope.csv", store, subject_key)


def test_malformed_rows_are_reported_without_their_contents(
    tmp_path: Path, store: FeatureStore, subject_key: SubjectKey
) -> None:
    path = tmp_path / "short.csv"
    path.write_text(HEADER + f"{IDS[0]},cn_resident_id,1,1,1,0,0,0,1,1\n"
                    f"{valid_second_id()},cn_resident_id,1,1\n")
    with pytest.raises(FeatureFileError) as info:
        load(path, store, subject_key)
    assert "Expected 10 columns, got 4" in info.value.detail
    assert valid_second_id() not in info.value.detail and IDS[0] not in info.value.detail


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("abc,1,1,0,0,0,1,1", "exposure column outstanding_debt_cents is not numeric"),
        ("100000000000000000000,1,1,0,0,0,1,1", "row 1, column outstanding_debt_cents"),
        ("9007199254740993,1,1,0,0,0,1,1", "must be below 2\\*\\*53"),
        ("1,1,1,0,0,0,1e300,1", "row 1, column income: must be finite"),
    ],
)
def test_out_of_range_and_mistyped_values_are_typed_errors(
    tmp_path: Path, store: FeatureStore, subject_key: SubjectKey, cells: str, message: str
) -> None:
    path = write_csv(tmp_path / "bad.csv", [f"{IDS[0]},cn_resident_id,{cells}"])
    with pytest.raises(FeatureFileError, match=message):
        load(path, store, subject_key)
    assert store.count() == 0
