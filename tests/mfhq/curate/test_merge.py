"""Identity merge: the candidate search gives the all-pairs identities, and the paper's preset
builds identities per video, never across videos by face."""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from mfhq.config import CurateConfig
from mfhq.curate import merge
from mfhq.curate.bench import synthetic_clip_means


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return connected_components(sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)[1]


def _same_partition(x: np.ndarray, y: np.ndarray) -> bool:
    return len(set(zip(x.tolist(), y.tolist()))) == len(set(x.tolist())) == len(set(y.tolist()))


def test_candidate_merge_gives_the_all_pairs_identities(monkeypatch):
    emb, person = synthetic_clip_means(3000, seed=1)
    # Three people with 40 clips each: more clips above the threshold than the candidate search's NEIGHBOURS.
    crowd = np.random.default_rng(2).normal(size=(3, 512)).astype(np.float32)
    extra = crowd[np.arange(120) % 3] + np.random.default_rng(4).normal(size=(120, 512)).astype(np.float32) * 0.6
    emb = np.concatenate([emb, extra / np.linalg.norm(extra, axis=1, keepdims=True)])
    person = np.concatenate([person, person.max() + 1 + np.arange(120) % 3])
    n, threshold = len(emb), CurateConfig().embedding_similarity
    a, b, _ = merge.all_pairs_edges(emb, threshold)
    reference = _components(n, a, b)
    assert _same_partition(reference, person)  # the synthetic groups are what all-pairs finds

    exact = merge._embedding_edges(emb, threshold)  # below EXACT_BELOW: faiss range search
    assert np.array_equal(exact[0], a) and np.array_equal(exact[1], b)
    monkeypatch.setattr(merge, "EXACT_BELOW", 0)
    ca, cb, cs = merge._embedding_edges(emb, threshold)
    assert _same_partition(_components(n, ca, cb), reference)
    assert (cs >= threshold).all() and set(zip(ca.tolist(), cb.tolist())) <= set(zip(a.tolist(), b.tolist()))

    import pyarrow as pa

    clips = pa.table({"clip_key": [f"s/c{i:05d}" for i in range(n)], "video_key": [f"v{i}" for i in range(n)],
                      "n_usable": np.ones(n, np.int64)})
    cfg = CurateConfig(merge_by_video_key=False)
    ident = merge.assign_identities(clips, emb, cfg).column("identity_id").to_pylist()
    assert _same_partition(np.unique(ident, return_inverse=True)[1], reference)


def test_paper_preset_builds_identities_per_video_never_across_videos_by_face():
    import numpy as np
    import pyarrow as pa

    from mfhq.config import load_pipeline
    from mfhq.curate.merge import assign_identities

    cfg = load_pipeline("paper").curate
    # Three clips with the same face: two cut from one video (one YouTube id, two sources), one
    # from another video. The paper's identities are per video: the other video stays apart.
    clips = pa.table({"clip_key": ["celebvhq/a", "celebvtext/a2", "vfhq/b"], "video_key": ["yt1", "yt1", "yt2"],
                      "n_usable": [10, 12, 9]})
    emb = np.tile(np.eye(4, dtype=np.float32)[:1], (3, 1))
    ids = dict(zip(*assign_identities(clips, emb, cfg).select(["clip_key", "identity_id"]).to_pydict().values()))
    assert ids["celebvhq/a"] == ids["celebvtext/a2"] != ids["vfhq/b"]
    # Cross-video merging stays an option.
    import dataclasses

    merged = assign_identities(clips, emb, dataclasses.replace(cfg, merge_by_embedding=True))
    assert len(set(merged.column("identity_id").to_pylist())) == 1


def test_blocked_candidate_search_gives_the_exact_identities_across_videos(monkeypatch):
    """Clips grouped by source video are searched as one vector per video; people whose clips
    come from several videos (and a video shared by two people, refused by the guard) still
    get the identities of the exact search."""
    import dataclasses

    import pyarrow as pa

    emb, person = synthetic_clip_means(3000, seed=3)
    n = len(emb)
    own = np.random.default_rng(5).random(n) < 1 / 3
    video = np.where(own, person.max() + 1 + np.arange(n), person)
    video[:2] = 10**6  # two strangers in one video: the similarity guard keeps them apart
    clips = pa.table({"clip_key": [f"s/c{i:05d}" for i in range(n)], "video_key": [f"v{v}" for v in video],
                      "n_usable": np.ones(n, np.int64)})
    cfg = dataclasses.replace(CurateConfig(), merge_by_video_key=True, merge_by_embedding=True)
    exact = merge.assign_identities(clips, emb, cfg).column("identity_id").to_pylist()
    monkeypatch.setattr(merge, "EXACT_BELOW", 0)
    blocked = merge.assign_identities(clips, emb, cfg)
    ids = blocked.column("identity_id").to_pylist()
    assert _same_partition(np.unique(ids, return_inverse=True)[1], np.unique(exact, return_inverse=True)[1])
    assert _same_partition(np.unique(ids, return_inverse=True)[1], person)  # the people, across their videos
    assert ids[0] != ids[1] or person[0] == person[1]
    evidence = [e for e in blocked.column("evidence").to_pylist() if e and '"embedding"' in e]
    assert evidence  # cross-video edges are kept as evidence


def test_the_candidate_search_checks_its_recall_and_searches_again_when_it_missed(monkeypatch, caplog):
    """Every run checks the approximate search on a sample of clips: all pairs found on the
    planted groups at the first effort; a search that misses pairs is searched again with more
    effort, and one that still misses is a warning with the counts."""
    import logging

    from mfhq.curate import neighbours

    emb, _ = synthetic_clip_means(3000, seed=1)
    monkeypatch.setattr(merge, "EXACT_BELOW", 0)
    report: dict = {}
    merge._embedding_edges(emb, 0.6, None, report)
    assert report["recall_sample"] == merge.RECALL_SAMPLE and report["recall_pairs"] > 100
    assert report["recall_found"] == report["recall_pairs"] and report["search_effort"] == neighbours.SEARCH_EFFORT

    real = neighbours.CandidateGraphs.candidates
    efforts = []

    def blind_at_first_effort(self, effort=neighbours.SEARCH_EFFORT):  # misses every other pair at first
        efforts.append(effort)
        query, cand, graph, results = real(self, effort)
        return (query[::2], cand[::2], graph[::2], results[::2]) if effort == neighbours.SEARCH_EFFORT else (
            query, cand, graph, results)

    monkeypatch.setattr(neighbours.CandidateGraphs, "candidates", blind_at_first_effort)
    report.clear()
    merge._embedding_edges(emb, 0.6, None, report)
    assert efforts == [neighbours.SEARCH_EFFORT, neighbours.SEARCH_EFFORT * neighbours.EFFORT_STEP]
    assert report["recall_found"] == report["recall_pairs"]

    def always_blind(self, effort=neighbours.SEARCH_EFFORT):
        query, cand, graph, results = real(self, effort)
        return query[::2], cand[::2], graph[::2], results[::2]

    monkeypatch.setattr(neighbours.CandidateGraphs, "candidates", always_blind)
    report.clear()
    with caplog.at_level(logging.WARNING, logger="mfhq.curate.merge"):
        merge._embedding_edges(emb, 0.6, None, report)
    assert 0 < report["recall_found"] < report["recall_pairs"]
    assert f"found {report['recall_found']} of the {report['recall_pairs']} pairs" in caplog.text
