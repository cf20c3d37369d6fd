"""The demo's view of the members' snapshots: what each member knows, for checking results.

A real alliance never pools this; the demo does, on one machine, only to prove that every
joint result equals the plaintext computation over the pooled data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mpc.contribution import clamp_share
from node.ingest.snapshot import (
    EXPOSURE_COLUMNS,
    SubjectRecord,
    iter_records,
    records_of,
    verify_snapshot,
)
from scoring.model import ModelSlice
from scoring.reason_slots import ReasonSlot


def read_records(snapshot_dir: Path) -> dict[bytes, SubjectRecord]:
    manifest = verify_snapshot(snapshot_dir)
    out: dict[bytes, SubjectRecord] = {}
    for batch in iter_records(snapshot_dir, manifest):
        out.update(records_of(batch, manifest.feature_names))
    return out


@dataclass(frozen=True)
class PooledResult:
    """The plaintext answer for one subject over the pooled snapshots."""

    joint_logit: float
    exposures: dict[str, int]
    institutions_with_records: int
    institutions_with_active_loans: int = 0
    #: The joint reason-code slots (scoring.reason_slots), by group name.
    reason_groups: dict[str, float] = field(default_factory=dict)


def pooled_result(
    records: Mapping[str, Mapping[bytes, SubjectRecord]],
    models: Mapping[str, ModelSlice],
    pseudonym: bytes,
) -> PooledResult:
    logit = next(iter(models.values())).intercept
    exposures = dict.fromkeys(EXPOSURE_COLUMNS, 0)
    groups = {slot.name.lower(): 0.0 for slot in ReasonSlot}
    count = lenders = 0
    for member, known in records.items():
        record = known.get(pseudonym)
        if record is None:
            continue
        count += 1
        lenders += int(record.exposures["active_loans"] > 0)
        partial, slots = models[member].partials(record.features)
        logit += clamp_share(partial)  # as the node clamps
        for slot, value in slots.items():
            groups[slot.name.lower()] += clamp_share(value)
        for name in EXPOSURE_COLUMNS:
            exposures[name] += int(record.exposures[name])
    return PooledResult(logit, exposures, count, lenders, groups)
