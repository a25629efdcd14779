"""The stats figures mean what their labels say, counted again with DuckDB over the run's and the
manifest's Parquet files: a source video is its video key (one YouTube video that two datasets
cut clips from is one video, as the merge, the split and the manifest card count it), and the
histograms' other group is every kept face, not curation's candidates (curate.min_quality
narrows those)."""
from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from mfhq.manifest import read_manifest
from mfhq.stats.report import write_report
from synthetic_runs import ClipSpec, write_run

# One YouTube video (yt1) cut by two datasets, as CelebV-HQ and CelebV-Text share ids; four others.
SPECS = [ClipSpec("hq", "a1", "yt1", 1), ClipSpec("text", "a1t", "yt1", 1), ClipSpec("hq", "b1", "yt2", 2),
         ClipSpec("hq", "c1", "yt3", 3), ClipSpec("hq", "d1", "yt4", 4), ClipSpec("text", "e1", "yt5", 5)]


def _report(tmp_path, cfg: CurateConfig):
    run = write_run(tmp_path / "run", SPECS)
    manifest = tmp_path / "man"
    cluster_sample([run], manifest, cfg)
    write_report([run], manifest, tmp_path / "rep")
    return run, manifest, tmp_path / "rep" / "tables"


def test_a_youtube_video_in_two_datasets_is_one_source_video(tmp_path):
    run, manifest, tables = _report(tmp_path, CurateConfig(test_videos=1))
    head = pd.read_csv(tables / "headline.csv").set_index("metric").value.to_dict()
    clips = f"'{run}/clips/*.parquet'"
    videos = duckdb.sql(f"SELECT count(DISTINCT video_key) FROM {clips}").fetchall()[0][0]
    assert videos == 5
    assert head["source videos"] == videos
    assert head["source videos with a clip decoded"] == duckdb.sql(
        f"SELECT count(DISTINCT video_key) FROM {clips} WHERE n_frames_read > 0").fetchall()[0][0]
    # every clip was sampled here, so the manifest card's videos (train and test share none) add up to it
    counts = json.loads((manifest / "manifest.json").read_text())["counts"]
    assert counts["train"]["videos"] + counts["test"]["videos"] == head["source videos"]


def test_a_run_without_annotation_faces_has_no_annotation_row(tmp_path):
    """Every face here came from the detector (a score): the headline counts them all as detected
    and shows no 'faces from source annotations' row, whose 0 read as annotations lost."""
    run = write_run(tmp_path / "run", SPECS)
    write_report([run], None, tmp_path / "rep")
    head = pd.read_csv(tmp_path / "rep" / "tables" / "headline.csv").set_index("metric").value.to_dict()
    faces = duckdb.sql(f"SELECT count(*) FROM '{run}/faces/*.parquet' WHERE det_score IS NOT NULL").fetchall()[0][0]
    assert faces > 0 and head["faces detected"] == faces
    assert not [metric for metric in head if "annotations" in metric], head


def test_the_histograms_other_group_is_the_kept_faces(tmp_path):
    run, manifest, tables = _report(tmp_path, CurateConfig(test_videos=1, min_quality=0.5))
    faces = f"'{run}/faces/*.parquet'"
    kept = duckdb.sql(f"SELECT count(*) FROM {faces} WHERE kept").fetchall()[0][0]
    usable = duckdb.sql(f"SELECT count(*) FROM {faces} WHERE kept AND quality >= 0.5").fetchall()[0][0]
    assert usable < kept  # curation's candidates are fewer than the kept faces here
    sampled = duckdb.sql(f"SELECT count(*) FROM read_parquet(['{manifest}/train.parquet', "
                         f"'{manifest}/test.parquet'])").fetchall()[0][0]
    for view, per_face in (("quality_hist", 1), ("pose_hist", 2)):  # pose: a yaw and a pitch row a face
        hist = pd.read_csv(tables / f"{view}.csv")
        assert set(hist.faces_of) == {"kept", "sampled"}
        assert hist[hist.faces_of == "kept"].faces.sum() == per_face * kept
        assert hist[hist.faces_of == "sampled"].faces.sum() == per_face * sampled


def test_identities_per_source_says_an_identity_spanning_two_sources_counts_in_both(tmp_path):
    """yt1's two clips (hq and text) are one identity: the per-source rows count it in both, so
    they add up to more than the headline's identities, and the report's heading says so."""
    run, manifest, tables = _report(tmp_path, CurateConfig(test_videos=1))
    head = pd.read_csv(tables / "headline.csv").set_index("metric").value.to_dict()
    per_source = pd.read_csv(tables / "identities_per_source.csv")
    assert per_source.identities.sum() == head["identities"] + 1
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Identities per source and split (one spanning two sources counts in both)" in page


def test_clips_per_source_names_its_clips_with_kept_faces_so(tmp_path):
    """A clip whose faces were all dropped had faces (it detected 5): the column that counts the
    clips with a kept face says "kept", as faces_kept beside it does."""
    from synthetic_runs import write_run as write

    run = write(tmp_path / "run", [ClipSpec("hq", "a1", "yt1", 1), ClipSpec("hq", "z1", "yt9", 9, faces=0, dropped=5)])
    write_report([run], None, tmp_path / "rep")
    table = pd.read_csv(tmp_path / "rep" / "tables" / "clips_per_source.csv").set_index("source")
    faces = f"'{run}/faces/*.parquet'"
    with_faces, with_kept = duckdb.sql(f"SELECT count(DISTINCT clip_id), count(DISTINCT clip_id) FILTER (WHERE kept) "
                                       f"FROM {faces}").fetchall()[0]
    assert (with_faces, with_kept) == (2, 1)
    assert list(table.columns) == ["clips", "clips_with_kept_faces", "faces_kept"]
    assert table.loc["hq"].to_dict() == {"clips": 2, "clips_with_kept_faces": with_kept, "faces_kept": 30}


def test_identities_per_source_counts_videos_by_their_video_key(tmp_path):
    """Two clips of one video in one dataset (hq's a1 and a2 of yt1): the per-source `videos`
    column counts the video once, as the manifest's video_key does, not once per clip."""
    run = write_run(tmp_path / "run", SPECS + [ClipSpec("hq", "a2", "yt1", 1)])
    cluster_sample([run], tmp_path / "man", CurateConfig(test_videos=1))
    write_report([run], tmp_path / "man", tmp_path / "rep")
    table = pd.read_csv(tmp_path / "rep" / "tables" / "identities_per_source.csv")
    manifest = f"read_parquet(['{tmp_path}/man/train.parquet', '{tmp_path}/man/test.parquet'])"
    direct = duckdb.sql(f"SELECT source, split, count(DISTINCT video_key), count(DISTINCT clip_id) "
                        f"FROM {manifest} GROUP BY ALL").fetchall()
    assert any(videos < clips for _, _, videos, clips in direct)  # the premise: a video with two clips sampled
    assert {(r.source, r.split, r.videos) for r in table.itertuples()} == {row[:3] for row in direct}


def test_pose_spread_before_leaves_out_the_clip_dropped_as_a_duplicate(tmp_path):
    """`merge: dedup` keeps one clip of a person seen in two videos: the identity's spread before
    sampling is over that clip's kept faces (40), not the dropped duplicate's too (52)."""
    specs = [ClipSpec("src", "x1", "V1", 1, faces=40), ClipSpec("src", "x2", "V2", 1, faces=12),
             ClipSpec("src", "z", "V3", 3), ClipSpec("src", "w", "V4", 4)]
    run = write_run(tmp_path / "run", specs)
    cluster_sample([run], tmp_path / "man", CurateConfig(merge="dedup", test_videos=1))
    write_report([run], tmp_path / "man", tmp_path / "rep")
    members = read_manifest(tmp_path / "man" / "identities.parquet").to_pylist()
    assert [(r["clip_id"], r["decision"]) for r in members if r["decision"].startswith("dedup")] == [
        ("x1", "dedup_kept"), ("x2", "dedup_dropped")]
    spread = pd.read_csv(tmp_path / "rep" / "tables" / "pose_spread.csv").set_index("identity_id")
    person = next(r["identity_id"] for r in members if r["clip_id"] == "x1")
    assert spread.loc[person, "faces_before"] == 40


@pytest.mark.parametrize("align_size, upscaled", [(200, False), (201, True)])
def test_a_face_as_large_as_the_crop_is_not_counted_upscaled(tmp_path, align_size, upscaled):
    """The synthetic faces cover 200 px of source: at align.size 200 a crop keeps every pixel (not
    upscaled); at 201 each sampled face is."""
    run = write_run(tmp_path / "run", SPECS)
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "config": {"align": {"size": align_size}}}))
    cluster_sample([run], tmp_path / "man", CurateConfig(test_videos=1))
    write_report([run], tmp_path / "man", tmp_path / "rep")
    head = pd.read_csv(tmp_path / "rep" / "tables" / "headline.csv").set_index("metric").value.to_dict()
    sampled = head["train faces"] + head["test faces"]
    assert sampled > 0 and head["sampled faces upscaled (face_size < align.size)"] == (sampled if upscaled else 0)
