"""The compiled pose k-means and selection against a plain reference and planted structure."""
from __future__ import annotations

import numba
import numpy as np
import pytest

from mfhq.curate import kernels
from mfhq.curate.cluster import select_job

K, PER_ID, ITERS, SEED = 16, 8, 10, 3


def _uniform(seed: int, ordinal: int, step: int) -> float:
    mask = (1 << 64) - 1
    x = (ordinal * 0x9E3779B97F4A7C15) & mask
    x ^= (seed * 0x632BE59BD9B4E019 + step * 0xD1B54A32D192ED03) & mask
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & mask
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & mask
    x ^= x >> 31
    return ((x >> 11) + 1.0) / float(1 << 53)


def reference(pose: np.ndarray, quality: np.ndarray, offset: int) -> tuple[list[int], np.ndarray]:
    """One identity, written out as the docstrings say: k-means++ by an exponential race,
    Lloyd until no label changes, best face per cluster, farthest-point spread, best-quality fill."""
    n, pose32 = len(pose), pose.astype(np.float32)
    cent = np.full((K, 3), 1e15, np.float32)
    d2 = np.full(n, np.inf, np.float32)
    for j in range(min(n, K)):
        w = np.ones(n) if j == 0 else d2.astype(np.float64)
        score = w / -np.log([_uniform(SEED, offset + i, j) for i in range(n)])
        cent[j] = pose32[int(np.argmax(score))]
        d2 = np.minimum(d2, ((pose32 - cent[j]) ** 2).sum(1, dtype=np.float32))
    labels = np.full(n, -1)
    for _ in range(ITERS):
        new = np.array([int(np.argmin([((c - p) ** 2).sum(dtype=np.float32) for c in cent])) for p in pose32])
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(K):
            if (labels == j).any():
                members = pose32[labels == j].astype(np.float64)
                cent[j] = np.cumsum(members, 0)[-1] / len(members)  # summed in row order
    reps = {j: max(np.flatnonzero(labels == j), key=lambda i: (quality[i], -i)) for j in sorted(set(labels.tolist()))}
    chosen = [reps[max(reps, key=lambda j: (quality[reps[j]], -j))]]
    while len(chosen) < min(PER_ID, len(reps)):
        left = [r for r in reps.values() if r not in chosen]
        far = [min(((pose[r] - pose[c]) ** 2).sum() for c in chosen) for r in left]
        chosen.append(left[int(np.argmax(far))])
    rest = sorted(set(range(n)) - set(chosen), key=lambda i: (-quality[i], i))
    return chosen + rest[:PER_ID - len(chosen)], labels


def _identities(sizes, seed=0):
    rng = np.random.default_rng(seed)
    pose = np.concatenate([rng.uniform([-60, -30, -20], [60, 30, 20], (s, 3)) for s in sizes]).astype(np.float32)
    quality = rng.uniform(0, 1, len(pose)).round(2)  # rounded: ties in quality happen
    seg = np.repeat(np.arange(len(sizes)), sizes)
    return pose.astype(np.float64), quality, seg


def test_compiled_picks_equal_the_plain_reference():
    sizes = [1, 3, 8, 17, 40, 150]
    pose, quality, _ = _identities(sizes)
    _assert_picks_equal_the_reference(pose, quality, sizes, offset=1000)


def test_picks_do_not_depend_on_threads():
    pose, quality, seg = _identities([30 + 7 * i for i in range(40)], seed=1)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = select_job(pose, quality, seg, K, PER_ID, ITERS, SEED, 0)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = select_job(pose, quality, seg, K, PER_ID, ITERS, SEED, 0)
    finally:
        numba.set_num_threads(before)
    assert all(np.array_equal(a, b) for a, b in zip(one, two))


def test_planted_pose_groups_give_one_best_face_each():
    rng = np.random.default_rng(5)
    centres = np.array([[-50, 0, 0], [50, 0, 0], [0, 25, 0], [0, -25, 0], [-40, 20, 15], [40, -20, -15],
                        [30, 25, 10], [-30, -25, -10]], np.float64)
    pose = np.concatenate([c + rng.normal(0, 1, (25, 3)) for c in centres])
    quality = rng.uniform(0, 1, len(pose))
    seg = np.zeros(len(pose), np.int64)
    index, rank, picked_labels = select_job(pose, quality, seg, K, PER_ID, ITERS, SEED, 0)
    labels = kernels.select_all(pose.astype(np.float32), quality, np.array([0, len(pose)]), K, PER_ID, ITERS,
                                kernels.seed_mix(SEED), 0)[0]
    # 16 clusters over 8 groups split each group; the spread still takes one face per group.
    assert sorted((index // 25).tolist()) == list(range(8))
    for i, label in zip(index, picked_labels):
        assert labels[i] == label and quality[i] == quality[labels == label].max()  # its cluster's best
    assert quality[index[0]] == quality.max()  # the spread starts from the best face


@pytest.mark.parametrize("n", [5, 30])
def test_one_repeated_pose_fills_with_the_best_faces(n):
    pose = np.tile([[10.0, -5.0, 2.0]], (n, 1))
    quality = np.linspace(0, 1, n)[np.random.default_rng(2).permutation(n)]
    index, rank, _ = select_job(pose, quality, np.zeros(n, np.int64), K, PER_ID, ITERS, SEED, 0)
    assert index.tolist() == np.argsort(-quality)[:min(n, PER_ID)].tolist()  # best first
    assert rank.tolist() == list(range(min(n, PER_ID)))


def test_ties_and_repeated_poses_equal_the_plain_reference():
    """Poses on a coarse grid: equal distances, faces on their centre (weight 0), repeated poses
    and quality ties, where the race's bounds and the assignment's tie rule must not change a pick."""
    rng = np.random.default_rng(11)
    sizes = [2, 9, 16, 17, 33, 64, 200]
    pose = rng.integers(-2, 3, (sum(sizes), 3)).astype(np.float64) * 7.5
    quality = rng.integers(0, 4, len(pose)) / 4
    _assert_picks_equal_the_reference(pose, quality, sizes, offset=123_456)


def _assert_picks_equal_the_reference(pose, quality, sizes, offset):
    """select_job's picks, ranks and pose clusters are the plain reference's, identity by identity."""
    seg = np.repeat(np.arange(len(sizes)), sizes)
    index, rank, labels = select_job(pose, quality, seg, K, PER_ID, ITERS, SEED, offset)
    begin = 0
    for s, size in enumerate(sizes):
        want, want_labels = reference(pose[begin:begin + size], quality[begin:begin + size], offset + begin)
        got = index[seg[index] == s] - begin
        assert got.tolist() == want, (size, got, want)
        assert rank[seg[index] == s].tolist() == list(range(len(want)))
        assert labels[seg[index] == s].tolist() == want_labels[got].tolist()
        begin += size


def test_fewer_occupied_clusters_than_8_fill_with_the_best_faces_that_repeat_a_cluster():
    """What the card says of sample_rank: one face per occupied pose cluster first, then fillers
    by quality, and a filler is exactly a row whose pose_cluster repeats a lower rank's."""
    pose = np.repeat([[-40.0, 0, 0], [0, 20, 0], [40, 0, 5]], 10, axis=0)  # 3 poses: at most 3 clusters
    quality = np.random.default_rng(4).permutation(30) / 30
    index, rank, labels = select_job(pose, quality, np.zeros(30, np.int64), K, PER_ID, ITERS, SEED, 0)
    assert rank.tolist() == list(range(PER_ID))
    firsts = [i for t, i in enumerate(index) if labels[t] not in labels[:t]]
    assert len(firsts) == 3 and index[:3].tolist() == firsts  # the clusters' picks come first
    assert sorted(quality[firsts].tolist()) == sorted(quality[pose[:, 0] == p].max() for p in (-40, 0, 40))
    rest = np.setdiff1d(np.arange(30), firsts)
    assert index[3:].tolist() == rest[np.argsort(-quality[rest], kind="stable")][:PER_ID - 3].tolist()
