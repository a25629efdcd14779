"""Per-identity pose over-clustering and 8-face selection, vectorised across identities.

Input: faces sorted by identity (`seg`, 0..m-1, non-decreasing), their pose (yaw, pitch, roll in
degrees) and quality. Every identity runs its own k-means at once: centroids live in one
(m, K, 3) array and updates are bincounts, so there is no Python loop over identities or faces,
only over the K seeding steps and the Lloyd iterations.

Randomness (k-means++ seeding) comes from a hash of (seed, global face ordinal, step), not from a
generator's state, so a face's draw does not depend on how faces are batched or on the number of
worker processes: the same table gives the same clusters whatever the batching.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_U64 = np.uint64


def hash_uniform(seed: int, ordinal: np.ndarray, step: int) -> np.ndarray:
    """Uniform (0, 1] per ordinal: splitmix64 of (seed, ordinal, step)."""
    x = ordinal.astype(_U64) * _U64(0x9E3779B97F4A7C15)
    x ^= _U64((seed * 0x632BE59BD9B4E019 + step * 0xD1B54A32D192ED03) & 0xFFFFFFFFFFFFFFFF)
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return ((x >> _U64(11)).astype(np.float64) + 1.0) / float(1 << 53)


def seg_starts(seg: np.ndarray, m: int) -> np.ndarray:
    return np.searchsorted(seg, np.arange(m))


def seg_argmax(score: np.ndarray, seg: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the first maximum of `score` in each segment (segments non-empty, seg sorted)."""
    best = np.maximum.reduceat(score, starts)
    hit = np.flatnonzero(score == best[seg])
    first = np.ones(len(hit), dtype=bool)
    first[1:] = seg[hit[1:]] != seg[hit[:-1]]
    return hit[first]


def kmeans_pose(pose: np.ndarray, seg: np.ndarray, m: int, k: int, iters: int, seed: int,
                offset: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means per identity. pose: [n, 3], seg: [n]. Returns labels [n] and counts [m, k].

    Seeding is k-means++ by an exponential race: argmax of w_i / E_i with E_i ~ Exp(1) picks face
    i with probability w_i / sum(w), where w is the squared distance to the nearest chosen centre.
    """
    n = len(pose)
    starts = seg_starts(seg, m)
    sizes = np.diff(np.append(starts, n))
    k_eff = np.minimum(sizes, k)
    ordinal = np.arange(offset, offset + n)
    cent = np.zeros((m, k, 3), dtype=np.float64)
    valid = np.zeros((m, k), dtype=bool)
    d2 = np.full(n, np.inf)
    for j in range(k):
        active = k_eff > j
        weight = np.ones(n) if j == 0 else d2
        score = weight / -np.log(hash_uniform(seed, ordinal, j))
        score[~active[seg]] = -1.0
        pick = seg_argmax(score, seg, starts)
        cent[active, j] = pose[pick[active]]
        valid[active, j] = True
        d2 = np.minimum(d2, np.where(active[seg], ((pose - cent[seg, j]) ** 2).sum(1), np.inf))
    labels = np.full(n, -1, dtype=np.int64)
    invalid_rows = ~valid[seg]
    for _ in range(iters):
        dist = ((pose[:, None, :] - cent[seg]) ** 2).sum(-1)
        dist[invalid_rows] = np.inf
        new = dist.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        flat = seg * k + labels
        counts = np.bincount(flat, minlength=m * k)
        sums = np.stack([np.bincount(flat, weights=pose[:, d], minlength=m * k) for d in range(3)], 1)
        filled = counts > 0
        cent.reshape(-1, 3)[filled] = sums[filled] / counts[filled, None]
    counts = np.bincount(seg * k + labels, minlength=m * k).reshape(m, k)
    return labels, counts


@dataclass
class Selection:
    index: np.ndarray     # rows of the input chosen, grouped by identity
    rank: np.ndarray      # order of choice within the identity (0 = best quality)
    labels: np.ndarray    # pose cluster of every input row


def select_faces(pose: np.ndarray, quality: np.ndarray, seg: np.ndarray, m: int, k: int, per_id: int,
                 iters: int, seed: int, offset: int = 0) -> Selection:
    """Over-cluster, keep the best-quality face per cluster, then pick `per_id` that spread.

    Spread is farthest-point: start from the best-quality representative, then repeatedly add
    the representative farthest (in pose) from those chosen. When an identity has fewer
    non-empty clusters than `per_id` (repeated poses), its best remaining faces fill the gap.
    An identity with fewer than `per_id` faces gets all of them (the caller drops or flags it).
    """
    pose = pose.astype(np.float64)
    n = len(pose)
    labels, _ = kmeans_pose(pose, seg, m, k, iters, seed, offset)
    # Best-quality face per (identity, cluster): sort by cluster key, then quality descending.
    key = seg * k + labels
    order = np.lexsort((-quality, key))
    is_rep = np.ones(n, dtype=bool)
    is_rep[1:] = key[order[1:]] != key[order[:-1]]
    reps = order[is_rep]
    rep_of = np.full((m, k), -1, dtype=np.int64)
    rep_of[seg[reps], labels[reps]] = reps
    valid = rep_of >= 0
    rpose = np.where(valid[..., None], pose[np.maximum(rep_of, 0)], 0.0)
    rqual = np.where(valid, quality[np.maximum(rep_of, 0)], -np.inf)

    chosen = np.full((m, per_id), -1, dtype=np.int64)
    rows = np.arange(m)
    current = rqual.argmax(1)
    mind = np.where(valid, np.inf, -np.inf)
    for s in range(per_id):
        ok = mind[rows, current] > -np.inf
        chosen[ok, s] = rep_of[rows[ok], current[ok]]
        mind[rows, current] = -np.inf
        d = ((rpose - rpose[rows, current][:, None, :]) ** 2).sum(-1)
        mind = np.minimum(mind, np.where(valid, d, -np.inf))
        current = mind.argmax(1)

    # Fill: identities with fewer representatives than per_id take their best other faces.
    have = (chosen >= 0).sum(1)
    taken = np.zeros(n, dtype=bool)
    taken[chosen[chosen >= 0]] = True
    rest = np.flatnonzero(~taken)
    rest = rest[np.lexsort((-quality[rest], seg[rest]))]
    rest_seg = seg[rest]
    pos = np.arange(len(rest)) - np.searchsorted(rest_seg, rest_seg)
    extra = rest[pos < (per_id - have)[rest_seg]]
    extra_rank = have[seg[extra]] + pos[pos < (per_id - have)[rest_seg]]

    base = chosen[chosen >= 0]
    base_rank = np.broadcast_to(np.arange(per_id), chosen.shape)[chosen >= 0]
    index = np.concatenate([base, extra])
    rank = np.concatenate([base_rank, extra_rank])
    order = np.lexsort((rank, seg[index]))
    return Selection(index=index[order], rank=rank[order], labels=labels)
