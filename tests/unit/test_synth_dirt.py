"""Bad-row injection and the background writer, without files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from fedcredit.synth import dirt
from fedcredit.synth.dirt import Defect, DirtKind, applicable_defects, draw_dirt, interleave
from fedcredit.synth.writer import BackgroundWriter

pytestmark = pytest.mark.unit


def test_defects_follow_the_columns_a_member_has() -> None:
    shop = ("customer_id", "identifier", "birth_date", "customer_since")
    assert {d.reason for d in applicable_defects("customers", shop)} == {
        "duplicate_key", "duplicate_identifier", "bad_identifier", "future:birth_date",
        "future:customer_since"}
    finco = (*shop, "identifier_type", "monthly_income")
    reasons = {d.reason for d in applicable_defects("customers", finco)}
    assert {"not_allowed:identifier_type", "negative:monthly_income"} <= reasons
    assert Defect(DirtKind.ORPHAN_REFERENCE) in applicable_defects("repayments", ("loan_id",))


def test_the_dirty_rate_sets_how_many_and_zero_means_none() -> None:
    rng = np.random.default_rng(1)
    columns = ("transaction_id", "customer_id", "ts", "amount", "direction", "category")
    assert draw_dirt(rng, "transactions", columns, 100_000, 0.0) == {}
    counts = draw_dirt(rng, "transactions", columns, 100_000, 0.01)
    assert set(counts) == set(applicable_defects("transactions", columns))
    rows = sum(n * d.rows_each for d, n in counts.items())
    assert 800 < rows < 1200
    assert counts[Defect(DirtKind.DUPLICATE_KEY)] * 2 == pytest.approx(rows / 5, rel=0.3)


@pytest.mark.parametrize("bad", [1, 7, 300])
def test_interleaving_keeps_clean_order_and_both_ways_agree(
    bad: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = pa.table({"k": np.arange(1000)})
    dirty = pa.table({"k": -1 - np.arange(bad)})
    by_slices = interleave(np.random.default_rng(9), clean, dirty)
    monkeypatch.setattr(dirt, "_SLICE_LIMIT", 0)
    by_take = interleave(np.random.default_rng(9), clean, dirty)
    assert by_slices.combine_chunks().equals(by_take.combine_chunks())
    values = np.array(by_take.column("k").to_pylist())
    assert (values[values >= 0] == np.arange(1000)).all()
    assert sorted(values[values < 0].tolist()) == sorted(dirty.column("k").to_pylist())
    if bad > 1:
        assert not (values[values < 0] == dirty.column("k").to_numpy()).all()  # shuffled


class _Sink:
    def __init__(self, fail_on: int | None = None) -> None:
        self.rows: list[int] = []
        self.fail_on = fail_on

    def write(self, table: pa.Table) -> None:
        value = table.column("k")[0].as_py()
        if value == self.fail_on:
            raise OSError("disk full")
        self.rows.append(value)


def test_the_background_writer_keeps_order_and_reports_a_failed_write() -> None:
    sink = _Sink()
    writer = BackgroundWriter(depth=2)
    for k in range(20):
        writer.submit(sink, pa.table({"k": [k]}))
    writer.close()
    assert sink.rows == list(range(20))

    failing = _Sink(fail_on=3)
    writer = BackgroundWriter(depth=2)
    with pytest.raises(OSError, match="disk full"):
        for k in range(50):
            writer.submit(failing, pa.table({"k": [k]}))
        writer.close()
    writer.stop()
    assert failing.rows == [0, 1, 2]
