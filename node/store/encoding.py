"""Snapshot rows as the store keeps them: checked in bulk, features packed into one blob.

A row is the 32-byte pseudonym, the exposure integers and the features as one little-endian
float64 per feature of the snapshot (in manifest order), NaN where the value is absent. The
names live once per snapshot, not per row: decoding is one ``struct.unpack`` (several times
faster than ``json.loads`` of a ``{name: value}`` text, and the rows are half the size).

Batches are converted column-wise with numpy, never row by row in Python, so a million-row
snapshot streams through in bounded memory.
"""

from __future__ import annotations

import queue
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fedcredit.errors import SnapshotError
from mpc.contribution import MAX_EXPOSURE
from node.ingest.snapshot import (
    EXPOSURE_COLUMNS,
    PSEUDONYM_BYTES,
    PSEUDONYM_COLUMN,
    SnapshotManifest,
)

FEATURE_DTYPE = np.dtype("<f8")
T = TypeVar("T")


@dataclass(frozen=True)
class EncodedBatch:
    pseudonyms: np.ndarray[Any, Any]  # (n,) void of PSEUDONYM_BYTES
    exposures: np.ndarray[Any, Any]  # (n, len(EXPOSURE_COLUMNS)) int64
    features: np.ndarray[Any, Any]  # (n, features) little-endian float64, NaN = absent

    @property
    def rows(self) -> int:
        return len(self.pseudonyms)

    def feature_blobs(self) -> list[bytes]:
        n, width = self.features.shape
        if width == 0:
            return [b""] * n
        packed = np.ascontiguousarray(self.features).view(np.dtype((np.void, 8 * width)))
        return cast(list[bytes], packed.ravel().tolist())

    def sql_rows(self) -> Iterator[tuple[Any, ...]]:
        """``(pseudonym, *exposures, features)`` per row, as Python values."""
        return zip(self.pseudonyms.tolist(), *self.exposures.T.tolist(), self.feature_blobs(),
                   strict=True)


def encode_batch(batch: pa.RecordBatch, features: tuple[str, ...], snapshot_id: str
                 ) -> EncodedBatch:
    """Check a batch of a verified snapshot and convert it; :class:`SnapshotError` if a value
    breaks the contract (the manifest's hashes say the file is intact, not that it is right)."""
    n = batch.num_rows
    column = batch.column(PSEUDONYM_COLUMN)
    if column.null_count:
        raise SnapshotError(f"{snapshot_id}: a pseudonym is null")
    offsets_type = np.int64 if pa.types.is_large_binary(column.type) else np.int32
    offsets = np.frombuffer(column.buffers()[1], dtype=offsets_type)[
        column.offset : column.offset + n + 1
    ]
    if n and not np.all(np.diff(offsets) == PSEUDONYM_BYTES):
        raise SnapshotError(f"{snapshot_id}: a pseudonym is not {PSEUDONYM_BYTES} bytes")
    data = np.frombuffer(column.buffers()[2], dtype=np.uint8) if n else np.empty(0, np.uint8)
    start = int(offsets[0]) if n else 0
    pseudonyms = data[start : start + PSEUDONYM_BYTES * n].view(
        np.dtype((np.void, PSEUDONYM_BYTES))
    )
    exposure_columns = []
    for name in EXPOSURE_COLUMNS:
        values = batch.column(name)
        if values.null_count:
            raise SnapshotError(f"{snapshot_id}: exposure {name} is null")
        exposure_columns.append(values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False))
    exposures = np.column_stack(exposure_columns) if n else np.empty((0, len(EXPOSURE_COLUMNS)))
    exposures = exposures.astype(np.int64, copy=False)
    if n and (exposures.min() < 0 or exposures.max() >= MAX_EXPOSURE):
        raise SnapshotError(f"{snapshot_id}: an exposure is negative or not below 2**53")
    matrix = np.empty((n, len(features)), dtype=FEATURE_DTYPE)
    for i, name in enumerate(features):
        matrix[:, i] = batch.column(name).to_numpy(zero_copy_only=False)  # null -> NaN
    matrix[~np.isfinite(matrix)] = np.nan  # as records_of: non-finite is absent
    return EncodedBatch(pseudonyms, exposures, matrix)


def encoded_batches(directory: Path, manifest: SnapshotManifest, batch_rows: int
                    ) -> Iterator[EncodedBatch]:
    """The snapshot's rows, read and encoded one batch ahead in a background thread (Parquet
    decoding overlaps the database writes; at most two batches wait in memory)."""
    batches = (encode_batch(b, manifest.feature_names, manifest.snapshot_id)
               for b in read_batches(directory, manifest, batch_rows))
    return read_ahead(batches)


def read_batches(directory: Path, manifest: SnapshotManifest, batch_rows: int
                 ) -> Iterator[pa.RecordBatch]:
    """Like :func:`node.ingest.snapshot.iter_records`, in bounded memory: pyarrow's default
    ``pre_buffer`` keeps every column chunk read so far until the file is closed (about 320 MiB
    held at the end of a 1M-subject file, measured), without it about 80 MiB at most."""
    columns = [PSEUDONYM_COLUMN, *EXPOSURE_COLUMNS, *manifest.feature_names]
    for entry in manifest.files:
        parquet = pq.ParquetFile(directory / entry.path, pre_buffer=False, buffer_size=1 << 20)
        try:
            yield from parquet.iter_batches(batch_size=batch_rows, columns=columns)
        finally:
            parquet.close()


_DONE = object()


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced by a daemon thread up to ``depth`` ahead of the consumer. An error
    in the producer is raised in the consumer; a consumer that stops early stops the producer."""
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as exc:  # handed to the consumer
            offer(_Failure(exc))
            return
        offer(_DONE)

    def consume() -> Iterator[T]:
        thread = threading.Thread(target=produce, name="snapshot-read-ahead", daemon=True)
        thread.start()
        try:
            while True:
                item = ready.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield cast(T, item)
        finally:
            stop.set()
            thread.join(timeout=10)

    return consume()


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class FeatureCodec:
    """One snapshot's feature blob → ``{name: value}``, absent (NaN) values left out."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._struct = struct.Struct(f"<{len(names)}d")

    def decode(self, blob: bytes) -> dict[str, float]:
        values = self._struct.unpack(blob)
        return {n: v for n, v in zip(self.names, values, strict=True) if v == v}  # NaN != NaN
