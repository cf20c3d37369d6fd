"""One Spark session (local[2]) for the whole test run: starting one takes ~10 s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from node.ingest.spark import spark_session, stop_spark


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = spark_session("local[2]", driver_memory="1g", shuffle_partitions=2)
    yield session
    stop_spark(session)
