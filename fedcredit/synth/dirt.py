"""Deliberately bad rows, of the kinds a real extract has, counted exactly.

Every bad row is an extra row with exactly one defect, copied from a random clean row of the
same table and chunk. No other row refers to it, so rejecting it never takes a clean row down
with it, and the clean rows are the same at every dirty rate (dirt draws from its own random
stream, and its keys from a range clean rows never use). Counts are kept per table and reject
reason, named as the ingest names them (:mod:`node.ingest.validation`), so a run's summary is
exactly the reject report an ingest of its files must produce:

* ``bad_identifier``: a customer whose id fails its check character (malformed identifier).
* ``negative:<column>``: an amount below zero.
* ``future:<column>``: a date after the as-of date (a timestamp at least a day after it).
* ``not_allowed:<column>``: a value outside the data model's allowed set (unknown enum).
* ``duplicate_key``: two extra rows sharing a fresh primary key; both count (which one is
  right is unknowable).
* ``duplicate_identifier``: two extra customer records of one person; both count.
* ``orphan``: a reference to a customer or loan that the referenced table does not have.

A customer row added as dirt carries the valid id of somebody outside the population, so no
real person gains a second customer record at a member.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedcredit.synth.dates import SECONDS_PER_DAY, HistoryWindow, date_array, timestamp_array
from fedcredit.synth.identifiers import (
    DIRTY_KEY_BASE,
    IDENTIFIER_SLOTS,
    IdentifierSpace,
    fixed_width_strings,
    styled,
    with_wrong_check,
)
from fedcredit.synth.tables import MemberKeys
from node.ingest.datamodel import TABLES_BY_NAME


class DirtKind(StrEnum):
    MALFORMED_IDENTIFIER = "malformed_identifier"
    NEGATIVE_AMOUNT = "negative_amount"
    FUTURE_DATE = "future_date"
    UNKNOWN_ENUM = "unknown_enum"
    DUPLICATE_KEY = "duplicate_key"
    DUPLICATE_IDENTIFIER = "duplicate_identifier"
    ORPHAN_REFERENCE = "orphan_reference"


#: Columns each kind may spoil, per table (one is picked per bad row, among those present).
_COLUMNS = {
    DirtKind.NEGATIVE_AMOUNT: {
        "customers": ("monthly_income",), "loans": ("principal", "balance", "credit_limit"),
        "repayments": ("due_amount", "paid_amount"), "transactions": ("amount",)},
    DirtKind.FUTURE_DATE: {
        "customers": ("birth_date", "customer_since"), "loans": ("open_date", "close_date"),
        "repayments": ("paid_date",), "transactions": ("ts",), "inquiries": ("inquiry_date",)},
    DirtKind.UNKNOWN_ENUM: {
        "customers": ("identifier_type",), "loans": ("product", "status"),
        "transactions": ("direction", "category"), "inquiries": ("purpose",)},
}
_PAIRED = (DirtKind.DUPLICATE_KEY, DirtKind.DUPLICATE_IDENTIFIER)
#: Values outside every allowed set, whatever case an ingest folds them to.
UNKNOWN_VALUES = {
    "identifier_type": ("passport", "national_id"), "product": ("payday", "heloc"),
    "status": ("frozen", "suspended"), "category": ("crypto", "atm_fee"),
    "direction": ("refund", "reversal"), "purpose": ("prequalification", "bnpl_check"),
}
_REASONS = {DirtKind.MALFORMED_IDENTIFIER: "bad_identifier", DirtKind.NEGATIVE_AMOUNT: "negative",
            DirtKind.FUTURE_DATE: "future", DirtKind.UNKNOWN_ENUM: "not_allowed",
            DirtKind.DUPLICATE_KEY: "duplicate_key",
            DirtKind.DUPLICATE_IDENTIFIER: "duplicate_identifier",
            DirtKind.ORPHAN_REFERENCE: "orphan"}
#: A bad timestamp is this many days after the as-of date or more: "after the as-of date"
#: whatever time zone a reader puts a naive timestamp in.
_FUTURE_TS_MIN_DAYS = 2


@dataclass(frozen=True, order=True)
class Defect:
    """One kind of bad row, on one column where the kind needs one."""

    kind: DirtKind
    column: str | None = None

    @property
    def reason(self) -> str:
        """The ingest's reject reason for such a row."""
        base = _REASONS[self.kind]
        return f"{base}:{self.column}" if self.column else base

    @property
    def rows_each(self) -> int:
        return 2 if self.kind in _PAIRED else 1


def applicable_defects(table: str, columns: tuple[str, ...]) -> tuple[Defect, ...]:
    """The defects a table with these (canonical) columns can have."""
    defects = [Defect(DirtKind.DUPLICATE_KEY)]
    if table == "customers":
        defects += [Defect(DirtKind.MALFORMED_IDENTIFIER),
                    Defect(DirtKind.DUPLICATE_IDENTIFIER)]
    else:
        defects.append(Defect(DirtKind.ORPHAN_REFERENCE))
    for kind, candidates in _COLUMNS.items():
        defects += [Defect(kind, c) for c in candidates.get(table, ()) if c in columns]
    return tuple(sorted(defects))


class DirtyKeys:
    """Hands out keys and people no clean row uses (one per member; it counts)."""

    def __init__(self, keys: MemberKeys, space: IdentifierSpace, subjects: int) -> None:
        self._keys = keys
        self._space = space
        self._subjects = subjects
        self._used: dict[str, int] = {}
        self._ghosts = 0

    def keys(self, table: str, count: int) -> pa.Array:
        start = DIRTY_KEY_BASE + self._used.get(table, 0)
        self._used[table] = self._used.get(table, 0) + count
        return self._keys.keys(table, start + np.arange(count))

    def ghost_matrix(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Valid ids (uint8 [n, 18]) of people outside the population."""
        span = IDENTIFIER_SLOTS - self._subjects
        index = self._subjects + (self._ghosts + np.arange(count)) % span
        self._ghosts += count
        birth = rng.integers(-7000, 10_000, count)  # 1950..1997
        return self._space.cn_matrix(index, birth)

    def ghost_identifiers(self, rng: np.random.Generator, count: int, *,
                          malformed: bool = False) -> pa.Array:
        """Valid (or, if asked, malformed) ids of people outside the population."""
        matrix = self.ghost_matrix(rng, count)
        return fixed_width_strings(with_wrong_check(matrix, rng) if malformed else matrix)


def draw_dirt(rng: np.random.Generator, table: str, columns: tuple[str, ...], clean_rows: int,
              rate: float) -> dict[Defect, int]:
    """How many of each defect to add: bad rows are about ``rate`` of the clean rows.

    The count of a paired defect is the number of pairs.
    """
    if rate <= 0 or clean_rows == 0:
        return {}
    defects = applicable_defects(table, columns)
    kinds = sorted({d.kind for d in defects})
    rows = rng.multinomial(int(rng.binomial(clean_rows, rate)), [1 / len(kinds)] * len(kinds))
    counts: dict[Defect, int] = {}
    for kind, total in zip(kinds, rows, strict=True):
        options = [d for d in defects if d.kind is kind]
        units = (int(total) + 1) // 2 if kind in _PAIRED else int(total)
        for defect, n in zip(options, rng.multinomial(units, [1 / len(options)] * len(options)),
                             strict=True):
            if n:
                counts[defect] = int(n)
    return counts


def _negative(values: pa.Array, rng: np.random.Generator) -> pa.Array:
    base = np.abs(pc.fill_null(values, 0.0).to_numpy(zero_copy_only=False))
    return pa.array(-np.round(base + rng.uniform(1.0, 500.0, len(base)), 2))


def _future(column: str, count: int, rng: np.random.Generator,
            window: HistoryWindow) -> pa.Array:
    if column == "ts":
        day = window.as_of + rng.integers(_FUTURE_TS_MIN_DAYS, 366, count)
        return timestamp_array(day * SECONDS_PER_DAY + rng.integers(0, SECONDS_PER_DAY, count))
    return date_array(window.as_of + rng.integers(1, 366, count))


def _spoil(rng: np.random.Generator, table: str, defect: Defect, rows: dict[str, pa.Array],
           supply: DirtyKeys, window: HistoryWindow) -> None:
    """Give template ``rows`` (fresh keys already) exactly the one defect."""
    count = len(rows[TABLES_BY_NAME[table].primary_key])
    column = defect.column
    if defect.kind is DirtKind.MALFORMED_IDENTIFIER:
        rows["identifier"] = supply.ghost_identifiers(rng, count, malformed=True)
    elif defect.kind is DirtKind.NEGATIVE_AMOUNT and column is not None:
        rows[column] = _negative(rows[column], rng)
    elif defect.kind is DirtKind.FUTURE_DATE and column is not None:
        rows[column] = _future(column, count, rng, window)
        if column == "open_date":  # else it would also close before it opened
            rows["close_date"] = pa.nulls(count, pa.date32())
        if column == "paid_date":  # a payment, not a gap
            rows["paid_amount"] = pc.coalesce(rows["paid_amount"], rows["due_amount"])
    elif defect.kind is DirtKind.UNKNOWN_ENUM and column is not None:
        rows[column] = pa.array(rng.choice(UNKNOWN_VALUES[column], count))
    elif defect.kind is DirtKind.ORPHAN_REFERENCE:
        name = "loan_id" if table == "repayments" else "customer_id"
        reference = TABLES_BY_NAME[table].column(name).references
        assert reference is not None
        rows[name] = supply.keys(reference.table, count)


def _templates(rng: np.random.Generator, clean: pa.Table, count: int) -> dict[str, pa.Array]:
    taken = clean.take(rng.integers(0, clean.num_rows, count))
    return {name: taken.column(name).combine_chunks() for name in clean.column_names}


def dirty_rows(rng: np.random.Generator, table: str, clean: pa.Table,
               counts: Mapping[Defect, int], supply: DirtyKeys,
               window: HistoryWindow) -> pa.Table:
    """The bad rows to add to ``clean`` (same schema): ``counts[d] * d.rows_each`` of each."""
    key = TABLES_BY_NAME[table].primary_key
    parts = []
    for defect, count in counts.items():
        rows = _templates(rng, clean, count)
        rows[key] = supply.keys(table, count)
        ghosts = supply.ghost_matrix(rng, count) if table == "customers" else None
        if ghosts is not None:
            rows["identifier"] = fixed_width_strings(ghosts)
        if defect.kind in _PAIRED:
            twins = _templates(rng, clean, count)
            if defect.kind is DirtKind.DUPLICATE_KEY:
                twins[key] = rows[key]
                if table == "customers":
                    twins["identifier"] = supply.ghost_identifiers(rng, count)
            else:  # the same person again, under another key, the id written differently
                assert ghosts is not None, "duplicate_identifier is a customers defect"
                twins[key] = supply.keys(table, count)
                twins["identifier"] = styled(ghosts, rng, lower_x=1.0, separated=0.5)
            parts.append(pa.table(twins).cast(clean.schema))
        else:
            _spoil(rng, table, defect, rows, supply, window)
        parts.append(pa.table(rows).cast(clean.schema))
    if not parts:
        return clean.schema.empty_table()
    return pa.concat_tables(parts)


#: Above this many bad rows in one table chunk, one ``take`` beats slicing around each.
_SLICE_LIMIT = 4096


def interleave(rng: np.random.Generator, clean: pa.Table, dirty: pa.Table) -> pa.Table:
    """Clean rows in order, with the dirty ones (shuffled) scattered among them."""
    if dirty.num_rows == 0:
        return clean
    dirty = dirty.take(pa.array(rng.permutation(dirty.num_rows)))
    cuts = np.sort(rng.integers(0, clean.num_rows + 1, dirty.num_rows))
    if dirty.num_rows > _SLICE_LIMIT:
        order = np.arange(clean.num_rows + dirty.num_rows)
        dirty_at = cuts + np.arange(dirty.num_rows)
        clean_at = np.ones(len(order), dtype=bool)
        clean_at[dirty_at] = False
        order[dirty_at] = clean.num_rows + np.arange(dirty.num_rows)
        order[clean_at] = np.arange(clean.num_rows)
        return pa.concat_tables([clean, dirty]).take(pa.array(order))
    pieces, previous = [], 0
    for row, cut in enumerate(cuts.tolist()):
        pieces += [clean.slice(previous, cut - previous), dirty.slice(row, 1)]
        previous = cut
    pieces.append(clean.slice(previous))
    return pa.concat_tables(pieces)
