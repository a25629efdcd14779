"""Pairs of unit vectors at or above a cosine, found without comparing all pairs (ours).

The exact path is faiss's range search (BLAS). The approximate path searches HNSW graphs over
the vectors projected by PCA and keeps a candidate only after its exact cosine in full
dimension clears the threshold, so approximation can miss a pair, never add one.

The graphs are built on one thread each from a PCA fitted on a fixed subsample, so the pairs do
not depend on the machine: GRAPH_SHARDS graphs over fixed slices of the vectors are built side by
side on threads (faiss releases the GIL), and every vector is searched in each of them. The
faiss build here dispatches its distance kernels at run time (`simd_level()` names the level).
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

NEIGHBOURS = 16        # candidates per vector and graph
CANDIDATE_DIM = 64     # PCA dimensions of the candidate search (pairs are checked in full)
GRAPH_SHARDS = 2       # graphs built side by side, one thread each (a fixed number: the same pairs anywhere)
# The graph's size and effort: the cheapest setting found (on isotropic synthetic clip means,
# the hard case for a graph index) that still finds every pair of the all-pairs merge at 33.5k
# clips. 48 dimensions lose a few pairs to the projection whatever the graph; 16 links or less
# effort lose some to the graph.
GRAPH_LINKS, BUILD_EFFORT, SEARCH_EFFORT = 24, 64, 48
# When a run's own recall check finds missed pairs, the graphs are searched again with this much
# more effort, at most twice (ours): on isotropic clip means, 48 -> 96 cut the missed pairs at
# 134k clips from 59 to 6 in 89k.
EFFORT_STEP, EFFORT_RETRIES = 2, 2


def _faiss():
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its INFO lines read like errors
    import faiss

    return faiss


def simd_level() -> str:
    """The instruction set faiss's distance kernels run with here (e.g. AVX512_SPR, AVX2)."""
    faiss = _faiss()
    config = getattr(faiss, "SIMDConfig", None)
    return config.get_level_name() if config is not None else "unknown (faiss without SIMDConfig)"


def cat(parts, dtype):
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def cosines(emb: np.ndarray, a: np.ndarray, b: np.ndarray, block: int = 8192) -> np.ndarray:
    """emb[a] . emb[b] row by row, in blocks gathered into two reused buffers (fresh pages are
    the slow part of a large gather, not the arithmetic)."""
    out = np.empty(len(a), np.float32)
    rows = min(block, len(a))
    left, right = np.empty((rows, emb.shape[1]), emb.dtype), np.empty((rows, emb.shape[1]), emb.dtype)
    for begin in range(0, len(a), block):
        end = min(begin + block, len(a))
        m = end - begin
        np.take(emb, a[begin:end], axis=0, out=left[:m])
        np.take(emb, b[begin:end], axis=0, out=right[:m])
        out[begin:end] = np.einsum("ij,ij->i", left[:m], right[:m])
    return out


def range_pairs(emb: np.ndarray, queries: np.ndarray, threshold: float, block: int = 8192):
    """Pairs i < j (i in queries) with emb[i] . emb[j] >= threshold, exactly, by faiss range search."""
    faiss = _faiss()
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    a_all, b_all = [], []
    for begin in range(0, len(queries), block):
        q = queries[begin:begin + block]
        lims, _, ids = index.range_search(emb[q], float(np.nextafter(np.float32(threshold), np.float32(-1))))
        rows = np.repeat(q, np.diff(lims).astype(np.int64))
        ids = ids.astype(np.int64)
        keep = ids != rows
        a_all.append(np.minimum(rows[keep], ids[keep]))
        b_all.append(np.maximum(rows[keep], ids[keep]))
    return exact_pairs(emb, cat(a_all, np.int64), cat(b_all, np.int64), threshold)


def exact_pairs(emb: np.ndarray, a: np.ndarray, b: np.ndarray, threshold: float):
    """The distinct pairs (a < b) whose cosine, computed the way the all-pairs products compute
    it, clears the threshold, with that cosine."""
    if not len(a):
        return a, b, np.zeros(0, np.float32)
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    s = cosines(emb, a, b)
    keep = s >= threshold
    return a[keep], b[keep], s[keep]


def _project(emb: np.ndarray) -> np.ndarray:
    faiss = _faiss()
    n, dim = emb.shape
    if dim <= CANDIDATE_DIM or n < dim:  # too few vectors to fit the projection: search them as they are
        return emb
    pca = faiss.PCAMatrix(dim, CANDIDATE_DIM)
    pca.train(emb[:: max(1, n // 50_000)])
    return unit_rows(pca.apply(emb), in_place=True)


def unit_rows(x: np.ndarray, in_place: bool = False) -> np.ndarray:
    """x with each row scaled to unit length (einsum: linalg.norm of float32 rows is 40x slower);
    in_place reuses x's memory."""
    norm = np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), 1e-12)[:, None]
    if in_place:
        x /= norm
        return x
    return x / norm


def _build_graph(x: np.ndarray):
    faiss = _faiss()
    faiss.omp_set_num_threads(1)  # per thread in OpenMP: this graph's insertion order alone fixes it
    index = faiss.IndexHNSWFlat(x.shape[1], GRAPH_LINKS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = BUILD_EFFORT
    index.add(x)
    return index


class CandidateGraphs:
    """GRAPH_SHARDS graphs over fixed slices of unit vectors (projected), built once and searched
    at any effort: a search that missed pairs can be repeated with more effort, not rebuilt."""

    def __init__(self, emb: np.ndarray):
        faiss = _faiss()
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        self.n = len(emb)
        with ThreadPoolExecutor(1) as one:  # a fresh thread: its OpenMP setting is its own
            self.x = one.submit(lambda: (faiss.omp_set_num_threads(1), _project(emb))[1]).result()
        self.slices = np.array_split(np.arange(self.n), min(GRAPH_SHARDS, self.n))
        with ThreadPoolExecutor(len(self.slices)) as pool:
            self.graphs = list(pool.map(lambda part: _build_graph(np.ascontiguousarray(self.x[part])), self.slices))

    def candidates(self, effort: int = SEARCH_EFFORT):
        """(query, candidate, graph, results) per candidate pair: each vector's nearest vectors
        in every graph. results: how many other vectors that graph returned for the query; a
        query whose every result in a graph clears the threshold may have more, so the caller
        searches it exactly."""
        n = self.n
        rows_all, cols_all, shard_all, size_all = [], [], [], []
        own = np.empty(n, np.int64)
        for shard, part in enumerate(self.slices):
            own[part] = shard
        for shard, (part, index) in enumerate(zip(self.slices, self.graphs)):
            k = min(NEIGHBOURS + 1, len(part))
            index.hnsw.efSearch = max(effort, k)
            _, found = index.search(self.x, k)  # each query's result depends only on the graph
            ok = found >= 0
            cols = part[found[ok]]
            rows = np.repeat(np.arange(n), ok.sum(1))
            other = cols != rows
            rows, cols = rows[other], cols[other]
            rows_all.append(rows)
            cols_all.append(cols)
            shard_all.append(np.full(len(rows), shard, np.int64))
            # Results that can be other vectors: k, less one where the query itself is in this graph.
            size_all.append(k - (own[rows] == shard))
        return cat(rows_all, np.int64), cat(cols_all, np.int64), cat(shard_all, np.int64), cat(size_all, np.int64)
