"""A member's training table, from what its node already holds.

Features come from the node's *active* feature snapshot (verified against its manifest before
use): one row per subject, the pseudonym as the row id, the snapshot's features as columns,
exposures left out. The guest (the lender with repayment outcomes) also reads its labels file
(``identifier_type``, ``identifier``, label column; CSV or Parquet), pseudonymizes every
identifier with the alliance subject key and keeps the labelled subjects its snapshot holds.
Identifiers never leave this module; PSI then runs over pseudonyms.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fedcredit.errors import FedCreditError, TrainingDataError
from mpc.pseudonym import SubjectKey, pseudonymize
from node.ingest.snapshot import PSEUDONYM_COLUMN, verify_snapshot
from node.store import FeatureStore
from node.store.encoding import read_batches
from node.training.party_data import PartyTable, from_frame

ID_COLUMN = "_pseudonym"
LABEL_COLUMN = "_label"
ID_TYPE_FIELD = "identifier_type"
IDENTIFIER_FIELD = "identifier"


@dataclass(frozen=True)
class MemberTable:
    table: PartyTable
    #: SHA-256 of what the table was built from (snapshot manifest, labels file): the
    #: registry's training-data fingerprint for this member.
    fingerprint: str
    snapshot_id: str


def _snapshot_frame(store: FeatureStore) -> tuple[pd.DataFrame, str, str]:
    active = store.active()
    if active is None:
        raise TrainingDataError("no feature snapshot is active at this member "
                                "(fedcredit node load-features)")
    directory = Path(active.source_dir)
    try:
        manifest = verify_snapshot(directory)
    except FedCreditError as exc:
        raise TrainingDataError(f"the active snapshot cannot be used: {exc.detail}") from exc
    except OSError as exc:
        raise TrainingDataError(f"the active snapshot's files cannot be read: {exc}") from exc
    frames = []
    for batch in read_batches(directory, manifest, 65_536):
        frame = batch.to_pandas()
        frames.append(frame[[PSEUDONYM_COLUMN, *manifest.feature_names]])
    if not frames:
        raise TrainingDataError("the active snapshot holds no subject")
    frame = pd.concat(frames, ignore_index=True)
    frame[ID_COLUMN] = frame.pop(PSEUDONYM_COLUMN).map(bytes.hex)
    digest = hashlib.sha256(json.dumps(manifest.to_dict(), sort_keys=True,
                                       default=str).encode()).hexdigest()
    return frame, digest, manifest.snapshot_id


def _read_labels(path: Path, label_column: str) -> tuple[pd.DataFrame, str]:
    try:
        raw = path.read_bytes()
        frame = (pq.read_table(path).to_pandas() if path.suffix == ".parquet"
                 else pd.read_csv(path, dtype=str, keep_default_na=False))
    except FileNotFoundError as exc:
        raise TrainingDataError(f"labels file {path} does not exist") from exc
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise TrainingDataError(f"labels file {path} cannot be read ({type(exc).__name__})"
                                ) from exc
    missing = [c for c in (ID_TYPE_FIELD, IDENTIFIER_FIELD, label_column)
               if c not in frame.columns]
    if missing:
        raise TrainingDataError(f"labels file {path.name}: missing column(s) "
                                f"{', '.join(missing)}")
    return frame, hashlib.sha256(raw).hexdigest()


def _pseudonymized(frame: pd.DataFrame, key: SubjectKey, source: str) -> list[str]:
    out = []
    for line, (id_type, identifier) in enumerate(
        zip(frame[ID_TYPE_FIELD], frame[IDENTIFIER_FIELD], strict=True), start=2
    ):
        try:
            out.append(pseudonymize(key, str(id_type), str(identifier)).value.hex())
        except (FedCreditError, ValueError):
            # Never the value itself: it is a personal identifier.
            raise TrainingDataError(f"{source}: invalid identifier or identifier type at "
                                    f"line {line}") from None
    return out


def member_table(store: FeatureStore, labels: Path | None = None,
                 label_column: str = "default", key: SubjectKey | None = None) -> MemberTable:
    """This member's table; with ``labels`` (the guest) only its labelled subjects."""
    frame, digest, snapshot_id = _snapshot_frame(store)
    label = None
    if labels is not None:
        if key is None:
            raise TrainingDataError("the subject key is needed to read labels")
        outcomes, labels_digest = _read_labels(labels, label_column)
        ids = _pseudonymized(outcomes, key, labels.name)
        outcomes = pd.DataFrame({ID_COLUMN: ids, LABEL_COLUMN: outcomes[label_column].to_numpy()})
        if outcomes[ID_COLUMN].duplicated().any():
            dup = np.flatnonzero(outcomes[ID_COLUMN].duplicated(keep=False).to_numpy()) + 2
            raise TrainingDataError(f"{labels.name}: the same subject is labelled more than once "
                                    f"(lines {', '.join(str(int(x)) for x in dup[:5])})")
        frame = frame.merge(outcomes, on=ID_COLUMN, how="inner")
        digest = hashlib.sha256(f"{digest}:{labels_digest}".encode()).hexdigest()
        label = LABEL_COLUMN
    table = from_frame(frame, f"snapshot {snapshot_id}", ID_COLUMN, label)
    return MemberTable(table, digest, snapshot_id)
