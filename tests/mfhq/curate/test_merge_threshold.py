"""The embedding merge joins clips whose cosine is *at least* embedding_similarity (docs/curate.md):
a pair at exactly the threshold is joined, one a float32 step under it is not, through the bfloat16
filter and through numpy's float32 alike."""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from mfhq.config import CurateConfig
from mfhq.curate import merge, pairs

THRESHOLD = 0.75  # exact in float32 and bfloat16: the cosine below equals it bit for bit


def _means() -> np.ndarray:
    """Clip a; clip b at cosine exactly THRESHOLD to a; clip c one float32 step under it (and
    b . c about 0.44, far under: only a can join either)."""
    at = np.float32(THRESHOLD)
    under = np.nextafter(at, np.float32(0))
    return np.asarray([[1, 0, 0],
                       [at, np.sqrt(1 - at * at), 0],
                       [under, 0, np.sqrt(1 - under * under)]], np.float32)


def test_a_pair_at_exactly_the_threshold_is_joined_and_one_under_it_is_not(pair_arithmetic):
    emb = _means()
    assert pairs.cosines(emb, np.array([0, 0]), np.array([1, 2])).tolist() == [THRESHOLD, np.nextafter(
        np.float32(THRESHOLD), np.float32(0))]
    a, b, s = pairs.similar_pairs(emb, THRESHOLD)
    assert (a.tolist(), b.tolist(), s.tolist()) == ([0], [1], [THRESHOLD])
    ref = merge.all_pairs_edges(emb, THRESHOLD)
    assert (ref[0].tolist(), ref[1].tolist()) == ([0], [1])

    clips = pa.table({"clip_key": ["s/a", "s/b", "s/c"], "video_key": ["va", "vb", "vc"], "n_usable": [5, 5, 5]})
    cfg = dataclasses.replace(CurateConfig(), merge="merge", merge_by_video_key=False, merge_by_embedding=True,
                              embedding_similarity=THRESHOLD)
    ids = merge.assign_identities(clips, emb, cfg).column("identity_id").to_pylist()
    assert ids == ["s/a", "s/a", "s/c"]
