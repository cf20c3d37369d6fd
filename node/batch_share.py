"""A member's shares for many subjects at once (portfolio jobs): the batch form of
:func:`node.contribution.contribution_for`, without the reason slots."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mpc.batch_he import BatchShare, clamp
from mpc.contribution import EXPOSURE_FIELDS
from node.ingest.snapshot import EXPOSURE_COLUMNS
from node.store.base import SubjectBatch
from scoring.model import ModelSlice


def batch_share(pseudonyms: Sequence[bytes], batch: SubjectBatch, model: ModelSlice,
                flagged: set[bytes]) -> tuple[BatchShare, int]:
    """This member's shares for the subjects (zero where it holds no record, except its own
    blacklist flag) and how many values had to be clamped to the ciphertexts' bounds."""
    rows = len(pseudonyms)
    partials = np.where(batch.found, model.partial_logits(batch.features, rows), 0.0)
    exposures = np.zeros((rows, len(EXPOSURE_FIELDS)), dtype=np.int64)
    exposures[:, : len(EXPOSURE_COLUMNS)] = batch.exposures
    columns = {name: i for i, name in enumerate(EXPOSURE_FIELDS)}
    exposures[:, columns["has_record"]] = batch.found
    exposures[:, columns["flagged"]] = [p in flagged for p in pseudonyms] if flagged else 0
    exposures[:, columns["with_active_loans"]] = batch.exposures[
        :, EXPOSURE_COLUMNS.index("active_loans")] > 0
    return clamp(partials, exposures)
