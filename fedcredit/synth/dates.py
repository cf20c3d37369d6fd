"""Calendar arithmetic on whole arrays: dates are int days since 1970-01-01, times int seconds.

Arrow's ``date32`` and ``timestamp('s')`` are exactly these integers, so nothing is converted
row by row on the way to a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

SECONDS_PER_DAY = 86_400
_EPOCH = date(1970, 1, 1)


def epoch_day(day: date) -> int:
    return (day - _EPOCH).days


def month_of(days: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of each date."""
    return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def month_start(months: np.ndarray) -> np.ndarray:
    """The first day of each month (months since 1970-01)."""
    return months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def on_day_of_month(months: np.ndarray, day_of_month: np.ndarray) -> np.ndarray:
    """Day ``day_of_month`` (1..28, valid in every month) of each month."""
    return month_start(months) + day_of_month - 1


def year_month_day(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    stamp = days.astype("datetime64[D]")
    months = stamp.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (stamp - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def date_array(days: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    mask = None if valid is None else ~valid
    return pa.array(days.astype(np.int32), type=pa.date32(), mask=mask)


def timestamp_array(seconds: np.ndarray) -> pa.Array:
    return pa.array(seconds.astype(np.int64), type=pa.timestamp("s"))


@dataclass(frozen=True)
class HistoryWindow:
    """The ``months`` calendar months ending with the as-of date's month.

    Clean dates fall on or before ``as_of``; clean timestamps fall strictly before midnight
    starting ``as_of``, so they are "not after the as-of date" under either reading of it.
    """

    as_of: int  # epoch day
    months: int

    @classmethod
    def ending(cls, as_of: date, months: int) -> HistoryWindow:
        return cls(epoch_day(as_of), months)

    @property
    def as_of_month(self) -> int:
        return int(month_of(np.array([self.as_of]))[0])

    @property
    def as_of_day_of_month(self) -> int:
        return int(year_month_day(np.array([self.as_of]))[2][0])

    @property
    def month_indices(self) -> np.ndarray:
        """Months since 1970-01 of the window, oldest first."""
        return np.arange(self.as_of_month - self.months + 1, self.as_of_month + 1)

    @property
    def first_day(self) -> int:
        return int(month_start(self.month_indices[:1])[0])

    @property
    def as_of_second(self) -> int:
        """The first second that is no longer history."""
        return self.as_of * SECONDS_PER_DAY
