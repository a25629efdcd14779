"""The split graph holds every member clip of an identity, not only the clips its 8 faces came from."""
from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict

from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample, resplit
from mfhq.manifest import read_manifest
from synthetic_runs import ClipSpec, write_run

# Person 1 in video V1 (40 faces) and in V2 (12 faces): `merge: dedup` keeps the V1 clip only, so the
# 8 faces all come from V1 and only identities.parquet's member clips tie V2 to person 1. Person 2 is alone in V2; persons 3 and 4 have a video each.
SPECS = [ClipSpec("src", "x1", "V1", 1, faces=40), ClipSpec("src", "x2", "V2", 1, faces=12),
         ClipSpec("src", "y", "V2", 2), ClipSpec("src", "z", "V3", 3), ClipSpec("src", "w", "V4", 4)]


def sides_per_video(out) -> dict[str, set[str]]:
    """For each source video of identities.parquet: the sides of the identities with a clip in it."""
    sides = defaultdict(set)
    for row in read_manifest(out / "identities.parquet").to_pylist():
        if row["split"] is not None:
            sides[row["video_key"]].add(row["split"])
    return sides


def split_of_clip(out) -> dict[str, str]:
    return {r["clip_id"]: r["split"] for r in read_manifest(out / "identities.parquet").to_pylist()}


def test_a_video_and_every_identity_with_a_clip_in_it_go_to_one_side(tmp_path):
    run = write_run(tmp_path / "run", SPECS)
    for seed in range(4):
        out = tmp_path / f"man{seed}"
        cluster_sample([run], out, CurateConfig(merge="dedup", test_videos=1, split_seed=seed))
        clips = split_of_clip(out)
        assert clips["x2"] == clips["x1"] == clips["y"], (seed, clips)  # one group: V1, V2, persons 1 and 2
        assert all(len(s) == 1 for s in sides_per_video(out).values()), (seed, sides_per_video(out))
        # the sampled rows themselves came from V1 only, so only the member clips could tie y to x1
        rows = {r["identity_id"]: r["video_key"] for n in ("train", "test")
                for r in read_manifest(out / f"{n}.parquet").to_pylist()}
        assert rows["src/x1"] == "V1"


def test_resplit_uses_the_member_clips_and_falls_back_to_the_rows_without_identities(tmp_path, caplog):
    run = write_run(tmp_path / "run", SPECS)
    out = tmp_path / "man"
    cfg = CurateConfig(merge="dedup", test_videos=1, split_seed=0)
    cluster_sample([run], out, cfg)
    seen = set()
    for seed in range(6):
        resplit(out, dataclasses.replace(cfg, split_seed=seed))
        clips = split_of_clip(out)
        assert clips["x2"] == clips["x1"] == clips["y"], (seed, clips)
        assert all(len(s) == 1 for s in sides_per_video(out).values())
        seen.add(clips["y"])
    assert seen == {"train", "test"}  # the seeds do move the group
    # A folder written before identities.parquet existed: split by the rows' videos, and said so.
    (out / "identities.parquet").unlink()
    with caplog.at_level(logging.WARNING, logger="mfhq.curate.resplit"):
        summary = resplit(out, cfg)
    assert summary["train"]["faces"] + summary["test"]["faces"] == 4 * 8
    assert any("no identities.parquet" in r.getMessage() and "cluster-sample" in r.getMessage() for r in caplog.records)
