"""A member node's online feature store: versioned snapshots in SQLite or PostgreSQL."""

from node.store.base import DEFAULT_RETAIN, FeatureStore, SnapshotInfo, SnapshotState
from node.store.open import open_store

__all__ = ["DEFAULT_RETAIN", "FeatureStore", "SnapshotInfo", "SnapshotState", "open_store"]
