"""What every source adapter shares: clip ids are safe paths, and one bad metadata entry (a VFHQ
frame index `inf`, NaN landmarks, a negative FPS, NaN H or W, a dangling meta-file link, a
CelebV-HQ key longer than a file name may be) is a `bad_metadata` row naming the file and line
while the rest of the dataset goes on."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.records import Clip
from mfhq.sources import get_source
from mfhq.sources.base import SourceProblem, safe_clip_id
from source_fixtures import run_rows_of as _rows, scan_unique as _scan


@pytest.mark.parametrize("bad", ["../escape", "a/../../b", "/abs/path", "a//b", "", "a\\b", "a b"])
def test_unsafe_clip_ids_are_refused(bad):
    with pytest.raises(ValueError):
        safe_clip_id(bad)


def test_safe_clip_ids_pass():
    assert safe_clip_id("M2Ohb0FAaJU_1") == "M2Ohb0FAaJU_1"
    assert safe_clip_id("_0tf2n3rlJU_0/part-1.x") == "_0tf2n3rlJU_0/part-1.x"


def _vfhq_meta(frame_lines=None, header=("H: 720", "W: 1280", "FPS: 25.0")) -> str:
    lines = ["Video ID: synthVF_a-1", *header, "", "FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]", ""]
    lines += frame_lines or [f"{f:08d} 0 200 100 100 120 230 150 270 150 250 175 235 200 265 200" for f in range(11, 14)]
    return "\n".join(lines + ["CROP: 100 50 400 350"]) + "\n"


GOOD_LINE = "00000012 0 200 100 100 120 230 150 270 150 250 175 235 200 265 200"
BAD_VFHQ = {  # clip number -> (meta text, the line it names, what it says)
    1: (_vfhq_meta(["inf 0 200 100 100 120 230 150 270 150 250 175 235 200 265 200", GOOD_LINE]), 8,
        "expected finite numbers, got 'inf 0 200"),
    2: (_vfhq_meta([GOOD_LINE, "00000013 0 200 100 100 nan 230 150 270 150 250 175 235 200 265 200"]), 9,
        "expected finite numbers"),
    3: (_vfhq_meta(header=("H: 720", "W: 1280", "FPS: -25")), 4, "FPS is -25; it must be positive"),
    4: (_vfhq_meta(header=("H: nan", "W: 1280", "FPS: 25")), 2, "expected finite numbers, got 'nan'"),
    5: (_vfhq_meta(header=("H: 720", "W: NaN", "FPS: 25")), 3, "expected finite numbers, got 'NaN'"),
    6: (_vfhq_meta([GOOD_LINE.replace("00000012", "12.5")]), 8, "frame index '12.5' is not a whole number"),
}


def _vfhq_root(root: Path) -> Path:
    meta = root / "meta_info" / "train"
    meta.mkdir(parents=True)
    (meta / "Clip+synthVF_a-1+P0+C0+F10-15.txt").write_text(_vfhq_meta())  # the good one
    for n, (text, _, _) in BAD_VFHQ.items():
        (meta / f"Clip+synthVF_a-1+P0+C{n}+F10-15.txt").write_text(text)
    (meta / "Clip+synthVF_a-1+P0+C9+F10-15.txt").symlink_to(root / "gone" / "meta.txt")  # dangling
    return root


def test_each_bad_vfhq_meta_file_is_a_row_naming_the_file_and_line(tmp_path):
    root = _vfhq_root(tmp_path)
    clips, problems = _scan("vfhq", root)
    assert set(clips) == set()  # the good clip has no video here: a `missing` row, not lost
    assert problems["Clip+synthVF_a-1+P0+C0+F10-15"].status == "missing"
    for n, (_, line, needle) in BAD_VFHQ.items():
        problem = problems[f"Clip+synthVF_a-1+P0+C{n}+F10-15"]
        assert problem.status == "bad_metadata"
        assert f"Clip+synthVF_a-1+P0+C{n}+F10-15.txt:{line}: " in problem.reason and needle in problem.reason, problem.reason
    dangling = problems["Clip+synthVF_a-1+P0+C9+F10-15"]
    assert dangling.status == "bad_metadata" and "C9+F10-15.txt: cannot read the meta file (No such file" in dangling.reason


def _hq_entry(ytb_id: str = "synthHQ_a-1") -> dict:
    return {"ytb_id": ytb_id, "duration": {"start_sec": 1.0, "end_sec": 2.0},
            "bbox": {"top": 0.2, "bottom": 0.7, "left": 0.2, "right": 0.7}}


def test_an_over_long_celebvhq_key_is_a_row_and_the_rest_goes_on(tmp_path):
    long_key = "synth" + "x" * 300 + "_0"
    clips = {"synthHQ_a-1_0": _hq_entry(), long_key: _hq_entry(), "synthHQ_a-1_1": _hq_entry("y" * 300),
             "synthHQ_a-1_2": {**_hq_entry(), "duration": {"start_sec": 1.0, "end_sec": float("inf")}}}
    text = json.dumps({"clips": clips}, indent=1)
    (tmp_path / "celebvhq_info.json").write_text(text)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "synthHQ_a-1.mp4").write_bytes(b"stands in for the video")
    found, problems = _scan("celebvhq", tmp_path)
    assert list(found) == ["synthHQ_a-1_0"]
    assert len(problems) == 3 and {p.status for p in problems.values()} == {"bad_metadata"}
    for key, needle in ((long_key, "is too long"), ("synthHQ_a-1_1", "is too long"),
                        ("synthHQ_a-1_2", "duration.end_sec is inf, not a finite number")):
        line = text[: text.index(json.dumps(key))].count("\n") + 1
        (reason,) = [p.reason for p in problems.values() if f"celebvhq_info.json:{line}: " in p.reason]
        assert needle in reason


def test_a_dataset_with_bad_entries_extracts_with_one_row_each(tmp_path):
    """Through `mfhq extract --source all`: every entry of both datasets has its row."""
    root = tmp_path / "all"
    _vfhq_root(root / "VFHQ")
    long_key = "synth" + "x" * 300 + "_0"
    (root / "CelebV-HQ").mkdir(parents=True)
    (root / "CelebV-HQ" / "celebvhq_info.json").write_text(json.dumps({"clips": {long_key: _hq_entry(),
                                                                                 "synthHQ_a-1_0": _hq_entry()}}))
    run = tmp_path / "run"
    result = run_cli("extract", "--source", "all", "--root", str(root), "--out", str(run),
                     "--pipeline", str(SAMPLE_PRESET))
    assert "Traceback" not in result.stderr
    rows = _rows(run, "clips", "source, clip_id")
    statuses = [(r["source"], r["status"]) for r in rows]
    assert statuses.count(("vfhq", "bad_metadata")) == len(BAD_VFHQ) + 1
    assert statuses.count(("vfhq", "missing")) == 1
    assert sorted(s for s in statuses if s[0] == "celebvhq") == [("celebvhq", "bad_metadata"), ("celebvhq", "missing")]
    assert all("meta_info/train/Clip+" in r["reason"] for r in rows if r["source"] == "vfhq")
