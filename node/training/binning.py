"""Where each feature holder's quantile cut points come from: Spark, or exact (numpy).

``spark`` (the default for real data) computes approximate quantiles with Spark's
Greenwald-Khanna ``approxQuantile`` (relative error 1e-4) over the party's training rows in a
``local[2]`` session, or on the cluster the settings name; ``exact`` uses numpy's exact quantiles
(small tables, tests). Either way the cut points stay at the party; small bins are merged
(:func:`scoring.binning.merge_small_bins`) before any count leaves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

from scoring.binning import Binning, FloatArray, merge_small_bins, quantile_edges

SPARK_RELATIVE_ERROR = 1e-4


class BinningEngine(StrEnum):
    SPARK = "spark"
    EXACT = "exact"


def _spark_edges(values: FloatArray, names: Sequence[str], max_bins: int, master: str
                 ) -> list[tuple[float, ...]]:
    import pandas as pd

    from node.ingest.spark import spark_session, stop_spark

    session = spark_session(
        master, driver_memory="1g", executor_memory="1g", shuffle_partitions=2,
        app_name="fedcredit-binning",
    )
    try:
        columns = [f"c{j}" for j in range(len(names))]
        from pyspark.sql import functions as F

        frame = session.createDataFrame(pd.DataFrame(values, columns=columns))
        # Missing values are NaN in pandas; Spark must see them as null to skip them.
        frame = frame.select(
            *[F.when(F.isnan(c), None).otherwise(F.col(c)).alias(c) for c in columns]
        )
        probs = [k / max_bins for k in range(1, max_bins)]
        quantiles = frame.approxQuantile(columns, probs, SPARK_RELATIVE_ERROR)
    finally:
        stop_spark(session)
    out = []
    for j, qs in enumerate(quantiles):
        column = values[:, j]
        present = column[~np.isnan(column)]
        top = float(present.max()) if present.size else 0.0
        out.append(tuple(sorted({float(q) for q in qs if q is not None and q < top})))
    return out


def fit_binnings(
    values: FloatArray,
    names: Sequence[str],
    *,
    max_bins: int,
    min_bin_size: int,
    engine: BinningEngine = BinningEngine.SPARK,
    spark_master: str = "local[2]",
) -> list[Binning]:
    """Cut points for every column of ``values`` (training rows only), small bins merged."""
    if engine is BinningEngine.SPARK:
        edges = _spark_edges(values, names, max_bins, spark_master)
    else:
        edges = [quantile_edges(values[:, j], max_bins) for j in range(len(names))]
    return [
        merge_small_bins(name, values[:, j], edges[j], min_bin_size)
        for j, name in enumerate(names)
    ]
