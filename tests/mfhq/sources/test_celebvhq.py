"""The CelebV-HQ adapter on SYNTHETIC metadata written from the format description (the dataset
forbids redistribution): clip keys, ranges, the official square, malformed entries as rows."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfhq.geometry import resolve
from mfhq.records import Clip
from mfhq.sources import get_source
from mfhq.sources.base import SourceError, SourceProblem
from source_fixtures import hq_entry as _hq_entry, scan as _scan


def test_celebvhq_clip_keys_ranges_and_the_official_square(tmp_path):
    clips = {"synth_HQ-id_0": _hq_entry(), "synth_HQ-id_0_1": _hq_entry()}
    (tmp_path / "celebvhq_info.json").write_text(json.dumps({"meta_info": {}, "clips": clips}))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "synth_HQ-id.mp4").write_bytes(b"x")
    (tmp_path / "processed").mkdir()
    (tmp_path / "processed" / "synth_HQ-id_0_1.mp4").write_bytes(b"x")
    found, problems = _scan("celebvhq", tmp_path)
    assert problems == {}
    raw, cut = found["synth_HQ-id_0"], found["synth_HQ-id_0_1"]
    # The video key is the ytb_id field: splitting "synth_HQ-id_0_1" on '_' would give "synth".
    assert raw.video_key == cut.video_key == "synth_HQ-id"
    assert (raw.start_sec, raw.end_sec) == (52.72, 56.1) and raw.video_path.name == "synth_HQ-id.mp4"
    # A cut clip is already trimmed and cropped by the official script: no range, no box.
    assert (cut.start_sec, cut.person_box, cut.video_path.parent.name) == (None, None, "processed")
    # widen by 0.02 (clamped): top 0, bottom .62, left .28, right 1 -> 640x360 px: 0, 223, 179, 640;
    # square side 2 * (min(223, 461) // 2) = 222 around the centre (409.5, 111.5).
    assert resolve(raw, 640, 360).person_box == (298.5, 0.5, 520.5, 222.5)


@pytest.mark.parametrize("key,entry,needle", [
    ("synth_HQ-id_1", _hq_entry(bbox=None), "missing field 'bbox'"),
    ("synth_HQ-id_2", {"ytb_id": "synth_HQ-id"}, "missing field 'duration'"),
    ("synth_HQ-id_3", "garbage", "entry is a str"),
    ("synth_HQ-id_4", _hq_entry(duration={"start_sec": -1.0, "end_sec": 2.0}), "reversed range -1.0..2.0"),
    ("synth_HQ-id_5", _hq_entry(duration={"start_sec": 5.0, "end_sec": 2.0}), "reversed range 5.0..2.0"),
    ("synth_HQ-id_6", _hq_entry(bbox={"top": 0.1, "bottom": 1.4, "left": 0.0, "right": 0.5}), "outside the frame"),
    ("synth_HQ-id_7", _hq_entry(ytb_id=None), "missing field 'ytb_id'"),
    ("../synth_HQ-id_8", _hq_entry(), "unsafe clip id"),
    ("/abs/synth_9", _hq_entry(), "unsafe clip id"),
    ("synth_HQ-id_10", _hq_entry(duration={"start_sec": "1", "end_sec": 2.0}), "not a finite number"),
])
def test_celebvhq_malformed_entries_become_rows_naming_the_line(tmp_path, key, entry, needle):
    clips = {"synth_HQ-id_0": _hq_entry(), key: entry}
    text = json.dumps({"clips": clips}, indent=1)
    (tmp_path / "celebvhq_info.json").write_text(text)
    found, problems = _scan("celebvhq", tmp_path)
    assert list(found) == [] and len(problems) == 2  # the good clip is only missing its video
    bad = next(p for p in problems.values() if p.status == "bad_metadata")
    line = text[: text.index(json.dumps(key))].count("\n") + 1
    assert f"celebvhq_info.json:{line}: clip {key!r}: " in bad.reason and needle in bad.reason
    assert ".." not in bad.clip_id and not bad.clip_id.startswith("/")


def test_truncated_json_is_one_row_naming_the_file(tmp_path):
    text = json.dumps({"clips": {"synth_HQ-id_0": _hq_entry()}})
    (tmp_path / "celebvhq_info.json").write_text(text[:-20])
    found, problems = _scan("celebvhq", tmp_path)
    (problem,) = problems.values()
    assert found == {} and problem.status == "bad_metadata" and problem.clip_id == "celebvhq_info.json"
    assert str(tmp_path / "celebvhq_info.json") in problem.reason and "truncated" in problem.reason
    with pytest.raises(SourceError, match="celebvtext_info.json not found"):
        list(get_source("celebvtext", tmp_path).scan())


def test_a_repeated_clip_key_is_a_row_not_a_silent_drop(tmp_path):
    # SYNTHETIC entries under a key shape the README reports twice in lists taken from the file
    # (`-PFdr0SiAEw_0`); json.loads would keep the last entry and drop the first without a word.
    first, last = _hq_entry(ytb_id="-synthHQ_id"), _hq_entry(ytb_id="-synthHQ_id", duration={"start_sec": 9.0, "end_sec": 12.0})
    text = "\n".join(['{"meta_info": {}, "clips": {', f'"-synthHQ_id_0": {json.dumps(first)},',
                      f'"-synthHQ_id_1": {json.dumps(first)},', f'"-synthHQ_id_0": {json.dumps(last)},',
                      f'"-synthHQ_id_0": {json.dumps(last)}', "}}"])
    (tmp_path / "celebvhq_info.json").write_text(text)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "-synthHQ_id.mp4").write_bytes(b"x")
    found, problems = _scan("celebvhq", tmp_path)
    # The last entry is the clip, as the official script (Python's json) reads the file.
    assert sorted(found) == ["-synthHQ_id_0", "-synthHQ_id_1"] and found["-synthHQ_id_0"].start_sec == 9.0
    assert sorted(problems) == ["-synthHQ_id_0.duplicate", "-synthHQ_id_0.duplicate2"]
    once, twice = problems["-synthHQ_id_0.duplicate"], problems["-synthHQ_id_0.duplicate2"]
    assert once.status == twice.status == "bad_metadata"
    assert "celebvhq_info.json:2: clip '-synthHQ_id_0' appears again at line 5" in once.reason
    assert "celebvhq_info.json:4: clip '-synthHQ_id_0' appears again at line 5 (an identical entry)" in twice.reason


def test_a_clip_list_that_cannot_be_read_is_refused_naming_it(tmp_path):
    """An I/O error on the info file (no permission, a failing disk) was a traceback. A read of
    /proc/self/mem at offset 0 fails with EIO for any user, root included, which a chmod cannot."""
    (tmp_path / "celebvhq_info.json").symlink_to("/proc/self/mem")
    with pytest.raises(SourceError, match=rf"celebvhq: {tmp_path / 'celebvhq_info.json'} cannot be read "
                                          r"\(Input/output error\)"):
        list(get_source("celebvhq", tmp_path).scan())
