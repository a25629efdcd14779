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
from mfhq.curate.persons import PersonGuard

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


def video_edges(video_codes: np.ndarray, emb: np.ndarray, min_sim: float | None, guard: PersonGuard | None = None):
    """Edges joining the clips of each source video: with a guard, the strongest forest of every
    pair of a video's clips at cosine >= min_sim; without one, consecutive clips (the key alone
    joins them all; the cosines are evidence only). A video with person keys (`guard`:
    mfhq.curate.persons) takes its pairs (all of them without min_sim) most alike first under the
    person constraint instead, keeping those that join; every edge returned is in `guard`."""
    keyed = _keyed_videos(video_codes, guard)
    if min_sim is None:
        a, b, sims = _consecutive(video_codes, emb, keyed)
        mine = [(a, b, sims)] + ([] if keyed is None else [_all_pairs(video_codes, emb, keyed)])
        return _with_person_keys(mine, guard, None)
    forest = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    held: list[tuple] = []  # the guarded pairs of videos with person keys
    compared = refused = 0
    for a, b, s in group_pairs(video_codes, emb):
        keep = s >= min_sim
        compared, refused = compared + len(a), refused + int((~keep).sum())
        if keyed is not None:
            hold = keep & keyed[video_codes[a]]
            held.append((a[hold], b[hold], s[hold]))
            keep &= ~hold
        forest = strongest_forest(len(video_codes), cat([forest[0], a[keep]], np.int64),
                                  cat([forest[1], b[keep]], np.int64), cat([forest[2], s[keep]], np.float32))
    edges = _with_person_keys([forest, *held], guard, min_sim)
    log.info("video-key merge: every pair of clips within a video compared: %d pairs, %d refused by the "
             "similarity guard (cosine < %g); %d edges join them", compared, refused, min_sim, len(edges[0]))
    return edges


def _keyed_videos(video_codes: np.ndarray, guard: PersonGuard | None) -> np.ndarray | None:
    """Per video code: whether a clip of it has a person key; None without any."""
    if guard is None:
        return None
    keyed = np.zeros(int(video_codes.max()) + 1 if len(video_codes) else 0, bool)
    keyed[video_codes[guard.keyed]] = True
    return keyed


def _consecutive(video_codes: np.ndarray, emb: np.ndarray, keyed: np.ndarray | None):
    """Consecutive clips of each video (of those without person keys, when `keyed` is given)."""
    order = np.argsort(video_codes, kind="stable")
    same = np.flatnonzero(video_codes[order][1:] == video_codes[order][:-1])
    a, b = order[same], order[same + 1]
    if keyed is not None:
        plain = ~keyed[video_codes[a]]
        a, b = a[plain], b[plain]
    sims = cosines(emb, a, b) if emb.shape[1] > 1 else np.ones(len(a), np.float32)
    return a.astype(np.int64), b.astype(np.int64), sims.astype(np.float32)


def _all_pairs(video_codes: np.ndarray, emb: np.ndarray, keyed: np.ndarray):
    """Every pair of clips within each video with person keys (cosine 1 without clip means)."""
    groups = np.where(keyed[video_codes], video_codes, len(keyed) + np.arange(len(video_codes)))
    found = list(group_pairs(groups, emb))
    a, b = cat([f[0] for f in found], np.int64), cat([f[1] for f in found], np.int64)
    sims = cat([f[2] for f in found], np.float32) if emb.shape[1] > 1 else np.ones(len(a), np.float32)
    return a, b, sims


def _with_person_keys(parts: list[tuple], guard: PersonGuard | None, min_sim: float | None):
    """parts[0]: edges of videos without person keys, all taken; the rest: pairs of videos with
    them, of which the guard keeps those that join two components."""
    if guard is None:
        return parts[0]
    a, b, s = (cat([p[i] for p in parts[1:]], t) for i, t in enumerate((np.int64, np.int64, np.float32)))
    guard.take(parts[0][0], parts[0][1], parts[0][2])  # no person key among them: none is refused
    joined = guard.take(a, b, s) > 0
    if guard.refused:
        log.info("video-key merge: %d pairs of clips of one video%s refused by their person keys (two people by the "
                 "source's annotation)", guard.refused, "" if min_sim is None else f" at cosine >= {min_sim:g}")
    return (cat([parts[0][0], a[joined]], np.int64), cat([parts[0][1], b[joined]], np.int64),
            cat([parts[0][2], s[joined]], np.float32))
