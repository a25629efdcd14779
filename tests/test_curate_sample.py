"""`mfhq cluster-sample`, `mfhq split` and `mfhq stats` through the CLI on the real sample run."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE_PRESET, run_cli


@pytest.fixture(scope="module")
def manifests(sample_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("manifests")
    run_cli("cluster-sample", "--run", str(sample_run), "--out", str(out), "--pipeline", str(SAMPLE_PRESET))
    return out


def parts(out: Path) -> str:
    return f"read_parquet(['{out}/train.parquet', '{out}/test.parquet'])"


def test_each_identity_8_faces_with_images_on_disk(manifests):
    rows = duckdb.sql(f"SELECT * FROM {parts(manifests)}").df()
    per_id = rows.groupby("identity_id").size().to_dict()
    # 4 good clips, the two astronaut clips are one person: 3 identities of 8 faces.
    assert per_id == {"folder/astronaut_light_blur": 8, "folder/t1_face2_motion": 8, "folder/t1_intruder": 8}
    assert set(rows[rows.identity_id == "folder/astronaut_light_blur"].clip_id) == {"astronaut_motion", "astronaut_light_blur"}
    for path in list(rows.crop_path) + list(rows.mask_path):
        assert Path(path).is_absolute() and Path(path).is_file(), path
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
    hf = pytest.importorskip("datasets")
    ds = hf.load_dataset("parquet", data_files={"train": str(manifests / "train.parquet"),
                                                "test": str(manifests / "test.parquet")})
    assert ds["train"].num_rows == len(train) and ds["test"].num_rows == len(test)
    assert ds["train"][0]["crop_path"] == train.crop_path.iloc[0]


def test_stats_report_equals_direct_queries(manifests, sample_run, tmp_path):
    result = run_cli("stats", "--run", str(sample_run), "--manifest", str(manifests), "--out", str(tmp_path))
    assert "== face_outcomes" in result.stdout and "== pose_spread" in result.stdout
    tables = tmp_path / "tables"
    faces, clips = f"'{sample_run}/faces/*.parquet'", f"'{sample_run}/clips/*.parquet'"

    status = pd.read_csv(tables / "clip_status.csv").set_index("status").clips.to_dict()
    assert status == dict(duckdb.sql(f"SELECT status, count(*) FROM {clips} GROUP BY 1").fetchall())
    out = pd.read_csv(tables / "face_outcomes.csv").fillna("")
    direct = dict(duckdb.sql(f"SELECT coalesce(drop_reason, ''), count(*) FROM {faces} GROUP BY 1").fetchall())
    assert out.groupby("reason").faces.sum().to_dict() == direct
    assert set(out[out.reason == "other_identity"].stage) == {"identity"}
    per_source = pd.read_csv(tables / "identities_per_source.csv")
    direct = duckdb.sql(f"SELECT split, count(DISTINCT identity_id), count(*) FROM {parts(manifests)} GROUP BY 1").fetchall()
    assert {(r.split, r.identities, r.faces) for r in per_source.itertuples()} == set(direct)
    hist = pd.read_csv(tables / "pose_hist.csv")
    yaw = hist[(hist.faces_of == "candidates") & (hist.axis == "yaw")].set_index("bin").faces.to_dict()
    assert yaw == {float(b): n for b, n in duckdb.sql(
        f"SELECT floor(yaw / 10) * 10, count(*) FROM {faces} WHERE kept GROUP BY 1").fetchall()}
    spread = pd.read_csv(tables / "pose_spread.csv").set_index("identity_id")
    direct = dict(duckdb.sql(f"SELECT identity_id, sqrt(var_pop(yaw) + var_pop(pitch) + var_pop(roll)) "
                             f"FROM {parts(manifests)} GROUP BY 1").fetchall())
    assert spread.spread_after.to_dict() == pytest.approx(direct)
    thr = pd.read_csv(tables / "stage_throughput.csv").set_index("stage").seconds.to_dict()
    direct = dict(duckdb.sql(f"SELECT k, round(sum(v), 3) FROM (SELECT unnest(map_keys(stage_seconds)) k, "
                             f"unnest(map_values(stage_seconds)) v FROM {clips}) GROUP BY 1").fetchall())
    assert thr == pytest.approx(direct)
    assert {p.name for p in tmp_path.glob("*.png")} >= {"pose_yaw.png", "pose_pitch.png", "quality.png", "pose_spread.png"}
    page = (tmp_path / "report.html").read_text()
    assert "pose_yaw.png" in page and "<h2>clip_reasons</h2>" in page


def test_stats_sql_and_errors(manifests, sample_run, tmp_path):
    result = run_cli("stats", "--run", str(sample_run), "--manifest", str(manifests),
                     "--sql", "SELECT sum(faces)::BIGINT AS n FROM face_outcomes WHERE outcome = 'kept'")
    kept = duckdb.sql(f"SELECT count(*) FROM '{sample_run}/faces/*.parquet' WHERE kept").fetchall()[0][0]
    assert result.stdout.split() == ["n", str(kept)]
    bad = run_cli("stats", "--run", str(tmp_path / "missing"), check=False)
    assert bad.returncode == 2 and "no such run folder" in bad.stderr
    bad = run_cli("cluster-sample", "--run", str(tmp_path), "--out", str(tmp_path / "m"), check=False)
    assert bad.returncode == 2 and "run.json: missing" in bad.stderr
    bad = run_cli("stats", "--run", str(sample_run), "--sql", "SELECT * FROM no_such_view", check=False)
    assert bad.returncode == 2 and "query failed" in bad.stderr


def test_stats_without_manifest_treats_each_clip_as_an_identity(sample_run, tmp_path):
    run_cli("stats", "--run", str(sample_run), "--out", str(tmp_path))
    spread = pd.read_csv(tmp_path / "tables" / "pose_spread.csv").set_index("identity_id")
    direct = dict(duckdb.sql(f"SELECT source || '/' || clip_id, count(*) FROM '{sample_run}/faces/*.parquet' "
                             "WHERE kept GROUP BY 1").fetchall())
    assert spread.faces_before.to_dict() == direct and spread.spread_after.isna().all()
    assert not (tmp_path / "tables" / "identities_per_source.csv").exists()
