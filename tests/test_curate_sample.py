"""`mfhq cluster-sample`, `mfhq split` and `mfhq stats` through the CLI on the real sample run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.manifest import ManifestFolder
from mfhq.manifest.card import render_card
from mfhq.manifest.hf import with_images


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



def test_hf_datasets_loads_the_folder_with_splits_and_images(manifests, tmp_path):
    hf = pytest.importorskip("datasets")
    train = pd.read_parquet(manifests / "train.parquet")
    # the folder's dataset card declares the splits
    ds = hf.load_dataset(str(manifests), cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "test"}
    assert ds["train"].num_rows == len(train) and ds["test"].num_rows == len(pd.read_parquet(manifests / "test.parquet"))
    assert ds["train"][0]["crop_path"] == train.crop_path.iloc[0]
    ident = hf.load_dataset(str(manifests), "identities", cache_dir=str(tmp_path / "cache"))
    assert ident["clips"].num_rows == len(pd.read_parquet(manifests / "identities.parquet"))
    card = (manifests / "README.md").read_text()
    assert f"| train | {len(train)} | {train.identity_id.nunique()} |" in card
    images = with_images(ds, manifests)
    assert isinstance(images["train"].features["crop"], hf.Image)
    assert images["train"][0]["crop"].size == (448, 448) and images["test"][0]["mask"].mode == "L"


def test_repository_card_is_the_generated_card():
    # manifests/README.md documents the schema; it must be what cluster-sample writes, less the counts
    assert (Path(__file__).resolve().parents[1] / "manifests" / "README.md").read_text() == render_card()


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
    # the headline totals are direct queries' answers
    head = pd.read_csv(tables / "headline.csv").set_index("metric").value.to_dict()
    q = lambda sql: duckdb.sql(sql).fetchall()[0][0]  # noqa: E731
    assert head["videos"] == q(f"SELECT count(DISTINCT source || '/' || video_key) FROM {clips}")
    assert head["clips"] == sum(status.values()) and head["clips ok"] == status["ok"]
    assert head["clips decode_error"] == status["decode_error"]
    assert head["faces kept"] == q(f"SELECT count(*) FROM {faces} WHERE kept")
    assert head["identities"] == q(f"SELECT count(DISTINCT identity_id) FROM {parts(manifests)}")
    for split in ("train", "test"):
        assert head[f"{split} faces"] == q(f"SELECT count(*) FROM '{manifests}/{split}.parquet'")
        assert head[f"{split} identities"] == q(f"SELECT count(DISTINCT identity_id) FROM '{manifests}/{split}.parquet'")
    # the page parses, shows the headline first, and every image it references exists
    page = ReportPage.read(tmp_path / "report.html")
    assert page.text.index("faces kept") < page.text.index("Plots") < page.text.index("Sampled faces")
    assert "<h2>clip_reasons</h2>" in page.html
    assert {"pose_yaw.png", "quality.png"} <= set(page.images)
    strips = [src for src in page.images if src.startswith("strips/")]
    assert len(strips) == 8 * head["identities"]  # all identities (few), 8 crops each
    assert all((tmp_path / src).is_file() for src in page.images), page.images
    assert "y " in page.text and "q 0." in page.text  # pose and quality under each crop


class ReportPage(HTMLParser):
    """A strict-enough parse: every non-void element closed in order; collects img sources."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.chunks = [], [], []

    @classmethod
    def read(cls, path: Path) -> "ReportPage":
        page = cls()
        page.html = path.read_text()
        page.feed(page.html)
        page.close()
        assert page.stack == [], f"unclosed elements: {page.stack}"
        page.text = " ".join(page.chunks)
        return page

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.chunks.append(data)


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


def _omniid_train(*args: str) -> subprocess.CompletedProcess:
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(repo / "train"), str(repo), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "omniid", *args], capture_output=True, text=True, env=env)


def test_cluster_sample_output_trains_in_omniid(manifests, tmp_path, caplog):
    """The mfhq -> omniid boundary: what `mfhq cluster-sample` writes is what `omniid-train` reads."""
    moved = tmp_path / "moved"
    shutil.copytree(manifests, moved)  # a moved manifest folder: crops still found through the sidecar
    out = tmp_path / "train"
    result = _omniid_train("--manifest", str(moved / "train.parquet"), "--preset", "tiny", "--out", str(out),
                           "--steps", "2", "--batch-size", "1", "--eval-every", "2", "--save-every", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2] and any("eval_loss" in r for r in log)
    assert (out / "checkpoints" / "step-00000002").is_dir()
    # a file that is not Parquet: an error naming it, exit 2
    from omniid.cli import main

    (tmp_path / "notes.parquet").write_text("not parquet")
    shutil.copy(manifests / "manifest.json", tmp_path / "manifest.json")
    assert main(["--manifest", str(tmp_path / "notes.parquet"), "--preset", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert "notes.parquet: not a readable Parquet file" in caplog.text
