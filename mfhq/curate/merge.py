"""Identity merge and dedup: which clips show the same person.

An identity is one clip by default. Two clips are joined by an edge when (by config) they come
from the same source video (e.g. one YouTube id in CelebV-HQ and CelebV-Text), guarded by a
minimum embedding similarity because two people can share a video (every pair of a video's
clips is compared: mfhq.curate.within), or when their mean embeddings are at least
`embedding_similarity` apart in cosine. Identities are the connected components, so merges are
transitive: mfhq.curate.chains logs the identities chains of edges formed. `merge` pools a
component's faces; `dedup` keeps only its clip with the most usable faces. Each edge is kept as evidence on the identity it formed.
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
from mfhq.curate.chains import report_chains
from mfhq.curate.evidence import evidence_column
from mfhq.curate.pairs import PairSearch, cat, set_up_in_background, similar_pairs
from mfhq.curate.persons import PersonGuard, person_codes, refused_evidence
from mfhq.curate.within import video_edges
from mfhq.manifest.clip_means import clip_sums, outputs_sql, sums_from_clip_rows, unit_rows

log = logging.getLogger(__name__)


def reads_embeddings(cfg: CurateConfig) -> bool:
    """Whether the merge needs clip means: to merge by them, or to guard a video-key merge."""
    return cfg.merge != "off" and (cfg.merge_by_embedding or cfg.video_key_min_similarity is not None)


def prepare(cfg: CurateConfig, clips_at_most: int) -> None:
    """Start the embedding merge's one-off setup in the background (mfhq.curate.pairs), to
    overlap the reading of the faces and clip means that comes before the merge."""
    if cfg.merge != "off" and cfg.merge_by_embedding:
        set_up_in_background(clips_at_most)


def clip_means(con: duckdb.DuckDBPyConnection, n_clips: int, narrowed: bool) -> np.ndarray:
    """Each clip code's mean usable embedding; needs views `usable_faces`, `clip_codes` and `clips`.

    From the sums extract wrote into the clip rows, unless curation narrows the usable faces
    (`narrowed`: curate.min_quality) or a clip row has none (a shard written before them): then
    from every usable face's embedding, the same sums the slow way (mfhq.manifest.clip_means)."""
    if not narrowed:
        sums, lacking = sums_from_clip_rows(con, n_clips)
        if not lacking:
            return unit_rows(sums, n_clips)
    log.info("clip means: read from every usable face's embedding (%s)",
             "curate.min_quality narrows the usable faces" if narrowed
             else f"{lacking} clip rows were written without their embedding sum")
    return unit_rows(clip_sums(con, outputs_sql("usable_faces", "clip_codes"), n_clips)[0], n_clips)


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
    """Pairs of clips in different groups (clips already one identity, e.g. by source video; None:
    one group per clip) whose embeddings' cosine is at least threshold, every pair of groups
    compared exactly (mfhq.curate.pairs). A group of several clips is compared as one, by the
    mean of its clips' unit means (each clip one vote), named by its first clip: the work grows
    with the square of the groups, not of the clips."""
    search = PairSearch()
    if groups is None:
        a, b, s = similar_pairs(emb, threshold, search)
        compared = f"every pair of {len(emb)} clips"
    else:
        group_emb, first = _group_means(emb, groups)
        a, b, s = similar_pairs(group_emb, threshold, search)
        a, b = np.minimum(first[a], first[b]), np.maximum(first[a], first[b])
        compared = f"every pair of {len(first)} groups of {len(emb)} clips (by source video)"
    log.info("embedding merge: %s compared (filter: %s) in %.1f s: %d candidates, %d pairs at cosine >= %g",
             compared, search.arithmetic, search.seconds, search.candidates, search.pairs, threshold)
    return a, b, s


def _group_means(emb: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit mean of each group's clip means, each group's first clip); a group of one clip keeps
    its clip's mean as it is."""
    _, first, inverse, counts = np.unique(groups, return_index=True, return_inverse=True, return_counts=True)
    out = emb[first]
    several = np.flatnonzero(counts > 1)
    if len(several):
        member = np.flatnonzero(counts[inverse] > 1)
        slot = np.searchsorted(several, inverse[member])  # each member's row among the groups of several
        sums = sparse.csr_matrix((np.ones(len(member), np.float32), (slot, member)),
                                 shape=(len(several), len(emb))) @ emb
        out[several] = unit_rows(np.asarray(sums, np.float32), len(several))
    return out, first


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return connected_components(sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)[1]


def _edges(clips: pa.Table, video: np.ndarray, emb: np.ndarray, cfg: CurateConfig) -> tuple[list, PersonGuard | None]:
    """The merge edges (a, b, cosine, by) per rule, and the person-key guard (None: no clip has a key)."""
    n, edges = clips.num_rows, []
    codes = person_codes(clips)
    guard = PersonGuard(*codes) if codes is not None and cfg.merge != "off" else None
    if cfg.merge == "off" or n < 2:
        return edges, guard
    groups = None
    if cfg.merge_by_video_key:
        edges.append((*video_edges(video, emb, cfg.video_key_min_similarity, guard), "video_key"))
        groups = _components(n, edges[0][0], edges[0][1])
    if cfg.merge_by_embedding:
        a, b, s = _embedding_edges(emb, cfg.embedding_similarity, groups)
        if guard is not None:  # most alike first, on top of the video-key merge's components
            before, kept = guard.refused, guard.take(a, b, s) >= 0
            a, b, s = a[kept], b[kept], s[kept]
            log.info("embedding merge: %d edges refused: they would join two person keys of one video "
                     "(two people by the source's annotation)", guard.refused - before)
        edges.append((a, b, s, "embedding"))
    return edges, guard


def assign_identities(clips: pa.Table, emb: np.ndarray, cfg: CurateConfig) -> pa.Table:
    """clips: clip_key, video_key, n_usable (one row per clip, in clip-code order), optionally
    source and person_key (mfhq.curate.persons).

    Returns clip_key, identity_id, decision, evidence (JSON edges of its identity) per clip.
    """
    keys = np.asarray(clips.column("clip_key").to_pylist(), dtype=object)
    n = len(keys)
    codes = pc.cast(clips.column("video_key"), pa.string()).fill_null("None").combine_chunks().dictionary_encode()
    video = codes.indices.to_numpy()
    edges, guard = _edges(clips, video, emb, cfg)
    a = np.concatenate([e[0] for e in edges]) if edges else np.zeros(0, np.int64)
    b = np.concatenate([e[1] for e in edges]) if edges else np.zeros(0, np.int64)
    comp = _components(n, a, b)
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
    refused = refused_evidence(guard, comp) if guard is not None else None
    if refused is not None:
        log.info("person keys: %d edges refused in all (docs/curate.md, Identities); the most alike refused edge "
                 "between two identities is in the evidence of both (by: %s)", guard.refused, refused[3])
    ev = evidence_column(keys, comp, size, edges + ([refused] if refused is not None else []))
    # Counted as the stats headline counts them: the clips other than the one naming an identity
    # (merge) or kept for it (dedup); identities short of faces_per_identity are dropped or
    # flagged after this, so the manifests may hold fewer.
    joined = n - len(comp_name)
    how = "dropped as duplicates" if cfg.merge == "dedup" else "merged into another's identity"
    log.info("%d clips -> %d identities before the short-identity rule (%d clips %s)", n, len(comp_name), joined, how)
    report_chains(keys, comp, comp_name, video, emb, cfg)
    return pa.table({"clip_key": keys.tolist(), "identity_id": identity.tolist(), "decision": decision.tolist(),
                     "evidence": ev})
