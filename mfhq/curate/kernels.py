"""Compiled per-identity pose k-means and 8-face selection (numba).

One identity's faces are a contiguous run of rows (faces sorted by identity). Each identity is
independent, so the outer loop is `prange` over identities: threads split identities, never one
identity's arithmetic, and the result is the same for any number of threads. Inside, everything
is a fused loop over the identity's few hundred faces, so no [faces x K] array ever exists: the
numpy formulation spent most of its time writing and re-reading those.

Randomness (k-means++ seeding) comes from a hash of (seed, global face ordinal, step), so a face's
draw does not depend on how faces are batched.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from mfhq.compiled import compiled

_FAR = np.float32(1e15)  # unused centroids (identities with fewer than K faces) sit here


@compiled(inline="always")
def _uniform(seed_mix: np.uint64, ordinal: np.int64, step: np.uint64) -> float:
    """Uniform (0, 1]: splitmix64 of (seed, ordinal, step)."""
    x = np.uint64(ordinal) * np.uint64(0x9E3779B97F4A7C15)
    x ^= seed_mix + step * np.uint64(0xD1B54A32D192ED03)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    # int64 first: below 2**53 it converts exactly, and faster than an unsigned one
    return (float(np.int64(x >> np.uint64(11))) + 1.0) / 9007199254740992.0  # 2**53


# A numba kernel, the named exception to the 60-line rule for functions: seeding and Lloyd
# iterations compiled as one loop nest.
@compiled(error_model="numpy")
def _kmeans_one(pose, lo, hi, k, iters, seed_mix, ordinal0, labels, cent, d2, us, dist, sums, counts):
    """k-means of rows lo:hi into labels[lo:hi]. cent [3, k], d2 [n], us [n], dist [k], sums [k, 3]
    and counts [k] are scratch.

    Seeding is k-means++ by an exponential race: the argmax of w_i / E_i with E_i ~ Exp(1) picks
    face i with probability w_i / sum(w), w being the squared distance to the nearest chosen
    centre. Lloyd iterations stop once no label changes: the centroids are then a fixed point."""
    n = hi - lo
    k_eff = min(n, k)
    cent[:, :] = _FAR
    d2[:n] = np.inf
    for j in range(k_eff):
        # Three simple loops the compiler vectorises, then the race over their results.
        for i in range(n):
            us[i] = _uniform(seed_mix, ordinal0 + lo + i, np.uint64(j))
        if j > 0:  # the squared distance to the nearest centre, with the one just chosen
            cx, cy, cz = cent[0, j - 1], cent[1, j - 1], cent[2, j - 1]
            for i in range(n):
                a = pose[lo + i, 0] - cx
                b = pose[lo + i, 1] - cy
                c = pose[lo + i, 2] - cz
                d2[i] = min(d2[i], a * a + b * b + c * c)
        best, pick = -1.0, 0
        for i in range(n):
            w = 1.0 if j == 0 else np.float64(d2[i])
            u = us[i]
            # -log(u) >= 1 - u, so w / (1 - u) bounds the score: most faces cannot beat the
            # best so far and skip the logarithm (the margin covers rounding; exact picks kept).
            if w * (1.0 + 1e-9) < best * (1.0 - u):
                continue
            score = w / -np.log(u)
            if score > best:
                best, pick = score, i
        for d in range(3):
            cent[d, j] = pose[lo + pick, d]
    for it in range(max(iters, 1)):  # at least one assignment
        changed = False
        sums[:, :] = 0.0
        counts[:] = 0
        for i in range(n):
            px, py, pz = pose[lo + i, 0], pose[lo + i, 1], pose[lo + i, 2]
            for j in range(k):  # a loop the compiler vectorises; the argmin below is scalar
                a = cent[0, j] - px
                b = cent[1, j] - py
                c = cent[2, j] - pz
                dist[j] = a * a + b * b + c * c
            best_d, best_j = dist[0], 0
            for j in range(1, k):
                if dist[j] < best_d:
                    best_d, best_j = dist[j], j
            if it == 0 or labels[lo + i] != best_j:
                changed = True
            labels[lo + i] = best_j
            counts[best_j] += 1  # the new clusters' sums, in row order, for the update below
            sums[best_j, 0] += np.float64(px)
            sums[best_j, 1] += np.float64(py)
            sums[best_j, 2] += np.float64(pz)
        if not changed:
            break
        for j in range(k):
            if counts[j] > 0:  # an emptied cluster keeps its centre
                for d in range(3):
                    cent[d, j] = np.float32(sums[j, d] / counts[j])


@compiled()
def _select_one(pose, quality, lo, hi, k, per_id, labels, out_index, out_rank, rep, rep_q, mind, taken):
    """Best-quality face per pose cluster, then `per_id` of them spread by farthest-point.

    Writes rows (global) and ranks into out_index/out_rank[0:per_id]; returns how many. Ties go
    to the lower row. An identity with fewer clusters than `per_id` fills with its best other
    faces; one with fewer faces than `per_id` gets all of them."""
    n = hi - lo
    for j in range(k):
        rep[j] = -1
        rep_q[j] = -np.inf
    for i in range(n):
        j = labels[lo + i]
        q = quality[lo + i]
        if rep[j] < 0 or q > rep_q[j]:
            rep[j], rep_q[j] = lo + i, q
    current, best_q = 0, -np.inf
    for j in range(k):
        mind[j] = np.inf if rep[j] >= 0 else -np.inf
        if rep[j] >= 0 and rep_q[j] > best_q:
            current, best_q = j, rep_q[j]
    got = 0
    for s in range(per_id):
        if mind[current] == -np.inf:
            break
        r = rep[current]
        out_index[got], out_rank[got] = r, s
        got += 1
        mind[current] = -np.inf
        nxt, far = 0, -np.inf
        for j in range(k):
            if rep[j] >= 0:
                a = np.float64(pose[rep[j], 0]) - np.float64(pose[r, 0])
                b = np.float64(pose[rep[j], 1]) - np.float64(pose[r, 1])
                c = np.float64(pose[rep[j], 2]) - np.float64(pose[r, 2])
                dist = a * a + b * b + c * c  # float64, as the farthest-point rule was tuned
                if dist < mind[j]:
                    mind[j] = dist
            if mind[j] > far:
                nxt, far = j, mind[j]
        current = nxt
    if got < per_id:
        for i in range(n):
            taken[i] = False
        for t in range(got):
            taken[out_index[t] - lo] = True
        while got < per_id:  # best remaining face, lowest row on ties
            pick, best_q = -1, -np.inf
            for i in range(n):
                if not taken[i] and (pick < 0 or quality[lo + i] > best_q):
                    pick, best_q = i, quality[lo + i]
            if pick < 0:
                break
            taken[pick] = True
            out_index[got], out_rank[got] = lo + pick, got
            got += 1
    return got


@compiled(parallel=True)
def select_all(pose, quality, starts, k, per_id, iters, seed_mix, ordinal0):
    """Every identity: (labels [n], chosen [m, per_id] rows or -1, rank [m, per_id]).

    pose: [n, 3] float32 sorted by identity; starts: [m + 1] row offsets of the identities."""
    n, m = pose.shape[0], len(starts) - 1
    labels = np.empty(n, np.int64)
    chosen = np.full((m, per_id), -1, np.int64)
    ranks = np.full((m, per_id), -1, np.int64)
    parts = min(m, 256)  # scratch is allocated once per part, not once per identity
    for part in prange(parts):
        first, last = part * m // parts, (part + 1) * m // parts
        longest = 0
        for s in range(first, last):
            longest = max(longest, starts[s + 1] - starts[s])
        cent = np.empty((3, k), np.float32)
        d2 = np.empty(longest, np.float32)
        us = np.empty(longest)
        dist = np.empty(k, np.float32)
        sums = np.empty((k, 3))
        counts = np.empty(k, np.int64)
        rep = np.empty(k, np.int64)
        rep_q = np.empty(k)
        mind = np.empty(k)
        taken = np.empty(longest, np.bool_)
        for s in range(first, last):
            lo, hi = starts[s], starts[s + 1]
            if hi == lo:
                continue
            _kmeans_one(pose, lo, hi, k, iters, seed_mix, ordinal0, labels, cent, d2, us, dist, sums, counts)
            _select_one(pose, quality, lo, hi, k, per_id, labels, chosen[s], ranks[s], rep, rep_q, mind, taken)
    return labels, chosen, ranks


def seed_mix(seed: int) -> np.uint64:
    return np.uint64((seed * 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF)
