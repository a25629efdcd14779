"""Identity merge and dedup: which clips show the same person.

An identity is one clip by default. Two clips are joined by an edge when (by config) they come
from the same source video (e.g. one YouTube id in CelebV-HQ and CelebV-Text), guarded by a
minimum embedding similarity because two people can share a video, or when their mean
embeddings are at least `embedding_similarity` apart in cosine. Identities are the connected
components. `merge` pools a component's faces; `dedup` keeps only its clip with the most usable
faces. Each edge is kept as evidence on the identity it formed.
"""
from __future__ import annotations

import json
import logging

import duckdb
import numpy as np
import pyarrow as pa
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from mfhq.config import CurateConfig

log = logging.getLogger(__name__)
_MAX_EVIDENCE = 50  # edges listed per identity; a huge component keeps its first ones


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


EXACT_BELOW = 40_000   # clips; below this the exact range search (BLAS) is cheaper than the graph
NEIGHBOURS = 16        # candidates per clip from the approximate index above it
CANDIDATE_DIM = 64     # PCA dimensions of the candidate search (edges are checked in full)
# The graph's size and effort: the cheapest setting found (on isotropic synthetic clip means,
# the hard case for a graph index) that still finds every edge of the all-pairs merge at 33.5k
# clips. 48 dimensions lose a few edges to the projection whatever the graph; 16 links or less
# effort lose some to the graph; 32 links/effort 80/32 neighbours cost about twice as much.
GRAPH_LINKS, BUILD_EFFORT, SEARCH_EFFORT = 24, 64, 48


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
    return _cat(a_all, np.int64), _cat(b_all, np.int64), _cat(s_all, np.float32)


def _cat(parts, dtype):
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _embedding_edges(emb: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs i < j with cosine >= threshold, found without comparing all pairs.

    Up to EXACT_BELOW clips: faiss's exact range search (the same pairs as all_pairs_edges).
    Above: candidates are each clip's NEIGHBOURS nearest clips in an HNSW graph over the
    embeddings projected by PCA to CANDIDATE_DIM dimensions (a distance there costs an eighth
    of a 512-d one), and a candidate pair becomes an edge only if its exact cosine in the full
    embedding clears the threshold: approximation can miss an edge, never add one. The graph is
    built on one thread from a PCA fitted on a fixed subsample, so the edges do not depend on
    the machine. Identities are connected components, so a missed edge inside a group changes
    nothing while the group stays connected; a clip whose every candidate clears the threshold
    (a group larger than NEIGHBOURS) is searched again exactly, so big groups lose no member."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its INFO lines read like errors
    import faiss

    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n, dim = emb.shape
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    if n <= EXACT_BELOW:
        return _range_edges(faiss.IndexFlatIP(dim), emb, np.arange(n), threshold)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # a deterministic PCA and graph: insertion order fixes them
    try:
        x = emb
        if dim > CANDIDATE_DIM:
            pca = faiss.PCAMatrix(dim, CANDIDATE_DIM)
            pca.train(emb[:: max(1, n // 50_000)])
            x = pca.apply(emb)
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        index = faiss.IndexHNSWFlat(x.shape[1], GRAPH_LINKS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = BUILD_EFFORT
        index.add(x)
    finally:
        faiss.omp_set_num_threads(threads)
    index.hnsw.efSearch = SEARCH_EFFORT
    k = min(NEIGHBOURS + 1, n)
    _, found = index.search(x, k)  # each query's result depends only on the graph
    found = found.astype(np.int64)
    rows = np.repeat(np.arange(n), k)
    cols = found.ravel()
    ok = (cols >= 0) & (cols != rows)
    rows, cols = rows[ok], cols[ok]
    keep = _cosines(emb, rows, cols) >= threshold
    a, b = np.minimum(rows[keep], cols[keep]), np.maximum(rows[keep], cols[keep])
    per_row = np.bincount(rows[keep], minlength=n)
    saturated = np.flatnonzero(per_row >= k - 1)
    if len(saturated):
        log.info("embedding merge: %d clips have more than %d neighbours above the threshold; searching them exactly",
                 len(saturated), NEIGHBOURS)
        ea, eb, _ = _range_edges(faiss.IndexFlatIP(dim), emb, saturated, threshold)
        a, b = np.concatenate([a, ea]), np.concatenate([b, eb])
    pairs = np.unique(np.stack([a, b], 1), axis=0) if len(a) else np.zeros((0, 2), np.int64)
    a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    # Exact cosines for the kept pairs, the same numbers the all-pairs products give.
    return a, b, _cosines(emb, a, b)


def _cosines(emb: np.ndarray, a: np.ndarray, b: np.ndarray, block: int = 65536) -> np.ndarray:
    """emb[a] . emb[b] row by row, in blocks (gathering 4M pairs of 512-d at once would be 16 GB)."""
    out = np.empty(len(a), np.float32)
    for begin in range(0, len(a), block):
        end = begin + block
        out[begin:end] = np.einsum("ij,ij->i", emb[a[begin:end]], emb[b[begin:end]])
    return out


def _range_edges(index, emb: np.ndarray, queries: np.ndarray, threshold: float, block: int = 8192):
    """Pairs i < j (i in queries) with inner product >= threshold, exactly, by faiss range search."""
    index.add(emb)
    a_all, b_all, s_all = [], [], []
    for begin in range(0, len(queries), block):
        q = queries[begin:begin + block]
        lims, dist, ids = index.range_search(emb[q], float(np.nextafter(np.float32(threshold), np.float32(-1))))
        rows = np.repeat(q, np.diff(lims).astype(np.int64))
        ids = ids.astype(np.int64)
        keep = ids != rows
        a, b = np.minimum(rows[keep], ids[keep]), np.maximum(rows[keep], ids[keep])
        a_all.append(a)
        b_all.append(b)
        s_all.append(dist[keep])
    a, b, s = _cat(a_all, np.int64), _cat(b_all, np.int64), _cat(s_all, np.float32)
    if len(a):
        # Recompute the cosine the way all_pairs_edges does, so both paths keep the same pairs.
        s = _cosines(emb, a, b)
        keep = s >= threshold
        a, b, s = a[keep], b[keep], s[keep]
        pairs, first = np.unique(np.stack([a, b], 1), axis=0, return_index=True)
        a, b, s = pairs[:, 0], pairs[:, 1], s[first]
    return a, b, s


def _video_edges(video_keys: np.ndarray, emb: np.ndarray, min_sim: float | None):
    order = np.argsort(video_keys, kind="stable")
    keys = video_keys[order]
    same = np.flatnonzero(keys[1:] == keys[:-1])
    # Chain consecutive clips of one video: a path connects the group as well as all pairs do.
    a, b = order[same], order[same + 1]
    sims = (emb[a] * emb[b]).sum(1) if emb.shape[1] > 1 else np.ones(len(a), np.float32)
    if min_sim is not None:
        keep = sims >= min_sim
        log.info("video-key merge: %d candidate pairs, %d refused by the similarity guard", len(a), int((~keep).sum()))
        a, b, sims = a[keep], b[keep], sims[keep]
    return a, b, sims.astype(np.float32)


def assign_identities(clips: pa.Table, emb: np.ndarray, cfg: CurateConfig) -> pa.Table:
    """clips: clip_key, video_key, n_usable (one row per clip, in clip-code order).

    Returns clip_key, identity_id, decision, evidence (JSON edges of its identity) per clip.
    """
    keys = np.asarray(clips.column("clip_key").to_pylist(), dtype=object)
    n = len(keys)
    edges = []
    if cfg.merge != "off" and n > 1:
        if cfg.merge_by_video_key:
            vk = np.asarray([f"{v}" for v in clips.column("video_key").to_pylist()], dtype=object)
            edges.append((*_video_edges(vk, emb, cfg.video_key_min_similarity), "video_key"))
        if cfg.merge_by_embedding:
            edges.append((*_embedding_edges(emb, cfg.embedding_similarity), "embedding"))
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

    evidence: dict[int, list] = {}
    for ea, eb, es, by in edges:
        for i, j, s in zip(ea.tolist(), eb.tolist(), es.tolist()):  # edges only: few, not faces
            items = evidence.setdefault(int(comp[i]), [])
            if len(items) < _MAX_EVIDENCE:
                items.append({"a": keys[i], "b": keys[j], "by": by, "similarity": round(float(s), 4)})
    decision = np.where(size > 1, "merged", "own").astype(object)
    if cfg.merge == "dedup":
        usable = np.asarray(clips.column("n_usable").to_numpy())
        best = np.lexsort((keys.astype(str), -usable, comp))
        keep_first = np.ones(n, dtype=bool)
        keep_first[1:] = comp[best[1:]] != comp[best[:-1]]
        kept = np.zeros(n, dtype=bool)
        kept[best[keep_first]] = True
        decision = np.where(size > 1, np.where(kept, "dedup_kept", "dedup_dropped"), "own").astype(object)
    ev = [json.dumps(sorted(evidence.get(int(c), []), key=lambda e: (e["a"], e["b"], e["by"]))) if s > 1 else None
          for c, s in zip(comp.tolist(), size.tolist())]
    log.info("%d clips -> %d identities (%d merged clips)", n, len(comp_name), int((size > 1).sum()))
    return pa.table({"clip_key": keys.tolist(), "identity_id": identity.tolist(), "decision": decision.tolist(),
                     "evidence": ev})
