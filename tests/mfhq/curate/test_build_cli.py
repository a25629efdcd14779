"""`mfhq cluster-sample` and `mfhq split` through the CLI on the real sample run: 8 faces per
identity spread in pose, merges with evidence, the same manifest every time, disjoint splits."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from conftest import SAMPLE_PRESET, run_cli
from mfhq.manifest import ManifestFolder


def parts(out: Path) -> str:
    return f"read_parquet(['{out}/train.parquet', '{out}/test.parquet'])"


def test_each_identity_8_faces_with_images_on_disk(manifests):
    rows = duckdb.sql(f"SELECT * FROM {parts(manifests)}").df()
    per_id = rows.groupby("identity_id").size().to_dict()
    # 4 good clips, the two astronaut clips are one person: 3 identities of 8 faces.
    assert per_id == {"folder/astronaut_light_blur": 8, "folder/t1_face2_motion": 8, "folder/t1_intruder": 8}
    assert set(rows[rows.identity_id == "folder/astronaut_light_blur"].clip_id) == {"astronaut_motion", "astronaut_light_blur"}
    folder = ManifestFolder.open(manifests)
    for run, crop, mask in zip(rows.run, rows.crop_path, rows.mask_path):
        assert not Path(crop).is_absolute()  # as in the run's faces/ rows
        assert folder.resolve(run, crop).is_file() and folder.resolve(run, mask).is_file()
    faces = duckdb.sql(f"SELECT crop_path FROM '{folder.run_root('sample')}/faces/*.parquet' WHERE kept").df()
    assert set(rows.crop_path) <= set(faces.crop_path)
    assert rows.groupby("identity_id").pose_cluster.nunique().min() == 8  # one face per cluster
    assert (rows.embedding.map(len) == 128).all() and (rows.landmarks.map(len) == 10).all()


def test_astronaut_clips_merge_by_embedding_with_evidence(manifests):
    ident = duckdb.sql(f"SELECT * FROM '{manifests}/identities.parquet'").df().set_index("clip_id")
    assert ident.loc["astronaut_motion", "identity_id"] == ident.loc["astronaut_light_blur", "identity_id"]
    edge = json.loads(ident.loc["astronaut_motion", "evidence"])[0]
    assert edge["by"] == "embedding" and edge["similarity"] > 0.9
    assert ident.loc["t1_intruder", "decision"] == "own" and pd.isna(ident.loc["t1_intruder", "evidence"])


def test_pose_spread_beats_random_picking(manifests, sample_run):
    rows = duckdb.sql(f"SELECT identity_id, yaw, pitch, roll FROM {parts(manifests)}").df()
    faces = duckdb.sql(
        f"SELECT i.identity_id, f.yaw, f.pitch, f.roll FROM '{sample_run}/faces/*.parquet' f "
        f"JOIN '{manifests}/identities.parquet' i USING (source, clip_id) WHERE f.kept").df()
    rng = np.random.default_rng(0)

    def min_pair(p):
        d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
        return d[~np.eye(len(p), dtype=bool)].min()

    for ident, chosen in rows.groupby("identity_id"):
        cands = faces[faces.identity_id == ident][["yaw", "pitch", "roll"]].to_numpy()
        random_mean = np.mean([min_pair(cands[rng.choice(len(cands), 8, replace=False)]) for _ in range(300)])
        assert min_pair(chosen[["yaw", "pitch", "roll"]].to_numpy()) > random_mean, ident


def test_same_manifest_twice_and_with_two_workers(manifests, sample_run, tmp_path):
    run_cli("cluster-sample", "--run", str(sample_run), "--out", str(tmp_path), "--pipeline", str(SAMPLE_PRESET),
            "--workers", "2")
    for name in ("train", "test", "identities"):
        a = duckdb.sql(f"SELECT * FROM '{manifests}/{name}.parquet'").df()
        b = duckdb.sql(f"SELECT * FROM '{tmp_path}/{name}.parquet'").df()
        pd.testing.assert_frame_equal(a, b)
    side_a = json.loads((manifests / "manifest.json").read_text())
    side_b = json.loads((tmp_path / "manifest.json").read_text())
    assert side_a["counts"] == side_b["counts"] and side_a["runs"] == side_b["runs"]


def test_split_disjoint_and_loads_in_pandas_duckdb_hf(manifests):
    train = pd.read_parquet(manifests / "train.parquet")
    test = pd.read_parquet(manifests / "test.parquet")
    assert len(train) and len(test)
    assert not set(train.identity_id) & set(test.identity_id)
    assert not set(train.video_key) & set(test.video_key)
    assert (train.split == "train").all() and (test.split == "test").all()
