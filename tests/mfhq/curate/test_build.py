"""cluster-sample, merge and split on synthetic run folders (real Parquet, real DuckDB)."""
from __future__ import annotations

import dataclasses
import json

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mfhq.config import ConfigError, CurateConfig, PipelineConfig, load_pipeline
from mfhq.curate import cluster_sample, resplit
from mfhq.curate.bench import run_bench_curate, write_synthetic
from mfhq.manifest.views import RunError
from mfhq.manifest.io import SchemaVersionError
from mfhq.manifest import MANIFEST_SCHEMA, MANIFEST_VERSION, ManifestError, read_manifest
from synthetic_runs import ClipSpec, write_run


def load(out) -> pa.Table:
    return pa.concat_tables([read_manifest(out / f"{n}.parquet") for n in ("train", "test")])


def identities(out) -> list[dict]:
    return read_manifest(out / "identities.parquet").to_pylist()


def many_clips(n: int = 12) -> list[ClipSpec]:
    return [ClipSpec("celebvhq", f"clip{i:02d}", f"yt{i:02d}", person=i, faces=30 + 3 * i) for i in range(n)]


def pose_sets(out, run):
    """Per identity: the sampled poses and all its candidate poses."""
    rows = load(out).to_pandas()
    faces = duckdb.sql(f"SELECT source || '/' || clip_id AS key, yaw, pitch, roll FROM '{run}/faces/*.parquet' "
                       "WHERE kept").df()
    members = {r["source"] + "/" + r["clip_id"]: r["identity_id"] for r in identities(out)}
    faces["identity_id"] = faces["key"].map(members)
    for ident, part in rows.groupby("identity_id"):
        yield part[["yaw", "pitch", "roll"]].to_numpy(), faces[faces.identity_id == ident][["yaw", "pitch", "roll"]].to_numpy()


def min_pair(p: np.ndarray) -> float:
    d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    return float(d[~np.eye(len(p), dtype=bool)].min())


def test_every_identity_gets_8_faces_spread_wider_than_random(tmp_path):
    run = write_run(tmp_path / "run", many_clips())
    out = tmp_path / "man"
    cluster_sample([run], out, CurateConfig(test_videos=3))
    rows = load(out)
    counts = rows.group_by("identity_id").aggregate([("frame_index", "count")]).column(1).to_pylist()
    assert len(counts) == 12 and set(counts) == {8}
    rng = np.random.default_rng(0)
    ours, rand, cover_ours, cover_rand = [], [], [], []
    for chosen, cands in pose_sets(out, run):
        ours.append(min_pair(chosen))
        picks = [cands[rng.choice(len(cands), 8, replace=False)] for _ in range(200)]
        rand.append(np.mean([min_pair(p) for p in picks]))
        radius = (lambda s: np.sqrt(((cands[:, None] - s[None]) ** 2).sum(-1)).min(1).max())
        cover_ours.append(radius(chosen))
        cover_rand.append(np.mean([radius(p) for p in picks]))
    # Closest pair further apart, and every candidate pose nearer to a sampled one, than random.
    assert all(o > r for o, r in zip(ours, rand)), (ours, rand)
    assert np.mean(cover_ours) < np.mean(cover_rand)


def test_deterministic_and_independent_of_workers_and_batching(tmp_path):
    run = write_run(tmp_path / "run", many_clips(10))
    cfg = CurateConfig(test_videos=2)
    cluster_sample([run], tmp_path / "a", cfg)
    cluster_sample([run], tmp_path / "b", cfg)
    cluster_sample([run], tmp_path / "c", dataclasses.replace(cfg, chunk_faces=70), workers=2)
    a, b, c = load(tmp_path / "a"), load(tmp_path / "b"), load(tmp_path / "c")
    assert a.equals(b) and a.equals(c)
    assert identities(tmp_path / "a") == identities(tmp_path / "c")
    # A different seed is a different k-means seeding: the seed is really used.
    cluster_sample([run], tmp_path / "d", dataclasses.replace(cfg, seed=7))
    d = load(tmp_path / "d")
    assert not a.column("pose_cluster").equals(d.column("pose_cluster"))


def test_the_pose_k_means_has_pose_clusters_clusters_not_faces_per_identity(tmp_path):
    # The kernels' own tests pass k directly; here the preset's pose_clusters must reach them:
    # a k of faces_per_identity (no over-clustering) gave the same 8 faces apiece and passed.
    run = write_run(tmp_path / "run", many_clips(10))
    for k in (16, 24):
        cluster_sample([run], tmp_path / f"k{k}", CurateConfig(test_videos=2, pose_clusters=k))
        labels = load(tmp_path / f"k{k}").column("pose_cluster").to_numpy()
        # 80 picks, each the one face of its cluster: labels cover well past the 8 of one identity.
        assert labels.min() >= 0 and labels.max() < k and labels.max() >= k - 4, (k, sorted(set(labels)))


def test_merge_by_video_key_across_sources_with_similarity_guard(tmp_path):
    specs = [
        ClipSpec("celebvhq", "hq_a", "yt_A", person=1),
        ClipSpec("celebvtext", "text_a", "yt_A", person=1),   # same YouTube video, same person
        ClipSpec("celebvhq", "hq_b", "yt_B", person=2),
        ClipSpec("celebvhq", "hq_c", "yt_B", person=3),       # same video, another person
        ClipSpec("celebvhq", "hq_d", "yt_D", person=4),
    ]
    run = write_run(tmp_path / "run", specs)
    cluster_sample([run], tmp_path / "man", CurateConfig(merge_by_embedding=False, test_videos=1))
    by_clip = {r["clip_id"]: r for r in identities(tmp_path / "man")}
    assert by_clip["hq_a"]["identity_id"] == by_clip["text_a"]["identity_id"] == "celebvhq/hq_a"
    assert by_clip["text_a"]["decision"] == "merged"
    edges = json.loads(by_clip["text_a"]["evidence"])
    assert [(e["a"], e["b"], e["by"]) for e in edges] == [("celebvhq/hq_a", "celebvtext/text_a", "video_key")]
    assert edges[0]["similarity"] > 0.3
    assert by_clip["hq_b"]["identity_id"] != by_clip["hq_c"]["identity_id"]
    assert by_clip["hq_b"]["decision"] == by_clip["hq_c"]["decision"] == "own"
    # The merged identity pooled both clips' faces.
    merged = load(tmp_path / "man").to_pandas().query("identity_id == 'celebvhq/hq_a'")
    assert len(merged) == 8 and by_clip["hq_a"]["identity_faces"] == 60  # 30 + 30 candidates
    # Without the guard the two people of yt_B merge too.
    cluster_sample([run], tmp_path / "noguard", CurateConfig(merge_by_embedding=False, video_key_min_similarity=None,
                                                               test_videos=1))
    loose = {r["clip_id"]: r["identity_id"] for r in identities(tmp_path / "noguard")}
    assert loose["hq_b"] == loose["hq_c"]


def test_merge_by_embedding_dedup_and_off(tmp_path):
    specs = [ClipSpec("vfhq", "p5_one", "v1", person=5, faces=20),
             ClipSpec("vfhq", "p5_two", "v2", person=5, faces=40),
             ClipSpec("vfhq", "p6", "v3", person=6)]
    run = write_run(tmp_path / "run", specs)
    cluster_sample([run], tmp_path / "merge", CurateConfig(merge_by_video_key=False, test_videos=1))
    rows = {r["clip_id"]: r for r in identities(tmp_path / "merge")}
    assert rows["p5_one"]["identity_id"] == rows["p5_two"]["identity_id"] != rows["p6"]["identity_id"]
    assert json.loads(rows["p5_one"]["evidence"])[0]["by"] == "embedding"
    cluster_sample([run], tmp_path / "dedup", CurateConfig(merge="dedup", test_videos=1))
    rows = {r["clip_id"]: r for r in identities(tmp_path / "dedup")}
    assert rows["p5_two"]["decision"] == "dedup_kept" and rows["p5_one"]["decision"] == "dedup_dropped"
    assert rows["p5_one"]["status"] == "duplicate"
    assert "p5_one" not in set(load(tmp_path / "dedup").column("clip_id").to_pylist())
    cluster_sample([run], tmp_path / "off", CurateConfig(merge="off", test_videos=1))
    assert len({r["identity_id"] for r in identities(tmp_path / "off")}) == 3


@pytest.mark.parametrize("mode", ["drop", "flag"])
def test_short_identities_dropped_or_flagged(tmp_path, mode):
    # a second full identity, so that dropping the short one still leaves one for train
    specs = [ClipSpec("vfhq", "full", "v1", person=1), ClipSpec("vfhq", "short", "v2", person=2, faces=5),
             ClipSpec("vfhq", "other", "v3", person=3)]
    run = write_run(tmp_path / "run", specs)
    cluster_sample([run], tmp_path / "man", CurateConfig(short_identities=mode, test_videos=1))
    rows = load(tmp_path / "man").to_pandas()
    status = {r["clip_id"]: r["status"] for r in identities(tmp_path / "man")}
    assert len(rows[rows.clip_id == "full"]) == 8 and not rows[rows.clip_id == "full"].short.any()
    if mode == "drop":
        assert "short" not in set(rows.clip_id) and status["short"] == "short_dropped"
    else:
        assert len(rows[rows.clip_id == "short"]) == 5 and rows[rows.clip_id == "short"].short.all()
        assert status["short"] == "short_flagged"


def _assert_disjoint(rows: pa.Table) -> None:
    frame = rows.to_pandas()
    train, test = frame[frame.split == "train"], frame[frame.split == "test"]
    assert len(train) and len(test)
    assert not set(train.identity_id) & set(test.identity_id)
    assert not set(train.video_key) & set(test.video_key)


def test_split_disjoint_in_identities_and_videos(tmp_path):
    # Person 1 spans videos v1 and v2 (merged by embedding); v2 also holds person 2: one group.
    specs = [ClipSpec("s", "a", "v1", 1), ClipSpec("s", "b", "v2", 1), ClipSpec("s", "c", "v2", 2)] + \
        [ClipSpec("s", f"x{i}", f"w{i}", 10 + i) for i in range(8)]
    run = write_run(tmp_path / "run", specs)
    cfg = CurateConfig(merge_by_video_key=False, test_videos=3)
    cluster_sample([run], tmp_path / "man", cfg)
    rows = load(tmp_path / "man")
    _assert_disjoint(rows)
    assert len(set(rows.filter(pc.equal(rows.column("split"), "test")).column("video_key").to_pylist())) >= 3
    sidecar = json.loads((tmp_path / "man" / "manifest.json").read_text())
    assert sidecar["counts"]["train"]["faces"] + sidecar["counts"]["test"]["faces"] == rows.num_rows
    # `mfhq split` with another seed: other test videos, still disjoint, same rows.
    resplit(tmp_path / "man", dataclasses.replace(cfg, split_seed=5))
    again = load(tmp_path / "man")
    _assert_disjoint(again)
    assert again.num_rows == rows.num_rows
    assert sorted(again.column("crop_path").to_pylist()) == sorted(rows.column("crop_path").to_pylist())


def test_official_split_followed_and_straddling_groups_go_to_test(tmp_path):
    specs = [ClipSpec("s", "tr1", "v1", 1, split="train"), ClipSpec("s", "tr2", "v2", 2, split="train"),
             ClipSpec("s", "te1", "v3", 3, split="test"),
             ClipSpec("s", "mix_a", "v4", 4, split="train"), ClipSpec("s", "mix_b", "v5", 4, split="test")]
    run = write_run(tmp_path / "run", specs)
    cluster_sample([run], tmp_path / "man", CurateConfig(split="official"))
    frame = load(tmp_path / "man").to_pandas()
    split_of = frame.groupby("clip_id").split.first().to_dict()
    assert split_of == {"tr1": "train", "tr2": "train", "te1": "test", "mix_a": "test", "mix_b": "test"}


def test_manifest_schema_and_paths(tmp_path):
    run = write_run(tmp_path / "run", many_clips(3))
    cluster_sample([run], tmp_path / "man", CurateConfig(test_videos=1))
    table = pq.read_table(tmp_path / "man" / "train.parquet")
    assert table.schema.remove_metadata().equals(MANIFEST_SCHEMA.remove_metadata())
    row = table.slice(0, 1).to_pylist()[0]
    # the same relative path as the run's faces/ row, and the run it is relative to
    assert row["crop_path"].startswith("crops/") and row["run"] == "run"
    sidecar = json.loads((tmp_path / "man" / "manifest.json").read_text())
    assert sidecar["runs"][0]["run_dir"] == str(run.resolve()) and sidecar["runs"][0]["run_dir_relative"] == "../run"
    assert sidecar["schema_version"] == MANIFEST_VERSION and sidecar["model_provenance"] == ["synthetic@test"]
    assert sidecar["config"]["faces_per_identity"] == 8 and sidecar["code_version"]


def test_bad_runs_and_old_schemas_give_clear_errors(tmp_path):
    with pytest.raises(RunError, match="no such run folder"):
        cluster_sample([tmp_path / "nope"], tmp_path / "man", CurateConfig())
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="run.json"):
        cluster_sample([tmp_path / "empty"], tmp_path / "man", CurateConfig())
    run = write_run(tmp_path / "run", many_clips(2))
    shard = next((run / "faces").glob("*.parquet"))
    table = pq.read_table(shard)
    pq.write_table(table.replace_schema_metadata({b"mfhq.schema_version": b"0"}), shard)
    with pytest.raises(SchemaVersionError, match=f"{shard.name}.*schema version 0"):
        cluster_sample([run], tmp_path / "man", CurateConfig())
    with pytest.raises(RunError, match="no usable faces.*quality >= 2"):
        cluster_sample([write_run(tmp_path / "run3", many_clips(2))], tmp_path / "m3", CurateConfig(min_quality=2.0))
    with pytest.raises(ValueError, match="must exceed faces_per_identity"):
        cluster_sample([write_run(tmp_path / "run4", many_clips(2))], tmp_path / "m4", CurateConfig(pose_clusters=8))
    good = write_run(tmp_path / "run2", many_clips(2))
    cluster_sample([good], tmp_path / "man2", CurateConfig(test_videos=1))
    path = tmp_path / "man2" / "train.parquet"
    pq.write_table(pq.read_table(path).replace_schema_metadata({b"mfhq.schema_version": b"9"}), path)
    with pytest.raises(ManifestError, match="train.parquet: manifest schema version 9"):
        read_manifest(path)


def test_bench_picks_8_for_every_identity_with_enough_faces(tmp_path):
    cfg = CurateConfig()
    lines = run_bench_curate(300, 20_000, tmp_path / "bench", cfg, workers=1)
    expected = duckdb.sql(f"SELECT count(*) FROM (SELECT clip_id FROM '{tmp_path}/bench/faces.parquet' WHERE kept "
                          "GROUP BY clip_id HAVING count(*) >= 8)").fetchall()[0][0]
    assert any(f"-> {8 * expected} faces for {expected} identities" in line for line in lines), lines
    assert expected > 250  # faces per identity vary, a few fall under 8


def test_synthetic_table_has_the_size_asked(tmp_path):
    write_synthetic(tmp_path / "t.parquet", 50, 4000)
    n, ids = duckdb.sql(f"SELECT count(*), count(DISTINCT clip_id) FROM '{tmp_path}/t.parquet'").fetchall()[0]
    assert n == 4000 and ids == 50


def test_curate_options_do_not_change_the_extract_fingerprint(tmp_path):
    # Tuning curation must not make `mfhq extract` refuse to resume a run.
    preset = tmp_path / "p.yaml"
    preset.write_text("curate:\n  test_videos: 3\n  pose_clusters: 24\n")
    cfg = load_pipeline(preset)
    assert cfg.curate.test_videos == 3 and cfg.curate.pose_clusters == 24
    assert cfg.fingerprint() == PipelineConfig().fingerprint()
    preset.write_text("curate:\n  pose_clusterz: 24\n")
    with pytest.raises(ConfigError, match="pose_clusterz"):
        load_pipeline(preset)


def test_report_shows_a_sample_of_identities_when_many(tmp_path):
    from mfhq.stats import write_report

    run = write_run(tmp_path / "run", many_clips(15))
    cluster_sample([run], tmp_path / "man", CurateConfig(test_videos=2, merge_by_embedding=False))
    write_report([run], tmp_path / "man", tmp_path / "report", strip_identities=4)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "4 of 15 identities (evenly spaced" in page
    assert page.count("class='strip'") == 4
    # synthetic runs have no image files: each face says so instead of a broken <img>
    assert page.count("class='missing'") == 4 * 8 and "<img src='strips/" not in page
