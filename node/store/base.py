"""The online feature store: versioned snapshots side by side, one of them active.

Each loaded snapshot (:mod:`node.ingest.snapshot`) has its own rows table; an ``active_subjects``
view names the active one and a one-row ``active_snapshot`` table records it for listings. Both
change in one transaction, and :meth:`FeatureStore.lookup` is one statement over the view, so a
switch made by another process (the CLI loading or rolling back) is seen on the serving node's
next lookup, which never sees half a snapshot or a mix of two.

A load writes the new rows table next to the active one and only then switches. A load that
raises leaves the previous snapshot serving and its own entry listed as ``failed``; one that is
killed leaves it ``incomplete``. The next open or load of the store removes their partial rows
(and marks a dead ``incomplete`` entry ``failed``), the next load their entries.

Loads, rollbacks, pruning and that clean-up run under the store's *load lock* — a file lock
(SQLite) or a session advisory lock (PostgreSQL), released by the kernel or the server when its
holder dies — so a second load or rollback waits for the running one instead of interleaving
with it, and clean-up never touches a load that is still running.

Loading a snapshot id the store already holds is idempotent: with the same manifest it
re-activates the retained rows (or reloads them from the directory if they were pruned); with a
different manifest it is a :class:`~fedcredit.errors.SnapshotError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.clock import Clock
from fedcredit.errors import (
    ConfigurationError,
    FeatureStoreUnavailableError,
    SnapshotError,
    SnapshotNotFoundError,
)
from node.ingest.snapshot import (
    EXPOSURE_COLUMNS,
    MANIFEST_NAME,
    SnapshotManifest,
    SubjectRecord,
    verify_snapshot,
)
from node.store.encoding import EncodedBatch, FeatureCodec, encoded_batches

log = logging.getLogger(__name__)

#: Loaded snapshots whose rows are kept (the active one is always kept on top).
DEFAULT_RETAIN = 3
DEFAULT_BATCH_ROWS = 50_000
Progress = Callable[[int], None]


class SnapshotState(StrEnum):
    INCOMPLETE = "incomplete"  # being loaded (or its loader died and nobody opened the store since)
    FAILED = "failed"  # its load raised or its loader died; partial rows are removed on the next
    #                    open or load, the entry itself on the next load
    LOADED = "loaded"  # rows retained: can be (re)activated at once
    PRUNED = "pruned"  # rows removed by retention: rollback reloads it from its directory


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    state: SnapshotState
    active: bool
    subjects: int
    created_unix_ms: int
    loaded_unix_ms: int | None  # last time its rows were (re)loaded
    member_id: str
    as_of: str
    mode: str
    features: tuple[str, ...]
    source_dir: str


def manifest_json(manifest: SnapshotManifest) -> str:
    return json.dumps(manifest.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class SnapshotEntry:
    """One row of a store's ``snapshots`` table (the backends' common currency)."""

    key: int  # never reused: names the rows table ``subjects_<key>``
    snapshot_id: str
    state: SnapshotState
    active: bool
    loaded_unix_ms: int | None
    source_dir: str
    manifest: str  # manifest_json() of the loaded manifest

    def info(self) -> SnapshotInfo:
        manifest = SnapshotManifest.from_dict(json.loads(self.manifest))
        return SnapshotInfo(
            snapshot_id=manifest.snapshot_id,
            state=self.state,
            active=self.active,
            subjects=manifest.subjects,
            created_unix_ms=manifest.created_unix_ms,
            loaded_unix_ms=self.loaded_unix_ms,
            member_id=manifest.member_id,
            as_of=manifest.as_of,
            mode=manifest.mode,
            features=manifest.feature_names,
            source_dir=self.source_dir,
        )


@dataclass(frozen=True)
class SubjectBatch:
    """What this member knows about many subjects at once (portfolio jobs), row i for the
    i-th pseudonym asked: ``found`` (has a record), the exposure integers (0 without a
    record) in :data:`EXPOSURE_COLUMNS` order, and one float column per feature (NaN absent)."""

    found: np.ndarray[Any, np.dtype[np.bool_]]
    exposures: np.ndarray[Any, np.dtype[np.int64]]
    features: dict[str, np.ndarray[Any, np.dtype[np.float64]]]

    @classmethod
    def from_rows(cls, pseudonyms: Sequence[bytes], rows: Sequence[Sequence[Any]],
                  codec: Callable[[int], FeatureCodec]) -> SubjectBatch:
        """From a store's ``(snapshot_key, pseudonym, *exposures, features)`` rows, in any
        order: each placed by its pseudonym, each snapshot's feature blobs decoded in one numpy
        view."""
        n = len(pseudonyms)
        found = np.zeros(n, dtype=bool)
        exposures = np.zeros((n, len(EXPOSURE_COLUMNS)), dtype=np.int64)
        features: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
        if not rows:
            return cls(found, exposures, features)
        position = {bytes(p): i for i, p in enumerate(pseudonyms)}
        index = np.array([position[bytes(r[1])] for r in rows], dtype=np.int64)
        found[index] = True
        exposures[index] = np.array([r[2:-1] for r in rows], dtype=np.int64)
        for key in {r[0] for r in rows}:  # one snapshot, unless it changed mid-query
            names = codec(key).names
            mine = [i for i, r in enumerate(rows) if r[0] == key]
            values = np.frombuffer(b"".join(rows[i][-1] for i in mine), dtype="<f8").reshape(
                len(mine), len(names))
            for j, name in enumerate(names):
                features.setdefault(name, np.full(n, np.nan))[index[mine]] = values[:, j]
        return cls(found, exposures, features)

    @classmethod
    def from_records(cls, records: Sequence[SubjectRecord | None]) -> SubjectBatch:
        n = len(records)
        found = np.array([r is not None for r in records], dtype=bool)
        exposures = np.zeros((n, len(EXPOSURE_COLUMNS)), dtype=np.int64)
        features: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
        for i, record in enumerate(records):
            if record is None:
                continue
            exposures[i] = [record.exposures.get(c, 0) for c in EXPOSURE_COLUMNS]
            for name, value in record.features.items():
                features.setdefault(name, np.full(n, np.nan))[i] = value
        return cls(found, exposures, features)


class FeatureStore(ABC):
    """What a node serves lookups from; the snapshot life cycle is shared by the backends."""

    #: The database driver's errors, reported as :class:`FeatureStoreUnavailableError`.
    _driver_errors: tuple[type[Exception], ...] = ()

    def __init__(
        self, *, member_id: str | None, retain: int, batch_rows: int, clock: Clock
    ) -> None:
        if retain < 1:
            raise ConfigurationError("a feature store must retain at least one snapshot")
        self._member_id = member_id
        self._retain = retain
        self._batch_rows = batch_rows
        self._clock = clock
        self._codecs: dict[int, FeatureCodec] = {}

    # -- the online path ---------------------------------------------------------------------
    @abstractmethod
    def lookup(self, pseudonym: bytes) -> SubjectRecord | None:
        """The subject's record in the active snapshot; ``None`` if it has none (or no snapshot
        is active)."""

    def lookup_many(self, pseudonyms: Sequence[bytes]) -> SubjectBatch:
        """:meth:`lookup` for many subjects (a portfolio chunk). Backends answer in one query
        where they can; this default asks one by one."""
        return SubjectBatch.from_records([self.lookup(p) for p in pseudonyms])

    @abstractmethod
    def count(self) -> int:
        """Subjects in the active snapshot (0 when none is)."""

    @abstractmethod
    def close(self) -> None: ...

    def _codec(self, key: int) -> FeatureCodec:
        # Keys are never reused and a snapshot's features never change: cache forever.
        codec = self._codecs.get(key)
        if codec is None:
            codec = self._codecs[key] = FeatureCodec(self._feature_names(key))
        return codec

    # -- snapshots ---------------------------------------------------------------------------
    def snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot the store knows, newest first."""
        with self._translated():
            infos = [entry.info() for entry in self._entries()]
        return sorted(infos, key=lambda i: (i.created_unix_ms, i.snapshot_id), reverse=True)

    def active(self) -> SnapshotInfo | None:
        with self._translated():
            return next((e.info() for e in self._entries() if e.active), None)

    def load_snapshot(
        self, snapshot_dir: Path, progress: Progress | None = None
    ) -> SnapshotInfo:
        """Verify, load and activate a snapshot; the previous one serves until it is active.

        ``progress`` is called with the number of rows written so far after every batch.
        """
        directory = snapshot_dir.resolve()
        manifest = verify_snapshot(directory)
        if self._member_id is not None and manifest.member_id != self._member_id:
            raise SnapshotError(
                f"{manifest.snapshot_id} is member {manifest.member_id}'s snapshot; this store "
                f"belongs to {self._member_id}"
            )
        with self._translated(), self._load_lock(wait=True):
            self._remove_abandoned(forget_failed=True)
            entry = self._entry(manifest.snapshot_id)
            if entry is not None and entry.manifest != manifest_json(manifest):
                raise SnapshotError(
                    f"a different snapshot with id {manifest.snapshot_id} was loaded before"
                )
            if entry is not None and entry.state is SnapshotState.LOADED:
                self._activate(entry.key, None)
                log.info("snapshot %s was loaded already: activated", manifest.snapshot_id)
            else:
                key = self._begin_load(entry.key if entry else None, manifest, directory)
                self._fill(key, directory, manifest, progress)
                self._prune()
            return self._info(manifest.snapshot_id)

    def rollback(self, snapshot_id: str) -> SnapshotInfo:
        """Activate an earlier snapshot: at once if its rows are retained, else reload them
        from its directory."""
        with self._translated(), self._load_lock(wait=True):
            entry = self._entry(snapshot_id)
            if entry is None:
                raise SnapshotNotFoundError(f"no snapshot {snapshot_id} in this feature store")
            if entry.state is SnapshotState.LOADED:
                self._activate(entry.key, None)
                log.info("rolled back to snapshot %s", snapshot_id)
                return self._info(snapshot_id)
            if entry.state is not SnapshotState.PRUNED:
                raise SnapshotError(
                    f"snapshot {snapshot_id} never finished loading ({entry.state.value}); "
                    "load its directory again"
                )
            directory = Path(entry.source_dir)
        if not (directory / MANIFEST_NAME).is_file():
            raise SnapshotNotFoundError(
                f"snapshot {snapshot_id}: its rows were pruned and its directory {directory} "
                "no longer exists"
            )
        log.info("snapshot %s was pruned: reloading it from %s", snapshot_id, directory)
        return self.load_snapshot(directory)

    def _unavailable(self, exc: Exception) -> FeatureStoreUnavailableError:
        return FeatureStoreUnavailableError(f"feature store error: {exc}")

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except self._driver_errors as exc:
            raise self._unavailable(exc) from None

    def clean_up(self) -> None:
        """Remove the rows interrupted loads left behind, unless a load is running right now;
        their entries stay listed as ``failed`` until the next load."""
        with self._translated(), self._load_lock(wait=False) as acquired:
            if acquired:
                self._remove_abandoned(forget_failed=False)

    # -- the life cycle ----------------------------------------------------------------------
    def _entry(self, snapshot_id: str) -> SnapshotEntry | None:
        return next((e for e in self._entries() if e.snapshot_id == snapshot_id), None)

    def _info(self, snapshot_id: str) -> SnapshotInfo:
        entry = self._entry(snapshot_id)
        if entry is None:  # pragma: no cover - only if someone deletes it meanwhile
            raise SnapshotNotFoundError(f"no snapshot {snapshot_id} in this feature store")
        return entry.info()

    def _fill(
        self,
        key: int,
        directory: Path,
        manifest: SnapshotManifest,
        progress: Progress | None,
    ) -> None:
        log.info("loading snapshot %s (%d subjects)", manifest.snapshot_id, manifest.subjects)
        try:
            batches = encoded_batches(directory, manifest, self._batch_rows)
            rows = self._write_rows(key, batches, progress)
            if rows != manifest.subjects:
                raise SnapshotError(
                    f"{manifest.snapshot_id} holds {rows} rows; its manifest says "
                    f"{manifest.subjects}"
                )
            self._activate(key, self._clock())
        except BaseException:
            with contextlib.suppress(Exception):
                self._set_state(key, SnapshotState.FAILED)
            raise
        log.info("snapshot %s is active", manifest.snapshot_id)

    def _remove_abandoned(self, forget_failed: bool) -> None:
        """Clean up after loads that raised or died (the caller holds the load lock, so none is
        running): drop every rows table no loaded entry owns; a dead ``incomplete`` entry
        becomes ``failed``, and failed entries are deleted if ``forget_failed``."""
        for entry in self._entries():
            if entry.state not in (SnapshotState.INCOMPLETE, SnapshotState.FAILED):
                continue
            if entry.loaded_unix_ms is not None:  # a reload of a pruned snapshot: pruned again
                self._set_state(entry.key, SnapshotState.PRUNED)
            elif forget_failed:
                log.info("forgetting the failed load of snapshot %s", entry.snapshot_id)
                self._delete_entry(entry.key)
            elif entry.state is SnapshotState.INCOMPLETE:
                log.warning("the load of snapshot %s was interrupted", entry.snapshot_id)
                self._set_state(entry.key, SnapshotState.FAILED)
        owned = {e.key for e in self._entries() if e.state is SnapshotState.LOADED}
        for key in sorted(self._row_tables() - owned):
            self._drop_rows(key)

    def _prune(self) -> None:
        loaded = [e for e in self._entries() if e.state is SnapshotState.LOADED]
        loaded.sort(key=lambda e: (e.loaded_unix_ms or 0, e.key), reverse=True)
        keep = {e.key for e in loaded[: self._retain]} | {e.key for e in loaded if e.active}
        for entry in loaded:
            if entry.key not in keep:
                # State first: a crash in between leaves an orphan table (removed on the next
                # open), never a "loaded" entry without rows.
                self._set_state(entry.key, SnapshotState.PRUNED)
                try:
                    self._drop_rows(entry.key)
                except self._driver_errors as exc:  # the new snapshot is active all the same
                    log.warning("could not drop the rows of snapshot %s yet (%s); the next "
                                "open or load retries", entry.snapshot_id, self._unavailable(exc))
                    continue
                log.info("pruned the rows of snapshot %s", entry.snapshot_id)

    # -- what a backend provides -------------------------------------------------------------
    @abstractmethod
    def _entries(self) -> list[SnapshotEntry]: ...

    @abstractmethod
    def _load_lock(self, wait: bool) -> AbstractContextManager[bool]:
        """Hold the store-wide load lock; yields whether it was acquired (always if waiting)."""

    @abstractmethod
    def _begin_load(
        self, key: int | None, manifest: SnapshotManifest, source_dir: Path
    ) -> int:
        """Insert (or, for a known key, reset) the entry as ``incomplete``; its key."""

    @abstractmethod
    def _write_rows(
        self, key: int, batches: Iterable[EncodedBatch], progress: Progress | None
    ) -> int:
        """Write the rows table ``subjects_<key>`` (durably, not active); the rows written."""

    @abstractmethod
    def _activate(self, key: int, loaded_unix_ms: int | None) -> None:
        """In one transaction: point the view and ``active_snapshot`` at ``key`` and mark it
        loaded (setting its load time if given)."""

    @abstractmethod
    def _set_state(self, key: int, state: SnapshotState) -> None: ...

    @abstractmethod
    def _delete_entry(self, key: int) -> None: ...

    @abstractmethod
    def _row_tables(self) -> set[int]:
        """Keys of the rows tables present."""

    @abstractmethod
    def _drop_rows(self, key: int) -> None: ...

    @abstractmethod
    def _feature_names(self, key: int) -> tuple[str, ...]: ...
