"""After the merge: which identities a chain of edges formed, and how unlike their clips are.

Merges are transitive (an identity is a connected component of the edges): a-b and b-c joined
make a and c one identity whatever a-c's cosine. This compares every pair of clips within each
merged identity, and names the ones holding two clips that no single merge edge would have
joined. Identities of one clip cost nothing; one of more than CHECKED clips is judged by an
evenly spread CHECKED of them, so the work stays bounded (and the log says so).
"""
from __future__ import annotations

import logging

import numpy as np

from mfhq.config import CurateConfig
from mfhq.curate.within import group_pairs

log = logging.getLogger(__name__)

CHECKED = 2048  # clips of one identity compared pair by pair at most: 2M pairs


def _checked_rows(comp: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Rows of merged identities; of one above CHECKED clips, an evenly spread CHECKED."""
    rows = np.flatnonzero(size > 1)
    rows = rows[np.argsort(comp[rows], kind="stable")]
    rank = np.arange(len(rows)) - np.searchsorted(comp[rows], comp[rows])
    k = size[rows]
    return rows[(k <= CHECKED) | (rank * CHECKED // k != (rank + 1) * CHECKED // k)]


def _bars(cfg: CurateConfig, same_video: np.ndarray) -> np.ndarray:
    """The cosine a direct edge between each pair needs: the guard within a video (none without
    it), embedding_similarity across videos (infinite where nothing joins across videos)."""
    across = cfg.embedding_similarity if cfg.merge_by_embedding else np.inf
    within = -np.inf if cfg.video_key_min_similarity is None else cfg.video_key_min_similarity
    return np.where(same_video, within if cfg.merge_by_video_key else across, across)


def floor(cfg: CurateConfig) -> float | None:
    """The lowest cosine any merge edge needs; None when some edge needs none."""
    bars = ([cfg.video_key_min_similarity] if cfg.merge_by_video_key else []) + \
        ([cfg.embedding_similarity] if cfg.merge_by_embedding else [])
    return None if not bars or None in bars else float(min(bars))


def report_chains(keys: np.ndarray, comp: np.ndarray, names: np.ndarray, video: np.ndarray,
                  emb: np.ndarray, cfg: CurateConfig) -> dict:
    """Log the identities chains formed. keys: clip keys; comp: identity per clip; names: each
    identity's name; video: source video code per clip. Returns chained (count), lowest (per
    identity, NaN for one clip), pair (per identity, its least alike two clips) and sampled."""
    n_comp = len(names)
    size = np.bincount(comp, minlength=n_comp)[comp]
    lowest, pair = np.full(n_comp, np.nan, np.float32), np.full((n_comp, 2), -1, np.int64)
    chained = np.zeros(n_comp, bool)
    if emb.shape[1] < 2 or not (size > 1).any():  # no clip means were read: nothing to compare
        return {"chained": 0, "lowest": lowest, "pair": pair, "sampled": 0}
    groups = np.arange(n_comp, n_comp + len(comp))  # a clip not checked is a group of its own
    rows = _checked_rows(comp, size)
    groups[rows] = comp[rows]
    for a, b, s in group_pairs(groups, emb):  # rows of emb, not a copy of the checked ones
        g = comp[a]
        chained[g[s < _bars(cfg, video[a] == video[b])]] = True
        first = np.lexsort((s, g))
        first = first[np.r_[True, g[first][1:] != g[first][:-1]]]  # each identity's least alike pair here
        better = ~(lowest[g[first]] <= s[first])
        lowest[g[first][better]], pair[g[first][better]] = s[first][better], np.c_[a, b][first][better]
    sampled = int(len(np.unique(comp[size > CHECKED])))
    _log(keys, names, np.bincount(comp, minlength=n_comp), lowest, pair, chained, sampled, floor(cfg))
    return {"chained": int(chained.sum()), "lowest": lowest, "pair": pair, "sampled": sampled}


def _log(keys, names, by_size, lowest, pair, chained, sampled, bar) -> None:
    largest = int(np.argmax(by_size))
    cut = f"; {sampled} identities of over {CHECKED} clips judged by {CHECKED} of their clips" if sampled else ""
    log.info("merge: identities of several clips: %d, formed by chains: %d (two of their clips less alike than a "
             "direct edge needs); the largest, %s (%d clips), has lowest pairwise clip-mean cosine %.3f%s",
             int((by_size > 1).sum()), int(chained.sum()), names[largest], by_size[largest], lowest[largest], cut)
    if bar is None:
        return
    below = np.flatnonzero(lowest < bar)
    if len(below):
        worst = int(below[np.argmin(lowest[below])])
        log.warning("merge: %d identities hold two clips less alike than any merge edge needs (cosine < %g), joined "
                    "through other clips; the least alike: %s and %s at %.3f, in %s (%d clips). Merges are "
                    "transitive (docs/curate.md, Identities): raise the guard or threshold to split such chains",
                    len(below), bar, keys[pair[worst, 0]], keys[pair[worst, 1]], lowest[worst], names[worst],
                    by_size[worst])
