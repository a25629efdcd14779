"""What omniid-eval's tables say they measure: the identity-swap table names the recogniser behind
its ID sim and marks a representation conditioned on it, Sim(Ref) leaves out a generation
without a face (as copy-paste does) instead of scoring it 0, the footer states the tiny
presets' `arcface` baselines embed an upscaled face, and report.html labels its rows as the
tables do."""
from __future__ import annotations

import csv
import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mfhq.faces import Face
from omniid.eval_html import write_report
from omniid.eval_notes import conditioned
from omniid.eval_setting import CONTROLNET, DECODER_ONLY
from omniid.eval_table import TableSpec, write_table
from omniid.evaluate import Protocol
from omniid.metrics import ref_similarity
from omniid.scoring import score
from omniid.swap_eval import summarise, write_swap

RECOGNISERS = ["arcface", "sface"]


def _face(vector, pose=(0.0, 0.0, 0.0)) -> Face:
    unit = np.asarray(vector, np.float32) / np.linalg.norm(vector)
    return Face(unit, np.asarray(pose, np.float32), np.zeros(4, np.float32), 1.0,
                {r: unit for r in RECOGNISERS})


def _swap_rows() -> list[dict]:
    rows = []
    for rep in ("omniid", "arcface", "clip"):
        for n, identity in enumerate(("a", "b")):
            own, swapped = 0.5 + 0.1 * n, 0.2
            rows.append({"identity_id": identity, "representation": rep, "k": 1, "target": 0, "sample": 0,
                         "seed": 0, "donor_id": "b" if identity == "a" else "a", "image_path": "x.png",
                         "face": True, "own_face": True, "gt_face": True, "id_similarity_own": own,
                         "id_similarity_swapped": swapped, "margin": own - swapped})
    return rows


def test_the_swap_table_names_its_recogniser_and_marks_rows_conditioned_on_it(tmp_path):
    protocol = Protocol(inputs=(1,), swap_k=1, bootstrap=50)
    # arcface is conditioned on the first recogniser, which scores the swap; clip on the second only
    marks = conditioned({"omniid": [], "arcface": ["arcface"], "clip": ["sface"]}, RECOGNISERS)
    rows = _swap_rows()
    summary = summarise(rows, ["omniid", "arcface", "clip"], protocol, RECOGNISERS[0])
    (tmp_path / "table.md").write_text("main table\n")
    write_swap(tmp_path, rows, summary, protocol, marks)

    table = pd.read_csv(tmp_path / "swap.csv", keep_default_na=False).set_index("representation")
    assert (table.recogniser == "arcface").all()
    assert table.conditioned_on.to_dict() == {"omniid": "", "arcface": "arcface", "clip": ""}
    text = (tmp_path / "table.md").read_text()
    assert "Own ID sim (arcface) | Swapped ID sim (arcface)" in text
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "| arcface ‡" in lines and "| omniid" in lines and "| clip" in lines  # clip: not on this scorer
    assert lines["| arcface ‡"].count("‡") == 4  # the name and own, swapped, margin
    assert "‡ arcface is conditioned on arcface, which also scores its ‡ columns" in text
    assert "clip is conditioned" not in text


def test_sim_ref_is_nan_without_a_generated_face_and_left_out_of_the_cell(tmp_path):
    truth, near, far = _face([1, 0, 0]), _face([1, 0.2, 0]), _face([0, 1, 0])
    found = score(_face([1, 0.1, 0]), truth, [near, far], RECOGNISERS)
    missing = score(None, truth, [near, far], RECOGNISERS)
    assert missing["id_similarity"] == 0.0  # ID sim: a failed generation is penalised
    assert math.isnan(missing["sim_ref"]) and math.isnan(missing["sim_ref:sface"])
    assert math.isnan(ref_similarity(None, [near, far]))
    assert found["sim_ref"] == pytest.approx(ref_similarity(_face([1, 0.1, 0]), [near, far]))

    base = {"representation": "omniid", "k": 1, "gt_face": True, "pose_error": 0.0}
    rows = [{**base, **found, "identity_id": "a"}, {**base, **missing, "identity_id": "b"}]
    spec = TableSpec(["omniid"], [1], RECOGNISERS, resamples=20)
    cells = write_table(rows, tmp_path, spec)[("omniid", 1)]
    assert cells["sim_ref:arcface"][0] == pytest.approx(found["sim_ref:arcface"])  # the faceless row left out
    assert cells["id_similarity:arcface"][0] == pytest.approx(found["id_similarity:arcface"] / 2)
    assert cells["no_face_rate"][0] == 0.5  # and the table says how many had no face



def test_a_row_whose_ground_truth_has_no_face_is_in_no_recogniser_cell(tmp_path):
    """The recogniser cells are over the rows whose ground truth has a face (eval_table): a row whose
    target showed no face to the metric has a Sim(Ref) of its own (its generated face and inputs are
    there) but is left out of it too, so ID sim and Sim(Ref) are means over the same images; n and
    no_face_rate still count it."""
    truth, near = _face([1, 0, 0]), _face([1, 0.2, 0])
    found = score(_face([1, 0.1, 0]), truth, [near], RECOGNISERS)
    blind = score(_face([0, 1, 0]), None, [near], RECOGNISERS)  # far from its input: Sim(Ref) ~0.2
    assert not blind["gt_face"] and math.isnan(blind["id_similarity"]) and math.isfinite(blind["sim_ref"])
    base = {"representation": "omniid", "k": 1}
    rows = [{**base, **found, "identity_id": "a"}, {**base, **blind, "identity_id": "b"}]
    cells = write_table(rows, tmp_path, TableSpec(["omniid"], [1], RECOGNISERS, resamples=20))[("omniid", 1)]
    for r in RECOGNISERS:
        assert cells[f"sim_ref:{r}"][0] == pytest.approx(found[f"sim_ref:{r}"])
        assert cells[f"id_similarity:{r}"][0] == pytest.approx(found[f"id_similarity:{r}"])
    assert cells["n"] == 2 and cells["no_face_rate"][0] == 0.0


def test_table_csv_heads_each_bound_of_an_interval_with_its_name(tmp_path):
    """table.csv's `M:low` column holds the interval's lower bound and `M:high` its upper one, as
    table.md shows "mean [low, high]": four identities of different ID sim give a wide interval."""
    truth, near = _face([1, 0, 0]), _face([1, 0.2, 0])
    rows = [{"representation": "omniid", "k": 1, "identity_id": name,
             **score(_face([1, lean, 0]), truth, [near], RECOGNISERS)}
            for name, lean in (("a", 0.1), ("b", 0.5), ("c", 1.0), ("d", 2.0))]
    cells = write_table(rows, tmp_path, TableSpec(["omniid"], [1], RECOGNISERS, resamples=200))[("omniid", 1)]
    with open(tmp_path / "table.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    mean, low, high = cells["id_similarity:arcface"]
    assert low < mean < high
    for key in ("id_similarity:arcface", "sim_ref:sface", "pose_error"):
        assert [float(row[key + s]) for s in ("", ":low", ":high")] == list(cells[key])
    assert float(row["id_similarity:arcface:low"]) < float(row["id_similarity:arcface:high"])


def test_the_pose_gap_is_to_the_input_nearest_the_ground_truth_in_pose():
    """pose_gap (what the pose-gap curve bins): the summed |Δyaw| + |Δpitch| + |Δroll| from the
    ground truth to the nearest of the inputs in pose, here 5 degrees (not the 40 of the far one);
    an input without a face is not one of them."""
    truth = _face([1, 0, 0], pose=(10.0, 0.0, 0.0))
    inputs = [_face([1, 0.2, 0], pose=(50.0, 0.0, 0.0)), None, _face([0, 1, 0], pose=(12.0, -3.0, 0.0))]
    assert score(_face([1, 0.1, 0]), truth, inputs, RECOGNISERS)["pose_gap"] == pytest.approx(5.0)
    assert math.isnan(score(_face([1, 0.1, 0]), truth, [None], RECOGNISERS)["pose_gap"])

def test_report_html_labels_each_row_with_the_setting_columns_of_table_md(tmp_path):
    face = score(_face([1, 0.1, 0]), _face([1, 0, 0]), [_face([1, 0.2, 0])], RECOGNISERS)
    rows = [{"identity_id": "a", "representation": rep, "k": 1, "gt_face": True, "pose_error": 0.0, **face}
            for rep in ("omniid", "omniid (table 1)")]
    spec = TableSpec(["omniid", "omniid (table 1)"], [1], RECOGNISERS, resamples=20,
                     labels={"omniid": {"setting": DECODER_ONLY}, "omniid (table 1)": {"setting": CONTROLNET}})
    cells = write_table(rows, tmp_path, spec)
    write_report(tmp_path, rows, cells, spec, {"inputs": "inputs.png", "pose_gap": "pose.png"},
                 SimpleNamespace(plans={}), Protocol(inputs=(1,), report_identities=0), None)
    html = (tmp_path / "report.html").read_text()
    table = html.split("<table class='results'>", 1)[1].split("</table>", 1)[0]
    heads = re.findall(r"<th>(.*?)</th>", table)
    body = [re.findall(r"<td>(.*?)</td>", row) for row in table.split("<tr>")[2:]]
    md = [[c.strip() for c in line.strip("|").split("|")] for line in (tmp_path / "table.md").read_text().splitlines()
          if line.startswith("| ")]
    assert heads[:3] == md[0][:3] == ["Representation", "setting", "k"]
    assert [r[:3] for r in body] == [m[:3] for m in md[1:]] == [["omniid", DECODER_ONLY, "1"],
                                                               ["omniid (table 1)", CONTROLNET, "1"]]


def test_the_swap_margin_takes_only_pairs_where_both_generations_have_a_face():
    """A failed generation scores ID sim 0: a pair with one is left out of the margin (NaN) and
    counted in the no-face rate, so failures do not read as "own wins" or "no steering"."""
    base = {"representation": "omniid", "k": 1, "sample": 0, "seed": 0, "image_path": "x.png", "gt_face": True}
    rows = [{**base, "identity_id": "a", "donor_id": "b", "target": 0, "face": True, "own_face": True,
             "id_similarity_own": 0.6, "id_similarity_swapped": 0.2, "margin": 0.4},
            {**base, "identity_id": "a", "donor_id": "b", "target": 1, "face": False, "own_face": True,
             "id_similarity_own": 0.7, "id_similarity_swapped": 0.0, "margin": float("nan")},
            {**base, "identity_id": "b", "donor_id": "a", "target": 0, "face": False, "own_face": False,
             "id_similarity_own": 0.0, "id_similarity_swapped": 0.0, "margin": float("nan")}]
    line, = summarise(rows, ["omniid"], Protocol(inputs=(1,), swap_k=1, bootstrap=20), "sface")
    assert (line["own"], line["swapped"], line["margin"]) == pytest.approx((0.6, 0.2, 0.4))
    assert line["identities"] == 1 and line["pairs"] == 1 and line["no_face_rate"] == pytest.approx(3 / 6)
