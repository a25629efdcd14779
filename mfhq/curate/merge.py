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
from mfhq.curate.pairs import PairSearch, cat, cosines, similar_pairs

log = logging.getLogger(__name__)


CLIP_MEAN_BATCH = 1 << 16  # faces summed per step: 32 MiB of 128-d embeddings


def clip_embeddings(con: duckdb.DuckDBPyConnection, usable_sql: str, n_clips: int) -> np.ndarray:
    """Mean L2-normalised embedding per clip code, streamed: 17M embeddings do not fit in memory.

    A batch is summed into the rows of the clips it holds, by a sparse indicator product over
    those clips only: its cost does not grow with the clip count (a dense [clips x dim] partial
    sum per batch made small batches of 134k clips' faces 4-5x slower than the decode)."""
    reader = con.sql(f"SELECT clip_code, embedding FROM ({usable_sql})").to_arrow_reader(CLIP_MEAN_BATCH)
    sums = None
    for batch in reader:
        if batch.num_rows == 0:
            continue
        codes = batch.column(0).to_numpy()
        flat = batch.column(1).flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        emb = flat.reshape(batch.num_rows, len(flat) // batch.num_rows)
        if sums is None:
            sums = np.zeros((n_clips, emb.shape[1]), np.float32)
        present = np.bincount(codes, minlength=n_clips) > 0
        clips = np.flatnonzero(present)
        row = (np.cumsum(present) - 1)[codes]  # each face's clip, numbered among this batch's clips
        onehot = sparse.csr_matrix((np.ones(len(codes), np.float32), (row, np.arange(len(codes)))),
                                   shape=(len(clips), len(codes)))
        sums[clips] += onehot @ emb
    if sums is None:
        return np.zeros((n_clips, 1), np.float32)
    norm = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.maximum(norm, 1e-12)


# Each embedder output once (faces aliased u): with embed.every > 1 a face may carry a copy of a
# track neighbour's embedding; embedding_frame names the frame it came from (NULL in older runs).
EMBEDDER_OUTPUTS = "u.embedding IS NOT NULL AND (u.embedding_frame IS NULL OR u.embedding_frame = u.frame_index)"


def reads_embeddings(cfg: CurateConfig) -> bool:
    """Whether the merge needs clip means: to merge by them, or to guard a video-key merge."""
    return cfg.merge != "off" and (cfg.merge_by_embedding or cfg.video_key_min_similarity is not None)


def clip_means(con: duckdb.DuckDBPyConnection, n_clips: int) -> np.ndarray:
    """Each clip code's mean usable embedding; needs views `usable_faces` and `clip_codes`."""
    return clip_embeddings(con, "SELECT c.clip_code, u.embedding FROM usable_faces u JOIN clip_codes c "
                                f"USING (source, clip_id) WHERE {EMBEDDER_OUTPUTS}", n_clips)


def all_pairs_edges(emb: np.ndarray, threshold: float, block: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs i < j with cosine >= threshold, by plain blocked float32 matrix products: the
    reference the merge's own search (mfhq.curate.pairs) is tested and benchmarked against."""
    a_all, b_all, s_all = [], [], []
    for begin in range(0, len(emb), block):
        sims = emb[begin:begin + block] @ emb[begin:].T
        a, b = np.nonzero(sims >= threshold)
        keep = b > a  # upper triangle: column offset is relative to `begin` too
        a_all.append(a[keep] + begin)
        b_all.append(b[keep] + begin)
        s_all.append(sims[a[keep], b[keep]])
    return cat(a_all, np.int64), cat(b_all, np.int64), cat(s_all, np.float32)


def _embedding_edges(emb: np.ndarray, threshold: float, groups: np.ndarray | None = None):
    """Pairs i < j of clips in different groups (clips already one identity, e.g. by source
    video; None: one group per clip) whose mean embeddings' cosine is at least threshold: every
    pair compared, exactly (mfhq.curate.pairs)."""
    search = PairSearch()
    a, b, s = similar_pairs(emb, threshold, search)
    if groups is not None:
        cross = groups[a] != groups[b]
        a, b, s = a[cross], b[cross], s[cross]
    log.info("embedding merge: every pair of %d clips compared (filter: %s) in %.1f s: %d candidates, %d pairs at "
             "cosine >= %g, %d across groups", len(emb), search.arithmetic, search.seconds, search.candidates,
             search.pairs, threshold, len(a))
    return a, b, s


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


def assign_identities(clips: pa.Table, emb: np.ndarray, cfg: CurateConfig) -> pa.Table:
    """clips: clip_key, video_key, n_usable (one row per clip, in clip-code order).

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
            edges.append((*_embedding_edges(emb, cfg.embedding_similarity, groups), "embedding"))
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
