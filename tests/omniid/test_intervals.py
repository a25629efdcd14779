"""The bootstrap intervals' quantiles: a `level` interval runs from the (1 - level) / 2 to the
(1 + level) / 2 quantile of the resampled means. For many identities those means are close to
normal with the sample's own spread (plug-in sd / sqrt(n)), so a 95% interval is the mean
+- 1.96 of it and a 50% one +- 0.674; omniid-eval's cells (cluster_interval) resample whole
identities, and the identity-swap check's (swap.bootstrap_interval) one value per identity."""
from __future__ import annotations

import numpy as np
import pytest

from omniid.intervals import cluster_interval
from omniid.swap import bootstrap_interval

Z = {0.95: 1.959964, 0.5: 0.674490}


def _values(n: int = 400) -> np.ndarray:
    return np.random.default_rng(3).normal(0.4, 0.2, n)


@pytest.mark.parametrize("level", [0.95, 0.5])
@pytest.mark.parametrize("interval", ["cluster", "swap"])
def test_an_interval_spans_its_levels_quantiles_of_the_resampled_mean(interval, level):
    values = _values()
    if interval == "cluster":
        mean, low, high = cluster_interval({f"id{i}": [v] for i, v in enumerate(values)}, 4000, seed=1, level=level)
    else:
        mean, low, high = bootstrap_interval(values, 4000, seed=1, level=level)
    half = Z[level] * values.std() / np.sqrt(len(values))
    assert mean == pytest.approx(values.mean())
    assert low == pytest.approx(mean - half, abs=0.06 * half) and high == pytest.approx(mean + half, abs=0.06 * half)


def test_an_identitys_images_move_together():
    """Five images of one identity with one value are one draw, not five: the interval is the
    identity-level one, not sqrt(5) narrower."""
    values = _values(200)
    alone = cluster_interval({f"id{i}": [v] for i, v in enumerate(values)}, 2000, seed=2)
    five = cluster_interval({f"id{i}": [v] * 5 for i, v in enumerate(values)}, 2000, seed=2)
    assert five == pytest.approx(alone, rel=1e-12)
