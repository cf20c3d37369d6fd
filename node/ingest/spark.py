"""The Spark session of an ingest, and progress from Spark's status tracker."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pyspark.sql import SparkSession

#: Quiet, deterministic and safe defaults; settings add master, memory and partitions.
_BASE_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # The pseudonymizing UDF's batches: bounded memory on the Python side.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "20000",
}


def spark_session(
    master: str,
    *,
    driver_memory: str = "4g",
    executor_memory: str = "4g",
    shuffle_partitions: int = 8,
    jars: str = "",
    app_name: str = "fedcredit-ingest",
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """A session on ``master``; Python workers run this interpreter (same packages)."""
    if master.startswith("local"):
        # Nothing outside this machine needs to reach a local driver: listen on loopback only.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        conf_local = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}
    else:
        conf_local = {}
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(app_name)
    conf = {**_BASE_CONF, **conf_local}
    conf.update(
        {
            "spark.driver.memory": driver_memory,
            "spark.executor.memory": executor_memory,
            "spark.sql.shuffle.partitions": str(shuffle_partitions),
            "spark.pyspark.python": sys.executable,
        }
    )
    if jars:
        conf["spark.jars"] = jars
    conf.update(extra_conf or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@contextmanager
def stage_progress(
    session: SparkSession, report: Callable[[int, int], None], interval_s: float = 0.5
) -> Iterator[None]:
    """Call ``report(done_tasks, total_tasks)`` for the active stages while the block runs."""
    tracker = session.sparkContext.statusTracker()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval_s):
            done = total = 0
            for stage_id in tracker.getActiveStageIds():
                info = tracker.getStageInfo(stage_id)
                if info is not None:
                    done += info.numCompletedTasks
                    total += info.numTasks
            if total:
                report(done, total)

    thread = threading.Thread(target=poll, name="spark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
