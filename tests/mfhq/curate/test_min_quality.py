"""curate.min_quality: a face under it is not usable for sampling, a face at it is (build.py's
`quality >= min_quality`; docs/presets.md: "faces below are not usable"). Synthetic runs (real
Parquet shards, qualities set where a test needs them), the real cluster-sample."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from mfhq.manifest import read_manifest
from synthetic_runs import ClipSpec, write_run


def _specs(n: int, faces: int = 40) -> list[ClipSpec]:
    return [ClipSpec("celebvhq", f"clip{i:02d}", f"yt{i:02d}", person=i, faces=faces) for i in range(n)]


def _sampled(out) -> list[dict]:
    return [r for split in ("train", "test") for r in read_manifest(out / f"{split}.parquet").to_pylist()]


def _usable(out) -> dict[str, int]:
    return {f"{r['source']}/{r['clip_id']}": r["n_usable"] for r in read_manifest(out / "identities.parquet").to_pylist()}


def _kept_qualities(run) -> list[tuple[str, np.float32]]:
    faces = pq.read_table(sorted((run / "faces").glob("*.parquet"))).filter(pc.field("kept"))
    return [(f"{s}/{c}", np.float32(q)) for s, c, q in zip(*(faces[k].to_pylist() for k in ("source", "clip_id", "quality")))]


def test_a_middle_threshold_leaves_exactly_the_faces_at_or_above_it(tmp_path):
    run = write_run(tmp_path / "run", _specs(4))
    threshold = 0.55  # the synthetic qualities are uniform in [0.2, 0.9]: about half of each clip's faces pass
    faces = _kept_qualities(run)
    # compared as the run stores them (float32), as the query compares them
    above = Counter(key for key, q in faces if q >= np.float32(threshold))
    below = Counter(key for key, q in faces if q < np.float32(threshold))
    assert set(above) == set(below) == {key for key, _ in faces}  # the threshold cuts every clip
    unfiltered = cluster_sample([run], tmp_path / "all", CurateConfig(test_videos=1))
    assert any(r["quality"] < threshold for r in _sampled(tmp_path / "all"))  # without it, lower faces are picked
    summary = cluster_sample([run], tmp_path / "m", CurateConfig(test_videos=1, min_quality=threshold))
    sampled = _sampled(tmp_path / "m")
    assert sampled and min(np.float32(r["quality"]) for r in sampled) >= np.float32(threshold)
    assert _usable(tmp_path / "m") == dict(above)  # every usable face counted, none below
    assert _usable(tmp_path / "all") == dict(above + below)
    picked = summary["train"]["faces"] + summary["test"]["faces"]
    assert picked == len(sampled) == 8 * len(above) and unfiltered["train"]["faces"] + unfiltered["test"]["faces"] == picked


def _set_qualities(run, quality_of) -> None:
    """Each faces shard rewritten with kept faces' quality = quality_of(clip_id, n-th kept face of
    the clip), stored as extract stores it (float32), schema and metadata kept."""
    for shard in sorted((run / "faces").glob("*.parquet")):
        table = pq.read_table(shard)
        seen: Counter = Counter()
        qualities = []
        for clip, kept, q in zip(*(table[k].to_pylist() for k in ("clip_id", "kept", "quality"))):
            qualities.append(quality_of(clip, seen[clip]) if kept else q)
            seen[clip] += kept
        at = table.schema.get_field_index("quality")
        pq.write_table(table.set_column(at, table.schema.field(at), pa.array(qualities, pa.float32())), shard)


def test_a_face_whose_quality_equals_the_threshold_is_kept(tmp_path):
    """clip00 has exactly 8 faces (faces_per_identity) at the threshold and the rest just under it:
    kept at the threshold, it is sampled with those 8; dropped there, it would have no usable face.
    0.7 is not exact in float32 (0.69999999): the face stored as 0.7 still counts as at 0.7."""
    run = write_run(tmp_path / "run", _specs(3, faces=30))
    _set_qualities(run, lambda clip, n: (0.7 if n < 8 else 0.69) if clip == "clip00" else 0.8)
    cluster_sample([run], tmp_path / "m", CurateConfig(test_videos=1, min_quality=0.7))
    assert _usable(tmp_path / "m") == {"celebvhq/clip00": 8, "celebvhq/clip01": 30, "celebvhq/clip02": 30}
    ours = [r for r in _sampled(tmp_path / "m") if r["clip_id"] == "clip00"]
    assert len(ours) == 8 and {r["quality"] for r in ours} == {float(np.float32(0.7))} and not any(r["short"] for r in ours)
