"""Identity merge: the exact pair search gives the all-pairs edges whatever its arithmetic and
blocks, and the paper's preset builds identities per video, never across videos by face."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from mfhq.config import CurateConfig
from mfhq.curate import merge, pairs
from mfhq.curate.bench import synthetic_clip_means


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return connected_components(sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)[1]


def _same_partition(x: np.ndarray, y: np.ndarray) -> bool:
    return len(set(zip(x.tolist(), y.tolist()))) == len(set(x.tolist())) == len(set(y.tolist()))


def _crowded_means():
    """Synthetic clip means plus three people with 40 clips each (many pairs per clip)."""
    emb, person = synthetic_clip_means(3000, seed=1)
    crowd = np.random.default_rng(2).normal(size=(3, 512)).astype(np.float32)
    extra = crowd[np.arange(120) % 3] + np.random.default_rng(4).normal(size=(120, 512)).astype(np.float32) * 0.6
    emb = np.concatenate([emb, extra / np.linalg.norm(extra, axis=1, keepdims=True)])
    return emb, np.concatenate([person, person.max() + 1 + np.arange(120) % 3])


def test_the_merge_finds_exactly_the_all_pairs_edges_in_any_blocks(pair_arithmetic, monkeypatch):
    monkeypatch.setattr(pairs, "ROWS", 700)  # ragged blocks on and off the diagonal
    monkeypatch.setattr(pairs, "COLS", 1100)
    emb, person = _crowded_means()
    n, threshold = len(emb), CurateConfig().embedding_similarity
    a, b, s = merge.all_pairs_edges(emb, threshold)
    assert _same_partition(_components(n, a, b), person)  # the synthetic groups are what all-pairs finds
    search = pairs.PairSearch()
    found = pairs.similar_pairs(emb, threshold, search)
    assert np.array_equal(found[0], a) and np.array_equal(found[1], b) and np.allclose(found[2], s, atol=1e-6)
    assert search.pairs == len(a) <= search.candidates and search.arithmetic.endswith(f"({pair_arithmetic})")

    import pyarrow as pa

    clips = pa.table({"clip_key": [f"s/c{i:05d}" for i in range(n)], "video_key": [f"v{i}" for i in range(n)],
                      "n_usable": np.ones(n, np.int64)})
    ident = merge.assign_identities(clips, emb, CurateConfig(merge_by_video_key=False)).column("identity_id").to_pylist()
    assert _same_partition(np.unique(ident, return_inverse=True)[1], person)


def _pairs_at(cosine: np.ndarray, dim: int, rng) -> np.ndarray:
    """Unit vectors u_i, v_i (interleaved) with u_i . v_i = cosine[i]; every third u is spiky
    (most of its length in a few coordinates, where rounding errors are largest)."""
    u = rng.standard_normal((len(cosine), dim)).astype(np.float32)
    spiky = np.arange(0, len(u), 3)
    u[spiky[:, None], rng.integers(0, dim, (len(spiky), 4))] *= 40
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = rng.standard_normal((len(cosine), dim)).astype(np.float32)
    w -= np.einsum("ij,ij->i", w, u)[:, None] * u
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    v = cosine[:, None] * u + np.sqrt(1 - cosine**2)[:, None] * w
    return np.stack([u, v], 1).reshape(-1, dim).astype(np.float32)


@pytest.mark.parametrize("threshold", [0.6, 0.95, 0.01])
def test_the_bfloat16_filter_loses_no_pair_at_the_threshold(threshold, monkeypatch):
    """Pairs whose cosines crowd the threshold (within bfloat16's error) come out exactly as the
    float32 cosines decide, through the bfloat16 filter (its integer comparison above 0, its
    float one at or below) and through numpy's float32."""
    torch = pytest.importorskip("torch")
    planted = 1500 if threshold > 0.1 else 400  # at 0.01 random pairs clear it too: fewer vectors
    emb = _pairs_at(np.random.default_rng(0).uniform(threshold - 0.015, min(threshold + 0.015, 1), planted), 128,
                    np.random.default_rng(1))
    n = len(emb)
    i, j = np.triu_indices(n, 1)
    s = pairs.cosines(emb, i, j)
    expected = (i[s >= threshold], j[s >= threshold])
    assert 500 < len(expected[0]) and (threshold > 0.1) == (len(expected[0]) < planted)
    bf16 = pairs._candidates_torch(torch, emb, threshold - pairs.MARGIN, torch.bfloat16)
    assert set(zip(*expected)) <= set(zip(bf16[0].tolist(), bf16[1].tolist()))
    monkeypatch.setattr(pairs, "TORCH_FROM", 0)
    for without_torch in (False, True):
        if without_torch:
            monkeypatch.setattr(pairs, "_torch", lambda: None)
        search = pairs.PairSearch()
        a, b, _ = pairs.similar_pairs(emb, threshold, search)
        assert np.array_equal(a, expected[0]) and np.array_equal(b, expected[1])
        assert search.arithmetic.endswith("(numpy)") == without_torch


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


def test_the_merge_joins_people_across_their_videos_and_the_guard_splits_a_shared_one():
    """Clips grouped by source video; people whose clips come from several videos are joined by
    face, two strangers who share a video are kept apart by the similarity guard."""
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
    merged = merge.assign_identities(clips, emb, cfg)
    ids = merged.column("identity_id").to_pylist()
    a, b, _ = merge.all_pairs_edges(emb, cfg.embedding_similarity)
    assert _same_partition(np.unique(ids, return_inverse=True)[1], _components(n, a, b))
    assert _same_partition(np.unique(ids, return_inverse=True)[1], person)  # the people, across their videos
    assert ids[0] != ids[1] or person[0] == person[1]
    evidence = [e for e in merged.column("evidence").to_pylist() if e and '"embedding"' in e]
    assert evidence  # cross-video edges are kept as evidence



def test_clips_of_one_video_are_compared_across_videos_by_their_pooled_mean():
    """The embedding merge compares a video's clips (one identity by the video-key merge) as one,
    by the mean of their clip means: two noisy clips whose noise cancels join a third video's clip
    no single one reaches, and one clip alone no longer drags its video's other clip along."""
    import dataclasses
    import json

    import pyarrow as pa

    def ids(emb, cfg):
        clips = pa.table({"clip_key": ["s/a1", "s/a2", "s/b1"], "video_key": ["va", "va", "vb"], "n_usable": [5, 5, 5]})
        table = merge.assign_identities(clips, np.asarray(emb, np.float32), cfg)
        return table.column("identity_id").to_pylist(), table.column("evidence").to_pylist()

    unit = lambda v: np.asarray(v, np.float64) / np.linalg.norm(v)  # noqa: E731
    cfg = dataclasses.replace(CurateConfig(), merge="merge", merge_by_video_key=True, video_key_min_similarity=None,
                              merge_by_embedding=True, embedding_similarity=0.6)
    noisy = [unit([1, 1.5, 0, 0]), unit([1, -1.5, 0, 0]), [1, 0, 0, 0]]  # each 0.55 to b1, their mean 1.0
    assert max(float(np.dot(noisy[0], noisy[2])), float(np.dot(noisy[1], noisy[2]))) < 0.6
    found, evidence = ids(noisy, cfg)
    assert found == ["s/a1"] * 3
    edges = json.loads(evidence[2])
    assert {"a": "s/a1", "b": "s/b1", "by": "embedding", "similarity": 1.0} in edges  # named by the video's first clip
    apart = [[1, 0, 0, 0], [0, 1, 0, 0], [0.7, 0, np.sqrt(1 - 0.49), 0]]  # a1 is 0.7 to b1, the video's mean 0.49
    found, _ = ids(apart, cfg)
    assert found == ["s/a1", "s/a1", "s/b1"]
    # Without the video-key merge every clip is its own group: clip to clip, a1 and b1 join.
    found, _ = ids(apart, dataclasses.replace(cfg, merge_by_video_key=False))
    assert found == ["s/a1", "s/a2", "s/a1"]


def test_group_means_keep_a_lone_clips_mean_bit_for_bit():
    emb, _ = synthetic_clip_means(50, 16)
    groups = np.arange(50)
    groups[[7, 30]] = 3  # clips 3, 7 and 30 are one group
    means, first = merge._group_means(emb, groups)
    assert len(first) == 48 and first[3] == 3
    lone = np.flatnonzero(np.bincount(groups)[np.unique(groups)] == 1)
    assert np.array_equal(means[lone], emb[first[lone]])
    pooled = emb[[3, 7, 30]].mean(0)
    assert np.allclose(means[3], pooled / np.linalg.norm(pooled), atol=1e-6)


def test_the_merges_setup_starts_in_the_background_only_where_the_search_will_use_it():
    """cluster-sample starts importing torch before it reads the clip means (mfhq.curate.pairs):
    only for a merge by embedding of at least TORCH_FROM clips, and the search waits for it. In a
    fresh interpreter: here torch may be imported already."""
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("torch")
    script = textwrap.dedent("""
        import dataclasses, sys
        from mfhq.config import CurateConfig
        from mfhq.curate import merge, pairs
        cfg = CurateConfig()
        merge.prepare(dataclasses.replace(cfg, merge_by_embedding=False), 10**6)
        merge.prepare(dataclasses.replace(cfg, merge="off"), 10**6)
        merge.prepare(cfg, pairs.TORCH_FROM - 1)
        assert pairs._setup is None and "torch" not in sys.modules, "set up where the search will not use torch"
        merge.prepare(cfg, pairs.TORCH_FROM)
        started = pairs._setup
        assert started is not None
        assert pairs.large_input_arithmetic(8).endswith("(torch)")
        assert not started.is_alive() and "torch" in sys.modules
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_paper_preset_joins_a_persons_clips_with_another_persons_clip_between_them():
    """One video, clips a (person 1), b (person 2), c (person 1) in key order: the guard refuses
    a-b and b-c, and a-c is compared too, so person 1 is one identity (not two, both in train)."""
    import pyarrow as pa

    from mfhq.config import load_pipeline

    cfg = load_pipeline("paper").curate
    p1, p2 = np.eye(8, dtype=np.float32)[:2]
    c = 0.95 * p1 + 0.1 * p2  # cosine 0.99 to a, 0.10 to b
    emb = np.stack([p1, p2, c / np.linalg.norm(c)])
    clips = pa.table({"clip_key": ["src/a", "src/b", "src/c"], "video_key": ["V9"] * 3, "n_usable": [5, 5, 5]})
    ids = merge.assign_identities(clips, emb, cfg).column("identity_id").to_pylist()
    assert ids == ["src/a", "src/b", "src/a"]


def test_a_video_of_many_clips_compares_every_pair_in_bounded_batches():
    """Every guarded pair within a video, however the pairs are batched (a video larger than a
    batch goes by blocks of rows): the components of every pair at the guard, brute force."""
    from mfhq.curate import within

    emb, person = synthetic_clip_means(300, 32, seed=7)
    video = np.where(np.arange(300) < 240, 0, 1 + np.arange(300) % 7)  # one video of 240 clips, 7 small ones
    i, j = np.triu_indices(300, 1)
    s = (emb[i] * emb[j]).sum(1)
    keep = (video[i] == video[j]) & (s >= 0.3)
    want = _components(300, i[keep], j[keep])
    for batch in (within.PAIRS, 1000, 7):
        a, b, sims = _video_edges_batched(within, video, emb, batch)
        assert _same_partition(_components(300, a, b), want) and len(a) <= 299
        assert np.allclose(sims, (emb[a] * emb[b]).sum(1), atol=1e-5) and (sims >= 0.3).all()


def _video_edges_batched(within, video, emb, batch):
    original = within.group_pairs.__defaults__
    try:  # the batch size group_pairs takes when video_edges calls it
        within.group_pairs.__defaults__ = (batch,)
        return within.video_edges(video, emb, 0.3)
    finally:
        within.group_pairs.__defaults__ = original


def test_a_chain_of_merges_is_logged_with_its_least_alike_clips(caplog):
    """Merges are transitive: four clips in four videos, neighbours at cosine 0.64, ends at -0.87,
    become one identity; the log says a chain formed it and names the least alike pair."""
    import dataclasses
    import logging

    import pyarrow as pa

    u, w = np.eye(16, dtype=np.float32)[:2]
    angle = np.deg2rad([0, 50, 100, 150])
    emb = (np.cos(angle)[:, None] * u + np.sin(angle)[:, None] * w).astype(np.float32)
    clips = pa.table({"clip_key": [f"s/{k}" for k in "abcd"], "video_key": list("1234"), "n_usable": [5] * 4})
    cfg = dataclasses.replace(CurateConfig(), merge_by_video_key=True, merge_by_embedding=True)
    with caplog.at_level(logging.INFO, logger="mfhq.curate"):
        ids = merge.assign_identities(clips, emb, cfg).column("identity_id").to_pylist()
    assert set(ids) == {"s/a"}
    text = caplog.text
    assert "identities of several clips: 1, formed by chains: 1" in text
    assert "lowest pairwise clip-mean cosine -0.866" in text
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "s/a and s/d at -0.866, in s/a (4 clips)" in warned[0]
