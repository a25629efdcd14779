"""MultiID-Bench's copy-paste score on constructed embeddings with known angles, and the bootstrap
intervals over identities that every eval cell carries."""
from __future__ import annotations

import math

import numpy as np
import pytest

from omniid.copypaste import DEGENERATE_DEG, angle, copy_paste
from omniid.intervals import cluster_interval


def unit(degrees: float, dim: int = 8) -> np.ndarray:
    """A unit vector at `degrees` from e0, in the e0-e1 plane."""
    v = np.zeros(dim)
    v[0], v[1] = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return v


def test_known_angles():
    assert angle(unit(0), unit(30)) == pytest.approx(math.radians(30))
    assert angle(unit(10), 5 * unit(70)) == pytest.approx(math.radians(60))  # any length


def test_identical_to_the_reference_is_plus_one_and_to_the_target_minus_one():
    ref, target = unit(0), unit(40)
    assert copy_paste(ref, target, [ref]) == (pytest.approx(1.0), False)
    assert copy_paste(target, target, [ref]) == (pytest.approx(-1.0), False)
    # halfway on the arc between them: neither copies nor follows
    assert copy_paste(unit(20), target, [ref])[0] == pytest.approx(0.0, abs=1e-9)
    # a quarter of the way from the reference: (30 - 10) / 40
    assert copy_paste(unit(10), target, [ref])[0] == pytest.approx(0.5)


def test_the_nearest_reference_is_the_one_compared():
    target, far, near = unit(40), unit(-60), unit(0)
    assert copy_paste(near, target, [far, near])[0] == pytest.approx(1.0)
    assert copy_paste(near, target, [far, near, None])[0] == pytest.approx(1.0)  # an input without a face


def test_the_score_stays_in_minus_one_to_one():
    rng = np.random.default_rng(0)
    for _ in range(200):
        gen, target, *refs = rng.normal(size=(5, 16))
        score, _ = copy_paste(gen, target, refs)
        assert -1 - 1e-9 <= score <= 1 + 1e-9


def test_a_target_nearly_identical_to_its_reference_is_counted_not_divided_by_zero():
    ref = unit(0)
    target = unit(DEGENERATE_DEG / 2)
    assert copy_paste(unit(30), target, [ref]) == (pytest.approx(float("nan"), nan_ok=True), True)
    score, degenerate = copy_paste(unit(30), ref, [ref])  # the very same photo
    assert math.isnan(score) and degenerate
    assert not copy_paste(unit(30), unit(DEGENERATE_DEG * 2), [ref])[1]


def test_without_a_face_there_is_no_score():
    assert copy_paste(None, unit(40), [unit(0)])[0] != copy_paste(None, unit(40), [unit(0)])[0]  # NaN
    assert copy_paste(unit(10), None, [unit(0)])[1] is False
    assert math.isnan(copy_paste(unit(10), unit(40), [None])[0])


def test_the_bootstrap_is_reproducible_with_its_seed_and_pools_images():
    rng = np.random.default_rng(1)
    groups = {f"id{i}": list(rng.normal(0.4, 0.1, size=3)) for i in range(12)}
    a = cluster_interval(groups, 500, seed=7)
    assert a == cluster_interval(groups, 500, seed=7)
    assert a != cluster_interval(groups, 500, seed=8)
    mean, low, high = a
    assert mean == pytest.approx(np.mean([v for vs in groups.values() for v in vs]))
    assert low < mean < high
    # NaN values are left out; a group with none at all counts as no identity
    assert cluster_interval({**groups, "empty": [float("nan")]}, 500, seed=7) == a
    assert all(math.isnan(v) for v in cluster_interval({"x": []}))
