"""Deterministic train/test split, disjoint in identities and in source videos.

Identities and videos form a graph (an identity touches the videos of all its member clips,
not only those its sampled faces come from: identities.parquet's rows, duplicates included; a
video can hold several identities). A connected component goes wholly to one side, which is
what makes both disjoint, over the manifests' rows and over every member clip of their
identities. `videos` mode holds out components, in an order fixed by a hash of (split_seed,
their smallest video key), until `test_videos` videos are held out. `official` mode
follows the source's split per clip, of the rows' clips and of every member clip: a component
with any official-test clip, sampled or not, goes to test as a whole (never train, so no identity
with a clip in the source's test set, nor that clip's video, is trained on, even when no face was
sampled from the clip).
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np
import pyarrow as pa
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from mfhq.config import ConfigError, CurateConfig

log = logging.getLogger(__name__)
TEST_NAMES = {"test", "val", "valid", "validation"}


def _components(identity: np.ndarray, video: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids, id_code = np.unique(identity, return_inverse=True)
    vids, vid_code = np.unique(video, return_inverse=True)
    n = len(ids) + len(vids)
    graph = sparse.coo_matrix((np.ones(len(identity)), (id_code, len(ids) + vid_code)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    return comp[id_code], comp[len(ids) + vid_code], vids


def _official_test(splits: list) -> np.ndarray:
    return np.asarray([(v or "").lower() in TEST_NAMES for v in splits], dtype=bool)


def _member_links(identity: np.ndarray, members: pa.Table | None) -> tuple[np.ndarray, ...]:
    """The (identity, video) edges of the member clips of identities that have rows, and whether
    each clip is in the source's official test split and whether outside it (neither where members
    carry no source_split); identities without rows (dropped as short) carry no face into either
    split, so they tie nothing."""
    if members is None or members.num_rows == 0:
        return np.zeros(0, dtype=str), np.zeros(0, dtype=str), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    ident = np.asarray(members.column("identity_id").to_pylist(), dtype=object).astype(str)
    video = np.asarray([str(v) for v in members.column("video_key").to_pylist()])
    known = "source_split" in members.column_names
    test = _official_test(members.column("source_split").to_pylist()) if known else np.zeros(len(ident), dtype=bool)
    keep = np.isin(ident, identity)
    return ident[keep], video[keep], test[keep], (~test if known else test)[keep]


def _official(comp: np.ndarray, n_comp: int, rows: pa.Table, member_comp: np.ndarray, member_test: np.ndarray,
              member_other: np.ndarray) -> np.ndarray:
    """Per component: whether any of its clips, a row's or a member's, is official test. Logs the
    components the official split cuts and those only an unsampled member clip sends to test."""
    row_test = _official_test(rows.column("source_split").to_pylist())
    by_rows = np.bincount(comp, weights=row_test, minlength=n_comp) > 0
    is_test = by_rows | (np.bincount(member_comp, weights=member_test, minlength=n_comp) > 0)
    other = np.bincount(np.concatenate([comp, member_comp]), weights=np.concatenate([~row_test, member_other]),
                        minlength=n_comp) > 0
    if (cut := is_test & other).any():
        # a row's clip is a member clip too, so a test group whose rows are all official train owes
        # its side to a member clip that no face was sampled from
        moved = np.flatnonzero((is_test & ~by_rows)[comp])
        log.warning("%d identity/video groups straddle the official split; put in test whole (%d of them, with "
                    "%d identities and %d sampled videos, only for an official-test clip of their identities that "
                    "no face was sampled from)", int(cut.sum()), len(np.unique(comp[moved])),
                    len(np.unique(rows.column("identity_id").take(pa.array(moved)).to_numpy(zero_copy_only=False))),
                    len(np.unique(rows.column("video_key").take(pa.array(moved)).to_numpy(zero_copy_only=False))))
    return is_test


def assign_split(rows: pa.Table, cfg: CurateConfig, members: pa.Table | None = None) -> np.ndarray:
    """rows: identity_id, video_key, source_split (the official split). members: identity_id,
    video_key and source_split of every member clip (identities.parquet); None ties identities by
    their rows' videos only, and members without source_split (an identities.parquet written before
    it recorded them: the caller warns) tie groups without sending any to test. Returns 'train' /
    'test' per row. The hold-out counts and names groups by their rows' videos; `official` reads
    the source_split of rows and members alike."""
    identity = np.asarray(rows.column("identity_id").to_pylist(), dtype=object).astype(str)
    video = np.asarray([str(v) for v in rows.column("video_key").to_pylist()])
    if len(identity) == 0:
        return np.zeros(0, dtype=object)
    m_ident, m_video, m_test, m_other = _member_links(identity, members)
    comp_all, _, _ = _components(np.concatenate([identity, m_ident]), np.concatenate([video, m_video]))
    # every group has rows: renumbered 0..n-1 (members' groups too, as each member's identity has rows)
    comp_all = np.unique(comp_all, return_inverse=True)[1]
    comp, m_comp = comp_all[:len(identity)], comp_all[len(identity):]
    n_comp = comp.max() + 1
    if cfg.split == "official":
        is_test = _official(comp, n_comp, rows, m_comp, m_test, m_other)
    elif cfg.split == "videos":
        is_test = np.zeros(n_comp, dtype=bool)
        # The smallest video key names each component; its hash orders the hold-out.
        order = np.lexsort((video, comp))
        first = np.ones(len(order), dtype=bool)
        first[1:] = comp[order[1:]] != comp[order[:-1]]
        names = video[order[first]]
        rank = np.argsort([hashlib.sha256(f"{cfg.split_seed}:{v}".encode()).hexdigest() for v in names])
        pairs = np.unique(np.stack([comp, np.unique(video, return_inverse=True)[1]], 1), axis=0)
        videos_per_comp = np.bincount(pairs[:, 0], minlength=n_comp)
        held = np.cumsum(videos_per_comp[rank])
        n_take = int(np.searchsorted(held, cfg.test_videos) + 1) if cfg.test_videos > 0 else 0
        if n_take >= n_comp and n_comp > 1:
            n_take = n_comp - 1  # never leave train empty
            log.warning("test_videos=%d would hold out every video; keeping one group for train", cfg.test_videos)
        is_test[rank[:n_take]] = True
    else:
        raise ConfigError(f"curate.split must be 'videos' or 'official', got {cfg.split!r}")
    return np.where(is_test[comp], "test", "train").astype(object)
