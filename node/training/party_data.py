"""One party's training table: identifiers, numeric features, and (guest only) the label.

Validation is all-or-nothing and names columns and line numbers, never values (a value may be
personal data). Constant and all-missing features are dropped with a warning; a table left
with no feature is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedcredit.errors import TrainingDataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_SHOW = 5


def _lines(mask: npt.NDArray[np.bool_]) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(int(r) + 2) for r in rows[:_SHOW])  # +1 header, +1 one-based
    more = f" and {len(rows) - _SHOW} more" if len(rows) > _SHOW else ""
    return f"line{'s' if len(rows) > 1 else ''} {shown}{more}"


@dataclass(frozen=True)
class PartyTable:
    source: str
    ids: tuple[str, ...]
    feature_names: tuple[str, ...]
    values: FloatArray  # [rows, features], NaN = missing
    labels: IntArray | None
    warnings: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return len(self.ids)


def from_frame(
    frame: pd.DataFrame, source: str, id_column: str, label_column: str | None,
    exclude: Sequence[str] = (),
) -> PartyTable:
    """Validate a table whose cells are strings (as read from CSV) or numbers."""
    columns = [str(c) for c in frame.columns]
    if id_column not in columns:
        raise TrainingDataError(
            f"{source}: id column {id_column!r} not found (columns: {', '.join(columns[:12])})"
        )
    if len(frame) == 0:
        raise TrainingDataError(f"{source}: the table has no rows")
    ids = frame[id_column].astype("string").str.strip()
    empty = ids.isna() | (ids == "")
    if empty.any():
        raise TrainingDataError(f"{source}: empty id at {_lines(empty.to_numpy())}")
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        raise TrainingDataError(
            f"{source}: {int(ids.duplicated().sum())} duplicate id(s) in column {id_column!r} "
            f"at {_lines(dup)}"
        )
    labels = None
    if label_column is not None:
        if label_column not in columns:
            raise TrainingDataError(f"{source}: label column {label_column!r} not found")
        raw = pd.to_numeric(frame[label_column], errors="coerce")
        bad = ~raw.isin([0, 1]).to_numpy()
        if bad.any():
            raise TrainingDataError(
                f"{source}: label column {label_column!r} must hold 0 or 1 (1 = default); "
                f"other or missing values at {_lines(bad)}"
            )
        labels = raw.to_numpy().astype(np.int64)
        if len(np.unique(labels)) < 2:
            raise TrainingDataError(f"{source}: label column {label_column!r} has one class only")
    skip = {id_column, *(label_column,) * (label_column is not None), *exclude}
    names = [c for c in columns if c not in skip]
    warnings: list[str] = []
    kept: list[str] = []
    matrix: list[FloatArray] = []
    for name in names:
        cell = frame[name]
        numeric = pd.to_numeric(cell, errors="coerce")
        text = cell.astype("string").str.strip()
        not_numeric = (numeric.isna() & text.notna() & (text != "")).to_numpy()
        if not_numeric.any():
            raise TrainingDataError(
                f"{source}: column {name!r} has non-numeric values at {_lines(not_numeric)}"
            )
        values = numeric.to_numpy(dtype=float)
        present = values[~np.isnan(values)]
        if present.size == 0:
            warnings.append(f"{source}: feature {name!r} is missing everywhere; dropped")
            continue
        if np.all(present == present[0]):
            warnings.append(f"{source}: feature {name!r} is constant; dropped")
            continue
        if not np.all(np.isfinite(present)):
            raise TrainingDataError(f"{source}: column {name!r} has infinite values")
        kept.append(name)
        matrix.append(values)
    if not kept:
        raise TrainingDataError(f"{source}: no usable feature left ({'; '.join(warnings)})")
    return PartyTable(
        source=source,
        ids=tuple(str(i) for i in ids),
        feature_names=tuple(kept),
        values=np.column_stack(matrix),
        labels=labels,
        warnings=tuple(warnings),
    )


def read_csv(path: Path, id_column: str, label_column: str | None) -> PartyTable:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise TrainingDataError(f"{path}: no such file") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"{path}: not a readable CSV file ({type(exc).__name__})") from exc
    frame = frame.replace({"": None, "NA": None, "NaN": None, "nan": None, "null": None})
    return from_frame(frame, path.name, id_column, label_column)
