"""Percentile bootstrap intervals over identities for omniid-eval's cells (ours).

A cell's value is the mean over its images; its interval resamples whole identities with
replacement (a cluster bootstrap: an identity's images move together, since they share inputs and
a target), `resamples` times from a generator seeded by `seed`, and takes the mean of the pooled
images each time. Every cell uses the same seed, recorded in settings.json, so a rerun gives the
same intervals and anyone can recompute them from results.parquet.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

NAN3 = (float("nan"), float("nan"), float("nan"))


def cluster_interval(groups: Mapping[str, Sequence[float]], resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the finite values of all groups (identity -> its values); NaN if none."""
    sums, counts = [], []
    for name in sorted(groups):
        values = np.asarray(groups[name], np.float64)
        values = values[np.isfinite(values)]
        if len(values):
            sums.append(values.sum())
            counts.append(len(values))
    if not counts:
        return NAN3
    sums, counts = np.asarray(sums), np.asarray(counts, np.float64)
    mean = float(sums.sum() / counts.sum())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(resamples, len(sums)))
    boot = sums[picks].sum(1) / counts[picks].sum(1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(boot, [tail, 100 - tail])
    return mean, float(low), float(high)
