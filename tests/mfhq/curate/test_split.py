"""The split graph holds every member clip of an identity, not only the clips its 8 faces came from,
and `split: official` reads every member clip's official split."""
from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mfhq.config import CurateConfig, load_pipeline
from mfhq.curate import cluster_sample, resplit
from mfhq.curate.split import assign_split
from mfhq.manifest import read_manifest
from mfhq.manifest.io import file_digest
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


# Official split: person 1's clip o1 (V1, official train, 40 faces) gives all 8 faces under `merge:
# dedup`; its clip o2 (V2, official test, 12 faces) is a member no face is sampled from. Person 2 is
# official train, person 3 official test.
OFFICIAL = [ClipSpec("src", "o1", "V1", 1, faces=40, split="train"), ClipSpec("src", "o2", "V2", 1, faces=12, split="test"),
            ClipSpec("src", "p", "V3", 2, split="train"), ClipSpec("src", "q", "V4", 3, split="test")]


def test_official_split_sends_an_identity_to_test_for_an_unsampled_official_test_clip(tmp_path, caplog):
    run = write_run(tmp_path / "run", OFFICIAL)
    out = tmp_path / "man"
    with caplog.at_level(logging.WARNING, logger="mfhq.curate.split"):
        cluster_sample([run], out, CurateConfig(merge="dedup", split="official"))
    rows = pa.concat_tables([read_manifest(out / f"{n}.parquet") for n in ("train", "test")]).to_pylist()
    assert {r["clip_id"] for r in rows if r["identity_id"] == "src/o1"} == {"o1"}  # o2 gave no face
    assert {r["identity_id"]: r["split"] for r in rows} == {"src/o1": "test", "src/p": "train", "src/q": "test"}
    ident = {r["clip_id"]: (r["source_split"], r["split"]) for r in read_manifest(out / "identities.parquet").to_pylist()}
    assert ident == {"o1": ("train", "test"), "o2": ("test", "test"), "p": ("train", "train"), "q": ("test", "test")}
    assert ("1 identity/video groups straddle the official split; put in test whole (1 of them, with 1 identities "
            "and 1 sampled videos, only for an official-test clip") in caplog.text
    # `mfhq split` reads the members' official split from identities.parquet: the same sides
    resplit(out, CurateConfig(merge="dedup", split="official"))
    assert split_of_clip(out) == {"o1": "test", "o2": "test", "p": "train", "q": "test"}


def test_official_split_follows_a_member_clip_into_another_identitys_video():
    """Identity A's faces come from V1 (official train), its unsampled member clip from V2; B's
    faces come from V3 (train), B's unsampled member clip in V2 is official test: A, B, V1, V2, V3
    are one group, which goes to test whole. C stays in train. Tables shaped as cluster-sample's."""
    rows = pa.table({"identity_id": ["A"] * 2 + ["B"] * 2 + ["C"] * 2, "video_key": ["V1", "V1", "V3", "V3", "V5", "V5"],
                     "source_split": ["train"] * 6})
    members = pa.table({"identity_id": ["A", "A", "B", "B", "C"], "video_key": ["V1", "V2", "V3", "V2", "V5"],
                        "source_split": ["train", "train", "train", "test", "train"]})
    cfg = CurateConfig(split="official")
    assert assign_split(rows, cfg, members).tolist() == ["test"] * 4 + ["train"] * 2
    # members without source_split (an older identities.parquet) only tie: the rows decide, as before
    assert assign_split(rows, cfg, members.drop_columns(["source_split"])).tolist() == ["train"] * 6


def _without_member_splits(out):
    """identities.parquet as an mfhq wrote it before it recorded source_split (sidecar digest updated)."""
    table = pq.read_table(out / "identities.parquet")
    table = table.drop_columns([c for c in table.column_names if c == "source_split"])
    pq.write_table(table, out / "identities.parquet")
    sidecar = json.loads((out / "manifest.json").read_text())
    sidecar["files"]["identities.parquet"] = file_digest(out / "identities.parquet")
    (out / "manifest.json").write_text(json.dumps(sidecar))


def test_resplit_of_an_older_folder_says_the_member_clips_official_split_is_unknown(tmp_path, caplog):
    run = write_run(tmp_path / "run", OFFICIAL)
    out = tmp_path / "man"
    cfg = CurateConfig(merge="dedup", split="official")
    cluster_sample([run], out, cfg)
    _without_member_splits(out)
    for _ in range(2):  # the re-split keeps the column absent, so the next one still says so
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mfhq.curate.resplit"):
            resplit(out, cfg)
        assert f"{out}: identities.parquet has no source_split column" in caplog.text
        assert "official-test clip gave no sampled face can stay in train" in caplog.text
        assert "source_split" not in pq.read_schema(out / "identities.parquet").names
    assert split_of_clip(out)["o1"] == "train"  # what the rows alone say: the warning is why
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mfhq.curate.resplit"):
        resplit(out, dataclasses.replace(cfg, split="videos"))  # needs no official split: nothing to say
    assert "source_split" not in caplog.text


def _held_out_videos(identity: list[str], video: list[str], test_videos: int, seed: int = 0) -> set[str]:
    rows = pa.table({"identity_id": identity, "video_key": video, "source_split": ["train"] * len(video)})
    sides = assign_split(rows, CurateConfig(test_videos=test_videos, split_seed=seed))
    return {v for v, s in zip(video, sides) if s == "test"}


def test_the_hold_out_takes_the_fewest_whole_groups_that_reach_test_videos():
    """`test_videos` is reached with as few groups as the hashed order allows: a group count landing
    exactly on it takes no further group (44 videos for the paper, not 45), and a group of two videos
    goes whole even where that passes it. The choice follows split_seed and not the rows' order."""
    assert load_pipeline("paper").curate.test_videos == 44  # the paper's held-out test videos
    ones = [f"v{i:02d}" for i in range(12)]  # twelve people, a video each
    for k in (1, 3, 5):
        assert len(_held_out_videos([f"p{v}" for v in ones], ones, k)) == k
    pairs_of = [f"w{i:02d}" for i in range(12)]  # six people, two videos each
    people = [f"q{i // 2}" for i in range(12)]
    assert len(_held_out_videos(people, pairs_of, 4)) == 4
    assert len(_held_out_videos(people, pairs_of, 3)) == 4  # whole groups: at least test_videos
    chosen = {seed: _held_out_videos([f"p{v}" for v in ones], ones, 3, seed) for seed in range(4)}
    assert len({frozenset(c) for c in chosen.values()}) > 1  # the seed moves the hold-out
    order = np.random.default_rng(0).permutation(len(ones))
    shuffled = [ones[i] for i in order]
    assert _held_out_videos([f"p{v}" for v in shuffled], shuffled, 3, 2) == chosen[2]


def test_the_hold_out_counts_videos_not_the_faces_sampled_from_them():
    """A manifest holds several faces a video (8 an identity on the paper preset): `test_videos`
    counts the source videos held out, not their rows (which would hold out 44 faces, ~6 videos)."""
    ones = [f"v{i:02d}" for i in range(12)]
    video = [v for v in ones for _ in range(8)]  # eight faces of one person per video
    for k in (1, 3, 5):
        assert len(_held_out_videos([f"p{v}" for v in video], video, k)) == k
