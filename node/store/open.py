"""``open_store(url)``: the feature store a URL names (see :mod:`node.store.location`)."""

from __future__ import annotations

from fedcredit.clock import Clock, system_clock
from node.store.base import DEFAULT_BATCH_ROWS, DEFAULT_RETAIN, FeatureStore
from node.store.location import PostgresLocation, parse_store_url


def open_store(
    url: str,
    member_id: str | None = None,
    *,
    retain: int = DEFAULT_RETAIN,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    clock: Clock = system_clock,
) -> FeatureStore:
    """Open (creating if needed) the store; with ``member_id``, it refuses other members'
    snapshots."""
    location = parse_store_url(url)
    if isinstance(location, PostgresLocation):
        from node.store.postgres_store import PostgresFeatureStore

        return PostgresFeatureStore(location.conninfo, schema=location.schema,
                                    member_id=member_id, retain=retain, batch_rows=batch_rows,
                                    clock=clock)
    from node.store.sqlite_store import SqliteFeatureStore

    return SqliteFeatureStore(location.path, member_id=member_id, retain=retain,
                              batch_rows=batch_rows, clock=clock)
