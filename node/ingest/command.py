"""``fedcredit node ingest --config CFG``: run an ingest and, if a store is set, load it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from node.ingest.config import load_ingest_config
from node.ingest.console import RichReporter, render_summary
from node.ingest.pipeline import IngestResult, run_ingest
from node.ingest.settings import IngestSettings
from node.ingest.spark import spark_session, stop_spark


def ingest(
    settings: IngestSettings,
    config_path: Path,
    console: Console,
    *,
    spark_master: str | None = None,
    store_url: str | None = None,
) -> IngestResult:
    """Validate, compute and write a snapshot; load it into the store when one is set."""
    config = load_ingest_config(config_path)
    key = settings.load_subject_key()
    master = spark_master or settings.spark_master
    console.print(f"[bold]{config.member_id}[/]: ingest as of {config.as_of} on Spark {master}")
    spark = spark_session(
        master,
        driver_memory=settings.spark_driver_memory,
        executor_memory=settings.spark_executor_memory,
        shuffle_partitions=settings.spark_shuffle_partitions,
        jars=settings.spark_jars,
    )
    try:
        with RichReporter(console) as reporter:
            result = run_ingest(
                spark, config, key, reject_samples=settings.reject_samples, reporter=reporter
            )
    finally:
        stop_spark(spark)
    render_summary(console, result)
    url = store_url or (settings.store_url.get_secret_value() if settings.store_url else None)
    if url:
        from node.store import open_store

        store = open_store(url, member_id=config.member_id)
        try:
            info = store.load_snapshot(result.snapshot_dir)
        finally:
            store.close()
        console.print(f"loaded into the feature store: {info.snapshot_id} is active")
    else:
        console.print("not loaded: set FEDCREDIT_INGEST_STORE_URL or pass --store")
    return result
