"""A party's training table: every bad input named by column and line, never by value."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fedcredit.errors import ErrorCode, TrainingDataError
from node.training.party_data import from_frame, read_csv

pytestmark = pytest.mark.unit


def frame(**columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame({k: [None if v is None else str(v) for v in vs]
                         for k, vs in columns.items()})


GOOD: dict[str, list[object]] = {
    "id": ["a", "b", "c", "d"], "y": [0, 1, 0, 1], "f": [1.5, 2.5, 3.5, 9.0],
}


def test_a_good_table() -> None:
    table = from_frame(frame(**GOOD), "g.csv", "id", "y")
    assert table.ids == ("a", "b", "c", "d") and table.feature_names == ("f",)
    assert table.labels is not None and table.labels.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("columns", "label", "message"),
    [
        ({**GOOD, "id": None}, "y", "id column 'id' not found"),
        ({**GOOD, "id": ["a", "b", "a", "d"]}, "y",
         "1 duplicate id(s) in column 'id' at lines 2, 4"),
        ({**GOOD, "id": ["a", "", "c", "d"]}, "y", "empty id at line 3"),
        ({**GOOD, "y": [0, 1, 2, 1]}, "y",
         "must hold 0 or 1 (1 = default); other or missing values at line 4"),
        ({**GOOD, "y": [0, "yes", 0, 1]}, "y", "at line 3"),
        ({**GOOD, "y": [0, 0, 0, 0]}, "y", "one class only"),
        ({**GOOD, "f": [1, "1,5", 2, 3]}, "y", "column 'f' has non-numeric values at line 3"),
        ({**GOOD}, "label", "label column 'label' not found"),
        ({"id": GOOD["id"], "y": GOOD["y"], "c": [1, 1, 1, 1], "m": [None] * 4}, "y",
         "no usable feature left"),
    ],
)
def test_bad_tables_are_refused_with_a_clear_message(columns, label, message) -> None:
    columns = {k: v for k, v in columns.items() if v is not None}
    with pytest.raises(TrainingDataError) as err:
        from_frame(frame(**columns), "g.csv", "id", label)
    assert err.value.code is ErrorCode.TRAINING_DATA_INVALID
    assert message in err.value.detail
    assert "1,5" not in err.value.detail and "yes" not in err.value.detail  # never a value


def test_constant_and_empty_features_are_dropped_with_a_warning() -> None:
    table = from_frame(frame(**GOOD, c=[7, 7, 7, 7], m=[None] * 4), "g.csv", "id", "y")
    assert table.feature_names == ("f",)
    assert any("'c' is constant" in w for w in table.warnings)
    assert any("'m' is missing everywhere" in w for w in table.warnings)


def test_csv_files(tmp_path: Path) -> None:
    path = tmp_path / "host.csv"
    path.write_text("key,a,b\nk1,1.0,\nk2,2.0,3\nk3,NA,4\n")
    table = read_csv(path, "key", None)
    assert table.labels is None and table.rows == 3
    assert pd.isna(table.values[0, 1]) and pd.isna(table.values[2, 0])
    with pytest.raises(TrainingDataError, match="no such file"):
        read_csv(tmp_path / "missing.csv", "key", None)


def test_a_host_refuses_malformed_alignments_and_psi_payloads() -> None:
    from fedcredit.errors import InvalidRequestError
    from mpc.psi import split_points
    from node.training.host import alignment_positions

    good = alignment_positions({"train": [2, 0], "valid": [1], "test": []}, 3)
    assert good["train"].tolist() == [2, 0]
    for bad in ({"train": [3], "valid": [], "test": []},
                {"train": [0, 1], "valid": [1], "test": []},
                {"train": [-1], "valid": [], "test": []},
                {"train": ["x"], "valid": [], "test": []},
                {"train": [0]}):
        with pytest.raises(InvalidRequestError):
            alignment_positions(bad, 3)
    assert len(split_points(bytes(64))) == 2
    with pytest.raises(InvalidRequestError):
        split_points(bytes(33))
