"""Quantile bins computed with Spark (``approxQuantile`` in ``local[2]``), the default binning
engine of alliance training runs, agree with exact quantiles to Spark's rank error.

Spark runs in a child process: binning stops its JVM when done, which must not pull the
session-wide Spark fixture from under other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration
MAX_BINS = 8
SCRIPT = """
import json, sys
import numpy as np
from node.training.binning import BinningEngine, fit_binnings
values = np.load(sys.argv[1])
for engine in (BinningEngine.SPARK, BinningEngine.EXACT):
    bins = fit_binnings(values, ["income", "utilization"], max_bins=int(sys.argv[2]),
                        min_bin_size=1, engine=engine)
    print(json.dumps([list(b.edges) for b in bins]))
"""


def test_spark_quantile_edges_match_exact_ranks(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    values = np.column_stack([rng.lognormal(10, 0.6, 6000), rng.beta(2, 5, 6000)])
    values[rng.random(6000) < 0.1, 1] = np.nan  # missing values: their own bin, not a quantile
    np.save(tmp_path / "values.npy", values)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "values.npy"),
                           str(MAX_BINS)],
                          capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    spark, exact = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    for j in range(values.shape[1]):
        present = values[~np.isnan(values[:, j]), j]
        assert len(spark[j]) == len(exact[j]) == MAX_BINS - 1
        for k, edge in enumerate(spark[j], start=1):
            rank = float(np.mean(present <= edge))
            assert abs(rank - k / MAX_BINS) < 2e-3, (j, k, rank)
