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


def _sq_dist(cols: list[np.ndarray], pcols: list[np.ndarray], sizes: np.ndarray) -> np.ndarray:
    """[n, k] squared distances of each face to its identity's centroids, in place (float32).

    Faces are sorted by identity, so repeating each identity's centroid row `sizes` times lines
    them up with the faces: a block copy, faster than a gather; no [n, k, 3] temporary."""
    d = np.repeat(cols[0], sizes, axis=0)
    d -= pcols[0]
    d *= d
    for c, pc in zip(cols[1:], pcols[1:]):
        t = np.repeat(c, sizes, axis=0)
        t -= pc
        t *= t
        d += t
    return d


def kmeans_pose(pose: np.ndarray, seg: np.ndarray, m: int, k: int, iters: int, seed: int,
                offset: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means per identity. pose: [n, 3], seg: [n]. Returns labels [n] and counts [m, k].

    Seeding is k-means++ by an exponential race: argmax of w_i / E_i with E_i ~ Exp(1) picks face
    i with probability w_i / sum(w), where w is the squared distance to the nearest chosen centre.
    Lloyd iterations stop early once no label changes.
    """
    n = len(pose)
    pose = pose.astype(np.float32)
    pcols = [np.ascontiguousarray(pose[:, d:d + 1]) for d in range(3)]
    starts = seg_starts(seg, m)
    sizes = np.diff(np.append(starts, n))
    k_eff = np.minimum(sizes, k)
    ordinal = np.arange(offset, offset + n)
    # Axis-major: one contiguous [m, k] per axis. Unused centroids (identities with fewer than k
    # faces) sit far away, so no face ever picks them and no mask is needed.
    cent = np.full((3, m, k), 1e15, dtype=np.float32)
    d2 = np.full(n, np.inf, dtype=np.float32)
    for j in range(k):
        active = k_eff > j
        weight = np.ones(n) if j == 0 else d2.astype(np.float64)
        score = weight / -np.log(hash_uniform(seed, ordinal, j))
        score[~active[seg]] = -1.0
        pick = seg_argmax(score, seg, starts)
        cent[:, active, j] = pose[pick[active]].T
        near = sum((pose[:, d] - cent[d, seg, j]) ** 2 for d in range(3))
        d2 = np.minimum(d2, np.where(active[seg], near, np.inf)).astype(np.float32)
    labels = np.full(n, -1, dtype=np.int64)
    for _ in range(max(iters, 1)):  # at least one assignment, or labels stay -1
        dist = _sq_dist(list(cent), pcols, sizes)
        new = dist.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        flat = seg * k + labels
        counts = np.bincount(flat, minlength=m * k)
        filled = counts > 0
        for d in range(3):
            sums = np.bincount(flat, weights=pose[:, d], minlength=m * k)
            cent[d].reshape(-1)[filled] = sums[filled] / counts[filled]
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


def _select_job(args):
    """One batch of whole identities: (rows chosen, their rank, their pose cluster), batch-local."""
    pose, quality, seg, m, k, per_id, iters, seed, offset = args
    sel = select_faces(pose, quality, seg, m, k, per_id, iters, seed, offset)
    return sel.index, sel.rank, sel.labels[sel.index]


def stream_select(batches, k: int, per_id: int, iters: int, seed: int, chunk_faces: int, workers: int,
                  keys: list[str]):
    """Select faces from a stream of Arrow record batches sorted by `id_code`.

    The stream is cut into jobs of about `chunk_faces` faces at identity boundaries (the rows of
    an identity that continues in the next batch wait for it), so memory holds a few jobs, not
    the table. Each face's ordinal is its global row number, so the k-means seeding, and hence
    the result, is the same for any batch size and any number of workers. Yields, per job and
    in order, the chosen rows' `keys` columns with sample_rank and pose_cluster."""
    import pyarrow as pa

    def jobs():
        pending, rows_before = [], 0
        for batch in batches:
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            if sum(b.num_rows for b in pending) < chunk_faces:
                continue
            table = pa.Table.from_batches(pending)
            seg = table.column("id_code").to_numpy()
            cut = int(np.searchsorted(seg, seg[-1]))  # the last identity may go on in the next batch
            if cut == 0:
                continue
            yield _job(table.slice(0, cut), rows_before)
            rows_before += cut
            pending = table.slice(cut).to_batches()
        if pending:
            table = pa.Table.from_batches(pending)
            if table.num_rows:
                yield _job(table, rows_before)

    def _job(table, offset):
        seg = table.column("id_code").to_numpy().astype(np.int64)
        seg = seg - seg[0]
        pose = np.stack([table.column(c).to_numpy().astype(np.float64) for c in ("yaw", "pitch", "roll")], 1)
        quality = table.column("quality").to_numpy().astype(np.float64)
        return table.select(keys), (pose, quality, seg, int(seg[-1]) + 1, k, per_id, iters, seed, offset)

    def finish(key_table, result):
        index, rank, labels = result
        picked = key_table.take(pa.array(index))
        picked = picked.append_column("sample_rank", pa.array(rank.astype(np.int16)))
        return picked.append_column("pose_cluster", pa.array(labels.astype(np.int16)))

    if workers <= 1:
        for key_table, args in jobs():
            yield finish(key_table, _select_job(args))
        return
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        in_flight = deque()
        for key_table, args in jobs():  # at most 2 jobs per worker queued: bounded memory
            in_flight.append((key_table, pool.submit(_select_job, args)))
            if len(in_flight) >= 2 * workers:
                table, future = in_flight.popleft()
                yield finish(table, future.result())
        while in_flight:
            table, future = in_flight.popleft()
            yield finish(table, future.result())
