"""`generate_alliance` on disk: files read back through each member's own ingest config."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import yaml

from fedcredit.errors import MalformedIdentifierError
from fedcredit.synth.alliance import generate_alliance
from fedcredit.synth.spec import AllianceSpec
from fedcredit.synth.summary import GenerationSummary
from fedcredit.synth.tables import ARROW_TYPES
from fedcredit.synth.writer import OutputNotEmptyError
from mpc.pseudonym import normalize_identifier
from node.ingest.config import load_ingest_config
from node.ingest.datamodel import TABLES, TABLES_BY_NAME, ColumnType

pytestmark = pytest.mark.integration
SEED = 11
Tables = dict[str, pa.Table]


def run(root: Path, name: str, **spec: Any) -> GenerationSummary:
    chunk = spec.pop("chunk", 700)
    return generate_alliance(AllianceSpec(**{"seed": SEED, **spec}), root / name,
                             chunk_subjects=chunk)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth")


@pytest.fixture(scope="module")
def dirty(root: Path) -> GenerationSummary:
    return run(root, "dirty", subjects=2500, institutions=3, dirty_rate=0.02)


@pytest.fixture(scope="module")
def clean(root: Path) -> GenerationSummary:
    return run(root, "clean", subjects=2500, institutions=3, dirty_rate=0.0)


@pytest.fixture(scope="module")
def wide(root: Path) -> GenerationSummary:
    return run(root, "wide", subjects=2000, institutions=8, dirty_rate=0.01, seed=5)


@pytest.fixture(scope="module")
def solo(root: Path) -> GenerationSummary:
    return run(root, "solo", subjects=1200, institutions=1, dirty_rate=0.0)


def read_member(member_dir: Path) -> tuple[dict[str, Any], Tables]:
    """A member's tables in canonical column names, read the way its ingest.yaml says."""
    config = yaml.safe_load((member_dir / "ingest.yaml").read_text())
    tables = {}
    for name, entry in config["tables"].items():
        mapping: dict[str, str] = entry["columns"]
        path = member_dir / entry["path"]
        if entry["format"] == "csv":
            types = {mapping.get(c.name, c.name): ARROW_TYPES[c.type]
                     for c in TABLES_BY_NAME[name].columns}
            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
                column_types=types, strings_can_be_null=True))
        else:
            table = pq.read_table(path)
        canonical = {local: c for c, local in mapping.items()}
        tables[name] = table.rename_columns([canonical.get(n, n) for n in table.column_names])
    return config, tables


def member_tables(summary: GenerationSummary) -> dict[str, Tables]:
    return {m.member_id: read_member(summary.out_dir / m.member_id)[1] for m in summary.members}


def normalized(identifiers: pa.Array | pa.ChunkedArray) -> list[str]:
    return [normalize_identifier("cn_resident_id", i) for i in identifiers.to_pylist()]


def _canonical_id(identifier: str | None) -> str | None:
    try:
        return None if identifier is None else normalize_identifier("cn_resident_id", identifier)
    except MalformedIdentifierError:
        return None


def _repeated(values: list[Any]) -> np.ndarray:
    counts = Counter(v for v in values if v is not None)
    return np.array([v is not None and counts[v] > 1 for v in values], dtype=bool)


def reject_reasons(tables: Tables, as_of: date) -> Counter[tuple[str, str]]:
    """Per table and reason, the rows an ingest following the data model must reject.

    Reasons are named as in ``node.ingest.validation``; every row must have at most one.
    """
    keys = {name: t.column(TABLES_BY_NAME[name].primary_key) for name, t in tables.items()}
    first_second_after = (as_of + timedelta(days=1) - date(1970, 1, 1)).days * 86_400
    found: Counter[tuple[str, str]] = Counter()
    for name, table in tables.items():
        model = TABLES_BY_NAME[name]
        masks: dict[str, np.ndarray] = {}

        def flag(reason: str, mask: Any, masks: dict[str, np.ndarray] = masks) -> None:
            masks[reason] = np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False),
                                       dtype=bool)

        for column in model.columns:
            if column.name not in table.column_names:
                continue
            values = table.column(column.name)
            if not column.nullable:
                flag(f"missing:{column.name}", pc.is_null(values))
            if column.non_negative:
                flag(f"negative:{column.name}", pc.less(values, 0))
            if column.not_in_future and column.type is ColumnType.DATE:
                flag(f"future:{column.name}", pc.greater(values, pa.scalar(as_of, pa.date32())))
            if column.not_in_future and column.type is ColumnType.TIMESTAMP:
                seconds = values.cast(pa.timestamp("s")).cast(pa.int64())
                flag(f"future:{column.name}", pc.greater_equal(seconds, first_second_after))
            if column.allowed is not None:
                allowed = pa.array(sorted(column.allowed))
                flag(f"not_allowed:{column.name}",
                     pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, allowed))))
            if column.references is not None:
                flag("orphan", pc.invert(pc.is_in(values, keys[column.references.table])))
        if name == "loans":
            flag("close_before_open", pc.less(table.column("close_date"),
                                              table.column("open_date")))
        flag("duplicate_key", pa.array(_repeated(keys[name].to_pylist())))
        if name == "customers":
            ids = [_canonical_id(i) for i in table.column("identifier").to_pylist()]
            flag("bad_identifier", pa.array([i is None for i in ids]))
            flag("duplicate_identifier", pa.array(_repeated(ids)))
        reasons_per_row = np.sum(list(masks.values()), axis=0)
        assert reasons_per_row.max(initial=0) <= 1, f"{name}: a row with two defects"
        found.update({(name, r): int(m.sum()) for r, m in masks.items()})
    return +found


def injected(summary: GenerationSummary, member_id: str) -> Counter[tuple[str, str]]:
    dirt = summary.member(member_id).dirty
    return +Counter({(t, k): n for t, kinds in dirt.items() for k, n in kinds.items()})


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(
    root: Path, dirty: GenerationSummary
) -> None:
    again = run(root, "again", subjects=2500, institutions=3, dirty_rate=0.02)
    files = sorted(p.relative_to(dirty.out_dir) for p in dirty.out_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again.out_dir)
                           for p in again.out_dir.rglob("*") if p.is_file())
    for path in files:
        assert (dirty.out_dir / path).read_bytes() == (again.out_dir / path).read_bytes(), path
    other = run(root, "other", subjects=2500, institutions=3, dirty_rate=0.02, seed=SEED + 1)
    for name in ("labels.parquet", "bank/raw/customers.parquet", "shop/raw/transactions.csv"):
        assert (dirty.out_dir / name).read_bytes() != (other.out_dir / name).read_bytes()


def test_clean_data_breaks_no_rule(clean: GenerationSummary, solo: GenerationSummary) -> None:
    for summary in (clean, solo):
        assert summary.dirty_total == 0
        for member_id, tables in member_tables(summary).items():
            assert reject_reasons(tables, summary.spec.as_of) == Counter(), member_id


def test_injected_bad_rows_are_exactly_what_the_files_hold(dirty: GenerationSummary,
                                                           wide: GenerationSummary) -> None:
    for summary in (dirty, wide):
        assert summary.dirty_total > 0
        for member_id, tables in member_tables(summary).items():
            assert reject_reasons(tables, summary.spec.as_of) == injected(summary, member_id)
    kinds = {r.split(":")[0] for m in wide.members for t in m.dirty.values() for r in t}
    assert kinds == {"bad_identifier", "negative", "future", "not_allowed", "duplicate_key",
                     "duplicate_identifier", "orphan"}


def test_bad_rows_are_added_to_the_clean_rows_never_in_place_of_them(
    clean: GenerationSummary, dirty: GenerationSummary
) -> None:
    clean_tables, dirty_tables = member_tables(clean), member_tables(dirty)
    for member_id, tables in clean_tables.items():
        for name, table in tables.items():
            key = TABLES_BY_NAME[name].primary_key
            spoiled = dirty_tables[member_id][name]
            kept = spoiled.filter(pc.is_in(spoiled.column(key), table.column(key)))
            assert kept.sort_by(key).equals(table.sort_by(key)), (member_id, name)
            assert spoiled.num_rows == table.num_rows + dirty.member(member_id).dirty_rows(name)


def test_every_config_maps_only_columns_its_files_have(wide: GenerationSummary,
                                                       solo: GenerationSummary) -> None:
    formats = set()
    for summary in (wide, solo):
        for member in summary.members:
            member_dir = summary.out_dir / member.member_id
            config = yaml.safe_load((member_dir / "ingest.yaml").read_text())
            assert load_ingest_config(member_dir / "ingest.yaml").member_id == member.member_id
            assert "window_months" not in config  # the ingest's default, 12
            assert config["as_of"] == summary.spec.as_of.isoformat()
            assert config["identifier_type"] == "cn_resident_id"
            assert config["output_dir"] == "snapshots"
            files = sorted(p.stem for p in (member_dir / "raw").iterdir())
            assert sorted(config["tables"]) == files
            for name, entry in config["tables"].items():
                formats.add(entry["format"])
                path = member_dir / entry["path"]
                assert path.suffix == "." + entry["format"]
                header = (pq.read_schema(path).names if entry["format"] == "parquet"
                          else path.read_text().splitlines()[0].replace('"', "").split(","))
                mapping = entry["columns"]
                assert set(mapping.values()) <= set(header), (member.member_id, name)
                assert set(mapping) <= set(TABLES_BY_NAME[name].column_names)
                assert all(canonical != local for canonical, local in mapping.items())
                for column in TABLES_BY_NAME[name].columns:
                    if column.required:
                        assert mapping.get(column.name, column.name) in header, column.name
    assert formats == {"parquet", "csv"}


def test_a_single_institution_is_a_universal_bank_holding_everything(
    solo: GenerationSummary,
) -> None:
    (member,) = solo.members
    tables = read_member(solo.out_dir / member.member_id)[1]
    assert sorted(tables) == sorted(t.name for t in TABLES)
    assert all(tables[t.name].num_rows > 0 for t in TABLES)
    labels = pq.read_table(solo.out_dir / "labels.parquet")
    assert sorted(normalized(tables["customers"].column("identifier"))) == sorted(
        labels.column("identifier").to_pylist())


def test_customer_bases_overlap_and_nobody_sees_everyone(clean: GenerationSummary) -> None:
    tables = member_tables(clean)
    holders: Counter[str] = Counter()
    local_ids: dict[str, set[str]] = {}
    for member_id, member in tables.items():
        ids = normalized(member["customers"].column("identifier"))
        assert len(set(ids)) == len(ids) < clean.spec.subjects
        holders.update(ids)
        local_ids[member_id] = set(member["customers"].column("customer_id").to_pylist())
    assert len(holders) == clean.spec.subjects  # everyone is somebody's customer
    spread = Counter(holders.values())
    assert spread[2] > 0 and spread[3] > 0
    assert not local_ids["bank"] & local_ids["finco"] and not local_ids["bank"] & local_ids["shop"]


def test_lenders_in_the_labels_are_the_members_holding_a_loan(clean: GenerationSummary) -> None:
    lenders: Counter[str] = Counter()
    for member in member_tables(clean).values():
        customers, loans = member["customers"], member["loans"]
        borrowers = pc.is_in(customers.column("customer_id"), loans.column("customer_id"))
        lenders.update(normalized(customers.filter(borrowers).column("identifier")))
    labels = pq.read_table(clean.out_dir / "labels.parquet").to_pydict()
    assert labels["lenders"] == [lenders[i] for i in labels["identifier"]]
    assert set(labels["identifier_type"]) == {"cn_resident_id"}
    by_lenders = {s.lenders: s for s in clean.strata}
    assert by_lenders[2].subjects > 0 and by_lenders[3].subjects > 0
    one = by_lenders[1].default_rate
    assert by_lenders[2].default_rate > one and by_lenders[3].default_rate > one
    default, count = np.array(labels["default"]), np.array(labels["lenders"])
    assert {s.lenders: (s.subjects, s.defaults) for s in clean.strata} == {
        int(k): (int((count == k).sum()), int(default[count == k].sum())) for k in set(count)}


def test_no_history_starts_before_the_customer_relationship(clean: GenerationSummary) -> None:
    for member_id, tables in member_tables(clean).items():
        since = dict(zip(tables["customers"].column("customer_id").to_pylist(),
                         tables["customers"].column("customer_since").to_pylist(), strict=True))
        events = [("loans", "open_date"), ("inquiries", "inquiry_date"), ("transactions", "ts")]
        for table, column in events:
            if table not in tables:
                continue
            for customer, when in zip(tables[table].column("customer_id").to_pylist(),
                                      tables[table].column(column).to_pylist(), strict=True):
                day = when.date() if isinstance(when, datetime) else when
                assert since[customer] <= day, (member_id, table, customer)


def test_ids_come_styled_and_optional_columns_have_nulls(wide: GenerationSummary) -> None:
    tables = member_tables(wide)
    raw = [i for m in tables.values() for i in m["customers"].column("identifier").to_pylist()]
    assert any(" " in i for i in raw) and any("-" in i for i in raw)
    assert any(i.endswith("x") for i in raw)
    assert tables["bank"]["customers"].column("monthly_income").null_count > 0
    assert tables["shop"]["customers"].column("birth_date").null_count > 0
    assert "monthly_income" not in tables["shop"]["customers"].column_names
    assert "transactions" not in tables["finco"] and "inquiries" not in tables["bank"]


def test_csv_dates_and_timestamps_are_iso(wide: GenerationSummary) -> None:
    lines = (wide.out_dir / "shop" / "raw" / "transactions.csv").read_text().splitlines()
    assert lines[0] == ('"transactionId","customerId","createdAt","amount","direction",'
                        '"category"')
    stamp = re.compile(r'^"[^"]+","[^"]+","\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d",')
    assert all(stamp.match(line) for line in lines[1:])
    loans = (wide.out_dir / "shop" / "raw" / "loans.csv").read_text().splitlines()[1]
    assert re.search(r",\d{4}-\d\d-\d\d,", loans)


def test_the_summary_file_matches_the_files(wide: GenerationSummary) -> None:
    import json

    document = json.loads((wide.out_dir / "alliance.json").read_text())
    assert document == json.loads(json.dumps(wide.to_document()))
    for member_id, tables in member_tables(wide).items():
        assert {n: t.num_rows for n, t in tables.items()} == wide.member(member_id).rows
    assert 0.15 <= wide.default_rate <= 0.25


def test_a_non_empty_folder_is_refused_unless_overwriting(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "bank3" / "raw").mkdir(parents=True)
    (out / "bank3" / "raw" / "customers.parquet").write_text("stale")
    (out / "notes.txt").write_text("mine")
    spec = AllianceSpec(subjects=300, institutions=2, dirty_rate=0.0)
    with pytest.raises(OutputNotEmptyError):
        generate_alliance(spec, out)
    seen: list[tuple[int, int]] = []
    generate_alliance(spec, out, overwrite=True, chunk_subjects=128,
                      progress=lambda done, total: seen.append((done, total)))
    assert seen == [(128, 300), (256, 300), (300, 300)]
    assert not (out / "bank3" / "raw").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == [
        "alliance.json", "bank", "bank3", "finco", "labels.parquet", "notes.txt"]
