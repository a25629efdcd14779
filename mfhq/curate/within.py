"""Every pair of clips within a group (a source video, an identity), by cosine of clip means.

The video-key merge compares every pair of a video's clips, not a chain of neighbours: with a
similarity guard a chain breaks where another person's clip sits between two of one person's
(clips a, b, c of one video, b someone else: a-b and b-c are refused and a-c never compared).
A video of k clips has k(k-1)/2 pairs: videos are taken together in batches of about PAIRS
pairs, one too large for a batch by blocks of its rows against its later clips, so memory stays
bounded and no pair is skipped. Of the guarded pairs the merge keeps a maximum spanning forest
(the most alike pairs that connect each video's clips): the same identities as all of them, at
most one edge per clip for the evidence column.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import minimum_spanning_tree

from mfhq.curate.pairs import cat, cosines

log = logging.getLogger(__name__)

PAIRS = 1 << 22  # pairs per batch: their indices and cosines take about 80 MB


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each count c, concatenated."""
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


def group_pairs(groups: np.ndarray, emb: np.ndarray, batch: int = PAIRS):
    """Yield (a, b, cosine) batches of every pair a < b of rows with the same group code."""
    order = np.argsort(groups, kind="stable")  # rows ascending within a group: a < b below
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, len(g)])
    starts, sizes = starts[sizes > 1], sizes[sizes > 1]
    n_pairs = sizes * (sizes - 1) // 2
    small = n_pairs <= batch
    part = np.cumsum(n_pairs[small]) // batch  # consecutive groups, about `batch` pairs each
    for p in np.unique(part):
        s, k = starts[small][part == p], sizes[small][part == p]
        pos = np.repeat(s, k) + _ranks(k)  # members' positions in `order`
        later = np.repeat(s + k, k) - pos - 1  # members after each one in its group
        a_pos = np.repeat(pos, later)
        a, b = order[a_pos], order[a_pos + 1 + _ranks(later)]
        yield a, b, cosines(emb, a, b)
    for s, k in zip(starts[~small].tolist(), sizes[~small].tolist()):
        rows = order[s:s + k]
        step = max(1, batch // k)
        for begin in range(0, k, step):
            sims = emb[rows[begin:begin + step]] @ emb[rows[begin:]].T
            i, j = np.nonzero(np.triu(np.ones(sims.shape, bool), 1))
            yield rows[begin + i], rows[begin + j], sims[i, j].astype(np.float32)


def strongest_forest(n: int, a: np.ndarray, b: np.ndarray, s: np.ndarray):
    """A maximum spanning forest of the edges (a, b, cosine s) over n rows: the same connected
    components with at most n - 1 edges, the most alike ones. Edges are distinct pairs."""
    if not len(a):
        return a, b, s
    # Weights 2 - s are positive (a zero would be no edge) and exact in float64, so s comes back bit for bit.
    tree = minimum_spanning_tree(sparse.coo_matrix((2.0 - s.astype(np.float64), (a, b)), shape=(n, n))).tocoo()
    return (np.minimum(tree.row, tree.col).astype(np.int64), np.maximum(tree.row, tree.col).astype(np.int64),
            (2.0 - tree.data).astype(np.float32))


def video_edges(video_codes: np.ndarray, emb: np.ndarray, min_sim: float | None):
    """Edges joining the clips of each source video: with a guard, the strongest forest of every
    pair of a video's clips at cosine >= min_sim; without one, consecutive clips (the key alone
    joins them all; the cosines are evidence only)."""
    n = len(video_codes)
    if min_sim is None:
        order = np.argsort(video_codes, kind="stable")
        same = np.flatnonzero(video_codes[order][1:] == video_codes[order][:-1])
        a, b = order[same], order[same + 1]
        sims = cosines(emb, a, b) if emb.shape[1] > 1 else np.ones(len(a), np.float32)
        return a.astype(np.int64), b.astype(np.int64), sims.astype(np.float32)
    forest = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    compared = refused = 0
    for a, b, s in group_pairs(video_codes, emb):
        keep = s >= min_sim
        compared, refused = compared + len(a), refused + int((~keep).sum())
        forest = strongest_forest(n, cat([forest[0], a[keep]], np.int64), cat([forest[1], b[keep]], np.int64),
                                  cat([forest[2], s[keep]], np.float32))
    log.info("video-key merge: every pair of clips within a video compared: %d pairs, %d refused by the "
             "similarity guard (cosine < %g); %d edges join them", compared, refused, min_sim, len(forest[0]))
    return forest
