"""Identity merge and dedup: which clips show the same person.

An identity is one clip by default. Two clips are joined by an edge when (by config) they come
from the same source video (e.g. one YouTube id in CelebV-HQ and CelebV-Text), guarded by a
minimum embedding similarity because two people can share a video, or when their mean
embeddings are at least `embedding_similarity` apart in cosine. Identities are the connected
components. `merge` pools a component's faces; `dedup` keeps only its clip with the most usable
faces. Each edge is kept as evidence on the identity it formed.
"""
from __future__ import annotations

import logging

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from mfhq.config import CurateConfig
from mfhq.curate.evidence import evidence_column
from mfhq.curate.neighbours import (EFFORT_RETRIES, EFFORT_STEP, NEIGHBOURS, SEARCH_EFFORT, CandidateGraphs, cat,
                                    cosines, exact_pairs, range_pairs, unit_rows)

log = logging.getLogger(__name__)


def clip_embeddings(con: duckdb.DuckDBPyConnection, usable_sql: str, n_clips: int) -> np.ndarray:
    """Mean L2-normalised embedding per clip code, streamed: 17M embeddings do not fit in memory."""
    reader = con.sql(f"SELECT clip_code, embedding FROM ({usable_sql})").arrow()
    sums, dim = None, None
    for batch in reader:
        if batch.num_rows == 0:
            continue
        codes = batch.column(0).to_numpy()
        flat = batch.column(1).flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        dim = dim or len(flat) // batch.num_rows
        emb = flat.reshape(batch.num_rows, dim)
        # A sparse [clips x faces] indicator times [faces x dim] sums each clip's embeddings.
        onehot = sparse.csr_matrix((np.ones(len(codes), np.float32), (codes, np.arange(len(codes)))),
                                   shape=(n_clips, len(codes)))
        part = onehot @ emb
        sums = part if sums is None else sums + part
    if sums is None:
        return np.zeros((n_clips, 1), np.float32)
    norm = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.maximum(norm, 1e-12)


EXACT_BELOW = 40_000   # clips; below this the exact range search (BLAS) is cheaper than the graphs
# Candidate groups whose mean embeddings are this far under the threshold are not checked clip
# by clip (ours). For one-clip groups the mean is the clip; a person's clips of one video sit
# closer to their mean than to each other, and strangers' 512-d means are near 0 (sd 0.05).
GROUP_MARGIN = 0.25
RECALL_SAMPLE = 512  # clips whose exact partners check the candidate search on every run (ours)


def all_pairs_edges(emb: np.ndarray, threshold: float, block: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs i < j with cosine >= threshold, by blocked matrix products (no C x C matrix).

    Exact and quadratic in the clip count: the reference the candidate search is tested against."""
    a_all, b_all, s_all = [], [], []
    for begin in range(0, len(emb), block):
        sims = emb[begin:begin + block] @ emb[begin:].T
        a, b = np.nonzero(sims >= threshold)
        keep = b > a  # upper triangle: column offset is relative to `begin` too
        a_all.append(a[keep] + begin)
        b_all.append(b[keep] + begin)
        s_all.append(sims[a[keep], b[keep]])
    return cat(a_all, np.int64), cat(b_all, np.int64), cat(s_all, np.float32)


def _embedding_edges(emb: np.ndarray, threshold: float, groups: np.ndarray | None = None,
                     report: dict | None = None):
    """Pairs i < j of clips in different groups with cosine >= threshold, found without
    comparing all pairs (groups: clips already one identity, e.g. by source video; None: one
    group per clip).

    Up to EXACT_BELOW clips: faiss's exact range search (the same pairs as all_pairs_edges).
    Above, the search runs on one vector per group, the normalised mean of its clips, since a
    pair inside a group adds nothing (ours: blocking by what the data already says). Candidate
    groups come from the graphs of mfhq.curate.neighbours; a candidate pair of groups gives
    every pair of their clips whose exact cosine clears the threshold. Identities are connected
    components, so a missed edge inside a person changes nothing while the person stays
    connected; a group whose every candidate in a graph gave an edge (more similar groups than
    the graph returns) has its clips searched again exactly, so big groups lose no member."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n = len(emb)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    if n <= EXACT_BELOW:
        a, b, s = range_pairs(emb, np.arange(n), threshold)
        cross = np.ones(len(a), bool) if groups is None else groups[a] != groups[b]
        return a[cross], b[cross], s[cross]
    groups = np.arange(n) if groups is None else np.unique(groups, return_inverse=True)[1].ravel()
    n_groups = int(groups.max()) + 1
    reps = sparse.csr_matrix((np.ones(n, np.float32), (groups, np.arange(n))), shape=(n_groups, n)) @ emb
    reps = unit_rows(reps, in_place=True)
    if n_groups < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    graphs, expected = CandidateGraphs(reps), _sampled_pairs(emb, groups, threshold)
    effort = SEARCH_EFFORT
    for attempt in range(EFFORT_RETRIES + 1):
        a, b, s = _candidate_edges(graphs.candidates(effort), emb, reps, groups, threshold)
        found = int(np.isin(expected, a * n + b).sum())
        if found == len(expected) or attempt == EFFORT_RETRIES:
            break
        log.info("embedding merge: the candidate search found %d of %d sampled pairs; searching again with effort %d",
                 found, len(expected), effort * EFFORT_STEP)
        effort *= EFFORT_STEP
    _report_recall(found, len(expected), effort, report)
    return a, b, s


def _candidate_edges(candidates, emb, reps, groups, threshold):
    """The exact clip-pair edges of the candidate group pairs, and a saturated group's clips
    searched exactly."""
    query, cand, graph, results = candidates
    n_groups = len(reps)
    # Full-dimension cosines of the groups first: one per candidate, not one per clip pair.
    near = np.flatnonzero(cosines(reps, query, cand) >= threshold - GROUP_MARGIN)
    a, b, s, pair_of = _group_pair_edges(emb, groups, query[near], cand[near], threshold)
    hits = np.zeros(len(query), bool)
    hits[near[np.unique(pair_of)]] = True
    per_query = np.zeros((n_groups, int(graph.max(initial=0)) + 1), np.int64)
    np.add.at(per_query, (query, graph), hits)
    full = np.zeros_like(per_query)
    full[query, graph] = results
    saturated = np.flatnonzero(((per_query >= full) & (full > 0)).any(1))
    if len(saturated):
        log.info("embedding merge: %d clip groups have more than %d similar groups in a graph; searching them exactly",
                 len(saturated), NEIGHBOURS)
        ea, eb, es = range_pairs(emb, np.flatnonzero(np.isin(groups, saturated)), threshold)
        cross = groups[ea] != groups[eb]
        a, b, s = np.concatenate([a, ea[cross]]), np.concatenate([b, eb[cross]]), np.concatenate([s, es[cross]])
    return exact_pairs(emb, a, b, threshold)


def _sampled_pairs(emb, groups, threshold) -> np.ndarray:
    """The exact cross-group pairs (as i * n + j, i < j) of RECALL_SAMPLE clips drawn with a
    fixed seed: what every run checks its approximate search against (ours)."""
    n = len(emb)
    sample = np.sort(np.random.default_rng(0).choice(n, min(RECALL_SAMPLE, n), replace=False))
    a, b, _ = range_pairs(emb, sample, threshold)  # decided by the edges' own arithmetic, as the search's are
    cross = groups[a] != groups[b]
    return a[cross] * n + b[cross]


def _report_recall(found: int, total: int, effort: int, report: dict | None) -> None:
    if report is not None:
        report.update(recall_sample=RECALL_SAMPLE, recall_pairs=total, recall_found=found, search_effort=effort)
    level = logging.INFO if found == total else logging.WARNING
    log.log(level, "embedding merge: the candidate search (effort %d) found %d of the %d pairs that %d sampled clips "
            "have in the exact search%s", effort, found, total, RECALL_SAMPLE,
            "" if found == total else "; a person whose only pair was missed stays split")


def _group_pair_edges(emb, groups, query, cand, threshold):
    """Every clip pair of each candidate group pair whose cosine clears the threshold:
    (a, b, cosine, index of the candidate pair it came from)."""
    order = np.argsort(groups, kind="stable")
    starts = np.searchsorted(groups[order], np.arange(int(groups.max()) + 2))
    size = np.diff(starts)
    count = size[query] * size[cand]
    pair = np.repeat(np.arange(len(query)), count)
    offset = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    i = order[starts[query[pair]] + offset // size[cand[pair]]]
    j = order[starts[cand[pair]] + offset % size[cand[pair]]]
    s = cosines(emb, i, j)
    keep = s >= threshold
    i, j = i[keep], j[keep]
    return np.minimum(i, j), np.maximum(i, j), s[keep], pair[keep]


def _video_edges(video_codes: np.ndarray, emb: np.ndarray, min_sim: float | None):
    order = np.argsort(video_codes, kind="stable")
    codes = video_codes[order]
    same = np.flatnonzero(codes[1:] == codes[:-1])
    # Chain consecutive clips of one video: a path connects the group as well as all pairs do.
    a, b = order[same], order[same + 1]
    sims = cosines(emb, a, b) if emb.shape[1] > 1 else np.ones(len(a), np.float32)
    if min_sim is not None:
        keep = sims >= min_sim
        log.info("video-key merge: %d candidate pairs, %d refused by the similarity guard", len(a), int((~keep).sum()))
        a, b, sims = a[keep], b[keep], sims[keep]
    return a, b, sims.astype(np.float32)


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return connected_components(sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)[1]


def assign_identities(clips: pa.Table, emb: np.ndarray, cfg: CurateConfig, report: dict | None = None) -> pa.Table:
    """clips: clip_key, video_key, n_usable (one row per clip, in clip-code order). `report`, when
    given, receives the candidate search's recall on a sample (when the search ran).

    Returns clip_key, identity_id, decision, evidence (JSON edges of its identity) per clip.
    """
    keys = np.asarray(clips.column("clip_key").to_pylist(), dtype=object)
    n = len(keys)
    edges = []
    if cfg.merge != "off" and n > 1:
        groups = None
        if cfg.merge_by_video_key:
            codes = pc.cast(clips.column("video_key"), pa.string()).fill_null("None").combine_chunks().dictionary_encode()
            edges.append((*_video_edges(codes.indices.to_numpy(), emb, cfg.video_key_min_similarity), "video_key"))
            groups = _components(n, edges[0][0], edges[0][1])
        if cfg.merge_by_embedding:
            edges.append((*_embedding_edges(emb, cfg.embedding_similarity, groups, report), "embedding"))
    a = np.concatenate([e[0] for e in edges]) if edges else np.zeros(0, np.int64)
    b = np.concatenate([e[1] for e in edges]) if edges else np.zeros(0, np.int64)
    graph = sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    # Identity id: the smallest clip key of the component (readable and order-independent).
    order = np.lexsort((keys.astype(str), comp))
    first = np.ones(n, dtype=bool)
    first[1:] = comp[order[1:]] != comp[order[:-1]]
    comp_name = np.empty(comp.max() + 1 if n else 0, dtype=object)
    comp_name[comp[order[first]]] = keys[order[first]]
    identity = comp_name[comp]
    size = np.bincount(comp, minlength=len(comp_name))[comp]

    decision = np.where(size > 1, "merged", "own").astype(object)
    if cfg.merge == "dedup":
        usable = np.asarray(clips.column("n_usable").to_numpy())
        best = np.lexsort((keys.astype(str), -usable, comp))
        keep_first = np.ones(n, dtype=bool)
        keep_first[1:] = comp[best[1:]] != comp[best[:-1]]
        kept = np.zeros(n, dtype=bool)
        kept[best[keep_first]] = True
        decision = np.where(size > 1, np.where(kept, "dedup_kept", "dedup_dropped"), "own").astype(object)
    ev = evidence_column(keys, comp, size, edges)
    log.info("%d clips -> %d identities (%d merged clips)", n, len(comp_name), int((size > 1).sum()))
    return pa.table({"clip_key": keys.tolist(), "identity_id": identity.tolist(), "decision": decision.tolist(),
                     "evidence": ev})
