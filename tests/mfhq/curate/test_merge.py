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


@pytest.mark.parametrize("arithmetic", ["numpy", "torch"])
def test_the_merge_finds_exactly_the_all_pairs_edges_in_any_blocks(arithmetic, monkeypatch):
    if arithmetic == "torch":
        pytest.importorskip("torch")
        monkeypatch.setattr(pairs, "TORCH_FROM", 0)
    else:  # what an install without torch does
        monkeypatch.setattr(pairs, "_torch", lambda: None)
    monkeypatch.setattr(pairs, "ROWS", 700)  # ragged blocks on and off the diagonal
    monkeypatch.setattr(pairs, "COLS", 1100)
    emb, person = _crowded_means()
    n, threshold = len(emb), CurateConfig().embedding_similarity
    a, b, s = merge.all_pairs_edges(emb, threshold)
    assert _same_partition(_components(n, a, b), person)  # the synthetic groups are what all-pairs finds
    search = pairs.PairSearch()
    found = pairs.similar_pairs(emb, threshold, search)
    assert np.array_equal(found[0], a) and np.array_equal(found[1], b) and np.allclose(found[2], s, atol=1e-6)
    assert search.pairs == len(a) <= search.candidates and search.arithmetic.endswith(f"({arithmetic})")

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

