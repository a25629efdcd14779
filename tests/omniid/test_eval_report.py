"""omniid-eval beyond the paper's table, end to end on the tiny preset (random weights: the numbers
mean nothing about quality): several recognisers, copy-paste, the real-photos ceiling, curves,
bootstrap intervals, report.html and the MultiID-Bench interchange, on 3 identities of 8 real
face crops each (the sample extract run's)."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from omniid.eval_cli import eval_main
from omniid.intervals import cluster_interval
from omniid_fixtures import (kept_faces, one_torch_thread, sample_manifest,  # noqa: F401  (pytest fixtures)
                             train_flow, write_eval_set)

FACES = 8



@pytest.fixture(scope="module")
def runs(sample_manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    return [train_flow(sample_manifest, root / name, name) for name in ("omniid", "arcface")]


@pytest.fixture(scope="module")
def eight_faces(kept_faces, sample_run, tmp_path_factory):
    """3 identities of 8 faces (every other frame of a clip), named 000.jpg... in protocol order."""
    return write_eval_set(tmp_path_factory.mktemp("eight"), kept_faces, sample_run, identities=3, faces=FACES, every=2)


def run(argv: list[str]) -> tuple[int, str, list[str]]:
    """eval_main's exit code, stdout and warnings."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("omniid").addHandler(handler)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            code = eval_main(argv)
    finally:
        logging.getLogger("omniid").removeHandler(handler)
    return code, stdout.getvalue(), [r.getMessage() for r in records]


@pytest.fixture(scope="module")
def evaluated(runs, eight_faces, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    code, stdout, warnings = run(["--checkpoint", *map(str, runs), "--manifest", str(eight_faces), "--out",
                                  str(out / "eval"), "--inputs", "1,2,3,5,8", "--targets", "4", "--steps", "2",
                                  "--bootstrap", "200", "--export-multiid", str(out / "multiid")])
    assert code == 0
    return out, stdout, warnings


def test_eval_fits_the_data_and_says_so(evaluated):
    out, stdout, warnings = evaluated
    assert any("--inputs 8 left out" in w and "at most 8" in w for w in warnings)
    assert any("--targets 4" in w and "only 3 face(s) remain" in w for w in warnings)
    table = (out / "eval" / "table.md").read_text()
    assert "3 target(s) per identity (asked 4)" in table and "k = 1, 2, 3, 5" in table
    assert table in stdout + "\n" and "| Representation |" in stdout  # the console shows the table itself
    settings = json.loads((out / "eval" / "settings.json").read_text())
    assert settings["inputs_evaluated"] == [1, 2, 3, 5] and len(settings["notes"]) == 2


def test_every_image_is_scored_by_each_recogniser_and_marks_self_scoring_rows(evaluated):
    out = evaluated[0] / "eval"
    results = pd.read_parquet(out / "results.parquet")
    assert set(results.representation) == {"omniid", "arcface", "copy-input", "real photos"}
    for name in ("sface", "dlib-resnet"):
        for metric in ("id_similarity", "sim_ref", "copy_paste", "degenerate"):
            assert f"{metric}:{name}" in results.columns
    assert (results.id_similarity == results["id_similarity:sface"]).all()
    copies = results[results.representation == "copy-input"]
    assert np.allclose(copies["copy_paste:sface"], 1.0)  # the input itself copies the input
    settings = json.loads((out / "settings.json").read_text())
    assert settings["conditioned_on_a_scoring_model"] == {"arcface": ["sface"]}  # the tiny arcface uses SFace
    table = (out / "table.md").read_text()
    assert "| arcface ‡ | decoder-only | 2 | 1 |" in table and "‡ arcface is conditioned on sface" in table
    assert "| omniid | decoder-only | 2 | 1 |" in table  # the step column: every checkpoint row says its step
    assert table.startswith("**RANDOM WEIGHTS: preset tiny")
    sheet = np.asarray(Image.open(out / "sheets" / "id0.png").convert("RGB"))
    red = (sheet[:30, :, 0] > 150) & (sheet[:30, :, 1] < 80)
    assert red.any()  # the warning is printed on the contact sheet too


def test_the_real_photos_row_is_the_ceiling_from_real_crops(evaluated):
    from omniid.metrics import FaceMetrics, cosine

    out = evaluated[0] / "eval"
    results = pd.read_parquet(out / "results.parquet")
    real = results[(results.representation == "real photos") & (results.identity_id == "id0") & (results.k == 5)]
    assert list(real.target) == [0, 1, 2]
    # target j's "generation" is the next held-out photo: scored exactly like a generated image
    faces = FaceMetrics("sample").analyse([real.target_path.iloc[0], real.target_path.iloc[1]])
    expected = cosine(faces[1].embeddings["dlib-resnet"], faces[0].embeddings["dlib-resnet"])
    assert real["id_similarity:dlib-resnet"].iloc[0] == pytest.approx(expected, abs=1e-6)
    assert real.image_path.iloc[0] == real.target_path.iloc[1]
    assert (-1 <= real["copy_paste:sface"].dropna()).all() and (real["copy_paste:sface"].dropna() <= 1).all()


def test_cells_carry_reproducible_bootstrap_intervals(evaluated):
    out = evaluated[0] / "eval"
    results = pd.read_parquet(out / "results.parquet")
    table = pd.read_csv(out / "table.csv").set_index(["representation", "k"])
    for (rep, k), group in results.groupby(["representation", "k"]):
        scored = group[group.gt_face]
        groups = {i: list(g["copy_paste:dlib-resnet"]) for i, g in scored.groupby("identity_id")}
        mean, low, high = cluster_interval(groups, 200, seed=0)
        row = table.loc[(rep, k)]
        assert row["copy_paste:dlib-resnet"] == pytest.approx(mean, nan_ok=True)
        assert (row["copy_paste:dlib-resnet:low"], row["copy_paste:dlib-resnet:high"]) == \
            (pytest.approx(low, nan_ok=True), pytest.approx(high, nan_ok=True))
        assert row["id_similarity:sface"] == pytest.approx(scored["id_similarity:sface"].mean())
        assert row["n"] == len(group)


def test_curves_have_one_point_per_input_count_and_pose_bin(evaluated):
    out = evaluated[0] / "eval"
    curves = pd.read_csv(out / "curves.csv")
    inputs = curves[(curves.curve == "inputs") & (curves.metric == "id_similarity") & (curves.recogniser == "sface")]
    for rep, group in inputs.groupby("representation"):
        assert sorted(group.x.astype(int)) == [1, 2, 3, 5], rep
    pose = curves[(curves.curve == "pose_gap") & (curves.metric == "copy_paste") & (curves.recogniser == "sface")]
    assert set(pose.x) == {"<15", "15-30", "30-45", ">45"}
    assert pose.groupby("representation").n.sum().max() == 3 * 3  # every row at k=5 lands in one bin
    for name in ("curve_inputs.png", "curve_pose_gap.png"):
        assert Image.open(out / name).size[0] > 500


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.tables = [], 0

    def handle_starttag(self, tag, attrs):
        self.sources += [value for key, value in attrs if tag == "img" and key == "src"]
        self.tables += tag == "table" and ("class", "results") in attrs


def test_the_report_parses_and_every_image_it_shows_exists(evaluated):
    out = evaluated[0] / "eval"
    page = (out / "report.html").read_text()
    parser = _Images()
    parser.feed(page)
    assert parser.tables == 1 and "RANDOM WEIGHTS" in page
    assert len(parser.sources) == 2 + 3 * (5 + 1 + 4)  # curves + per identity: 5 inputs, target, 4 rows
    assert all((out / src).is_file() for src in parser.sources)
    assert all(not src.startswith("/") for src in parser.sources)  # self-contained: relative links


def test_multiid_export_then_import_round_trips_images_and_scores(evaluated, tmp_path):
    out = evaluated[0]
    results = pd.read_parquet(out / "eval" / "results.parquet")
    entry = out / "multiid" / "real_photos" / "id0_k3_t1_s0"
    assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "ori.jpg", "out.jpg", "ref_1.jpg", "ref_2.jpg",
                                                       "ref_3.jpg"]
    row = results[(results.representation == "real photos") & (results.identity_id == "id0") & (results.k == 3) &
                  (results.target == 1)].iloc[0]
    assert (entry / "ori.jpg").read_bytes() == open(row.target_path, "rb").read()
    assert (entry / "ref_3.jpg").read_bytes() == open(row.input_paths[2], "rb").read()
    assert json.loads((entry / "meta.json").read_text())["prompt"] == "photo of a person."
    code, _, _ = run(["--bench", str(out / "multiid" / "real_photos"), "--out", str(tmp_path / "bench"),
                      "--bootstrap", "50", "--no-real-row"])
    assert code == 0
    back = pd.read_parquet(tmp_path / "bench" / "results.parquet")
    back = back[back.representation == "bench out"]
    original = results[results.representation == "real photos"]
    assert len(back) == len(original) == 3 * 4 * 3
    for _, entry_row in back.iterrows():
        meta = json.loads((out / "multiid" / "real_photos" / entry_row.identity_id / "meta.json").read_text())
        source = original[(original.identity_id == meta["identity_id"]) & (original.k == meta["k"]) &
                          (original.target == meta["target"])].iloc[0]
        assert entry_row.k == meta["k"]
        for column in ("id_similarity:sface", "sim_ref:dlib-resnet", "copy_paste:sface", "pose_error", "pose_gap"):
            assert entry_row[column] == pytest.approx(source[column], nan_ok=True), column


def test_the_export_copies_the_photos_of_a_manifest_given_by_a_relative_path(runs, eight_faces, tmp_path,
                                                                             monkeypatch):
    """A relative --manifest (as the docs write it: manifests/test.parquet) makes the copy-input and
    real-photos rows' images paths relative to where the command runs, not to --out: the export
    copies them from there (before, it looked for them under --out and ended in a traceback)."""
    monkeypatch.chdir(tmp_path)
    code, _, _ = run(["--checkpoint", str(runs[0]), "--manifest", os.path.relpath(eight_faces, tmp_path),
                      "--out", "eval", "--identities", "1", "--inputs", "1", "--targets", "2", "--steps", "1",
                      "--no-swap", "--bootstrap", "10", "--export-multiid", "multiid"])
    assert code == 0
    copied = tmp_path / "multiid" / "copy-input" / "id0_k1_t0_s0" / "out.jpg"
    assert copied.read_bytes() == (eight_faces.parent / "id0" / "000.jpg").read_bytes()  # the first input itself
    real = tmp_path / "multiid" / "real_photos" / "id0_k1_t0_s0" / "out.jpg"
    assert real.read_bytes() == (eight_faces.parent / "id0" / "002.jpg").read_bytes()  # the next target

def test_the_identity_swap_runs_at_the_largest_evaluated_k(evaluated):
    """--inputs 1,2,3,5,8 on 8 faces evaluates up to k = 5: the swap compares at 5 (at 8, no own
    generation exists and every margin was NaN under a "k=8" heading)."""
    out = evaluated[0] / "eval"
    swap = pd.read_parquet(out / "swap.parquet")
    settings = json.loads((out / "settings.json").read_text())
    assert settings["swap"]["k"] == 5 and settings["protocol"]["swap_k"] == 5 and (swap.k == 5).all()
    generated = swap[swap.representation != "copy-input"]
    assert all(path.rsplit("/", 1)[-1].startswith("swap_k5_") for path in generated.image_path)
    scored = swap[swap.gt_face]
    # an own generation at k = 5 beside every swapped one (a margin wherever both have a face)
    assert len(scored) == 3 * 3 * 3 and scored.id_similarity_own.notna().all()
    assert scored.margin.notna().tolist() == (scored.face & scored.own_face).tolist()
    margins = {m["representation"]: m["margin"] for m in settings["swap"]["margins"]}
    assert list(margins) == ["omniid", "arcface", "copy-input"] and np.isfinite(margins["copy-input"])
    assert "Identity swap (k=5)" in (out / "table.md").read_text()
