"""Snapshot rows as the store packs them: the same records as the snapshot contract reads."""

from __future__ import annotations

import math
import threading
from collections.abc import Generator, Iterator

import pyarrow as pa
import pytest

from fedcredit.errors import SnapshotError
from node.ingest.snapshot import EXPOSURE_COLUMNS, records_of, subjects_schema
from node.store.encoding import FeatureCodec, encode_batch, read_ahead

pytestmark = pytest.mark.unit
FEATURES = ("a", "b", "c")


def batch(changes: dict[str, list[object]] | None = None, n: int = 8) -> pa.RecordBatch:
    columns: dict[str, list[object]] = {
        "pseudonym": [bytes([i]) * 32 for i in range(n)],
        **{c: [i * 10 + k for i in range(n)] for k, c in enumerate(EXPOSURE_COLUMNS)},
        "a": [float(i) for i in range(n)],
        "b": [None if i % 2 else -1.5 * i for i in range(n)],
        "c": [math.inf if i == 3 else (math.nan if i == 4 else 1e15) for i in range(n)],
    }
    columns.update(changes or {})
    return pa.RecordBatch.from_pydict(columns, schema=subjects_schema(FEATURES))


@pytest.mark.parametrize("sliced", [False, True])
def test_packed_rows_decode_to_what_records_of_reads(sliced: bool) -> None:
    source = batch().slice(3, 4) if sliced else batch()
    encoded = encode_batch(source, FEATURES, "s")
    codec = FeatureCodec(FEATURES)
    decoded = [(p, dict(zip(EXPOSURE_COLUMNS, exposures, strict=True)), codec.decode(blob))
               for p, *exposures, blob in encoded.sql_rows()]
    expected = [(p, dict(r.exposures), dict(r.features)) for p, r in records_of(source, FEATURES)]
    assert decoded == expected and len(decoded) == source.num_rows


def test_absent_and_non_finite_features_are_absent_not_zero() -> None:
    rows = list(encode_batch(batch(), FEATURES, "s").sql_rows())
    codec = FeatureCodec(FEATURES)
    assert codec.decode(rows[1][-1]) == {"a": 1.0, "c": 1e15}  # b null
    assert codec.decode(rows[3][-1]) == {"a": 3.0}  # b null, c inf
    assert codec.decode(rows[4][-1]) == {"a": 4.0, "b": -6.0}  # c NaN


def test_a_snapshot_without_features_packs_empty_blobs() -> None:
    source = batch().select(["pseudonym", *EXPOSURE_COLUMNS])
    rows = list(encode_batch(source, (), "s").sql_rows())
    assert {row[-1] for row in rows} == {b""} and FeatureCodec(()).decode(b"") == {}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pseudonym": [b"short"] + [bytes([i]) * 32 for i in range(1, 8)]}, "not 32 bytes"),
        ({"active_loans": [-1] * 8}, "negative or not below 2\\*\\*53"),
        ({"inquiries_90d": [2**53] * 8}, "negative or not below 2\\*\\*53"),
    ],
)
def test_values_that_break_the_contract_are_refused(
    changes: dict[str, list[object]], message: str
) -> None:
    with pytest.raises(SnapshotError, match=message):
        encode_batch(batch(changes), FEATURES, "s")


def test_a_null_exposure_is_refused() -> None:
    nullable = pa.schema([f.with_nullable(True) for f in subjects_schema(FEATURES)])
    columns = batch().to_pydict()
    columns["active_loans"][2] = None
    with pytest.raises(SnapshotError, match="exposure active_loans is null"):
        encode_batch(pa.RecordBatch.from_pydict(columns, schema=nullable), FEATURES, "s")


def test_read_ahead_yields_everything_in_order_and_passes_errors_on() -> None:
    assert list(read_ahead(iter(range(50)))) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        raise KeyError("boom")

    reader = read_ahead(failing())
    assert next(reader) == 1
    with pytest.raises(KeyError, match="boom"):
        next(reader)


def test_read_ahead_stops_its_producer_when_the_consumer_stops() -> None:
    produced: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    reader = read_ahead(endless(), depth=2)
    assert [next(reader) for _ in range(5)] == list(range(5))
    assert isinstance(reader, Generator)
    reader.close()  # what a for loop left by an exception does
    assert threading.active_count() == before
    assert len(produced) <= 5 + 2 + 1
