"""The CelebV-Text adapter on SYNTHETIC metadata written from the format description: its three
layouts, both box kinds, and cut clips named either way."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfhq.geometry import resolve
from mfhq.records import Clip
from mfhq.sources import get_source
from mfhq.sources.base import SourceProblem
from source_fixtures import scan as _scan


def _txt_entry(box: dict) -> dict:
    return {"meta_video_names": "synthTX-_id_0", "ytb_id": "synthTX-_id",
            "duration": {"start_sec": 1.5, "end_sec": 7.0}, "bbox": box, "version": "v0.11"}


NORM = {"top": 0.0, "bottom": 0.5, "left": 0.25, "right": 0.75}
PIXELS = {"top": 0, "bottom": 180, "left": 160, "right": 480}


@pytest.mark.parametrize("layout", ["flat", "clips", "sets"])
def test_celebvtext_reads_all_three_layouts_and_both_box_kinds(tmp_path, layout):
    entries = {"synthTX-_id_0_0.mp4": _txt_entry(NORM), "synthTX-_id_0_1.mp4": _txt_entry(PIXELS)}
    data = {"flat": entries, "clips": {"clips": entries},
            "sets": {"clips_set1": {"synthTX-_id_0_0.mp4": entries["synthTX-_id_0_0.mp4"]},
                     "clips_set2": {"synthTX-_id_0_1.mp4": entries["synthTX-_id_0_1.mp4"]}}}[layout]
    (tmp_path / "celebvtext_info.json").write_text(json.dumps(data, indent=2))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "synthTX-_id.mp4").write_bytes(b"x")
    found, problems = _scan("celebvtext", tmp_path)
    assert problems == {} and sorted(found) == ["synthTX-_id_0_0", "synthTX-_id_0_1"]
    norm, pixels = found["synthTX-_id_0_0"], found["synthTX-_id_0_1"]
    assert norm.video_key == pixels.video_key == "synthTX-_id"
    # The same box, once normalised and once in pixels of a 640x360 video, gives the same crop.
    assert resolve(norm, 640, 360).person_box == resolve(pixels, 640, 360).person_box
    with pytest.raises(ValueError, match="outside the 320x180 frame"):
        resolve(pixels, 320, 180)


def test_celebvtext_finds_cut_clips_named_either_way(tmp_path):
    entries = {"synthTX-_id_0_0.mp4": _txt_entry(NORM), "synthTX-_id_0_1.mp4": _txt_entry(NORM)}
    (tmp_path / "celebvtext_info.json").write_text(json.dumps(entries))
    (tmp_path / "processed").mkdir()
    (tmp_path / "processed" / "synthTX-_id_0_0.mp4").write_bytes(b"x")
    (tmp_path / "processed" / "synthTX-_id_0_1.mp4.mp4").write_bytes(b"x")  # the official script's double suffix
    found, _ = _scan("celebvtext", tmp_path)
    assert {c.extra["layout"] for c in found.values()} == {"cut"} and len(found) == 2
