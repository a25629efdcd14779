"""The TalkingHead-1KH adapter on the real tube lists (MIT, under tests/data/): every tube, its
fields and boxes, and bad lines as rows. No video is decoded: clips whose video is absent come
out as `missing` problems."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mfhq.geometry import resolve
from mfhq.records import Clip
from mfhq.sources import get_source
from mfhq.sources.base import SourceProblem
from source_fixtures import scan as _scan

REAL = Path(__file__).resolve().parents[2] / "data" / "talkinghead-1kh"  # real, MIT: see its README


@pytest.fixture(scope="module")
def th_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("th") / "TalkingHead-1KH"
    (root / "data_list").mkdir(parents=True)
    shutil.copyfile(REAL / "train_video_tubes.head219.txt", root / "data_list" / "train_video_tubes.txt")
    for name in ("val_video_tubes.txt", "small_video_tubes.txt"):
        shutil.copyfile(REAL / name, root / "data_list" / name)
    return root


def test_talkinghead_reads_every_real_tube(th_root):
    clips, problems = _scan("talkinghead1kh", th_root)
    # 219 train + 38 val tubes; small's 4 tubes are train tubes, listed again, not new clips.
    assert clips == {} and len(problems) == 257
    assert {p.status for p in problems.values()} == {"missing"}
    # The val file has no final newline: its last line still counts.
    last = problems["npEcenV-Y08_0011_S99_E1087_L625_T69_R1425_B869"]
    assert "val_video_tubes.txt:38" in last.reason


def test_talkinghead_real_fields(th_root):
    (th_root / "val" / "1min_clips").mkdir(parents=True)
    (th_root / "train" / "1min_clips").mkdir(parents=True)
    for chunk in ("val/1min_clips/1lSejjfNHpw_0075", "train/1min_clips/--Y9imYnfBw_0000"):
        (th_root / f"{chunk}.mp4").write_bytes(b"not decoded here")
    clips, _ = _scan("talkinghead1kh", th_root)
    first, second = clips["1lSejjfNHpw_0075_S0_E728_L671_T47_R1471_B847"], clips["1lSejjfNHpw_0075_S728_E1456_L671_T47_R1471_B847"]
    # A long tube split in two shares its boundary frame; both ends are inclusive.
    assert (first.start_frame, first.end_frame, second.start_frame, second.end_frame) == (0, 728, 728, 1456)
    assert first.split == "val" and first.box_space == (1920, 1080) and first.video_key == "1lSejjfNHpw"
    tube = clips["--Y9imYnfBw_0000_S0_E271_L504_T63_R792_B351"]
    assert tube.video_key == "--Y9imYnfBw" and tube.split == "train"  # listed in small and train
    assert tube.video_path == th_root / "train" / "1min_clips" / "--Y9imYnfBw_0000.mp4"
    # The box is rescaled to the downloaded size with int(), as videos_crop.py does.
    resolved = resolve(tube, 640, 360)
    assert resolved.person_box == (252, 31, 396, 175)
    assert resolved.box_space is None


def test_talkinghead_bad_lines_become_rows(tmp_path):
    (tmp_path / "data_list").mkdir()
    lines = ["abcdefghijk_0001, 720, 1280, 0, 10, 0, 0, 100, 100",
             "garbage",
             "abcdefghijk_0001, 720, 1280, -5, 10, 0, 0, 100, 100",
             "abcdefghijk_0001, 720, 1280, 0, 10, 0, 0, 1300, 100",
             "abcdefghijk_0001, 720, 1280, zero, 10, 0, 0, 100, 100",
             "../../etc_0001, 720, 1280, 0, 10, 0, 0, 100, 100",
             "abcdefghijk_0001, 720, 1280, 0, 10, 0, 0, 100, 100"]
    (tmp_path / "data_list" / "val_video_tubes.txt").write_text("\n".join(lines))
    _, problems = _scan("talkinghead1kh", tmp_path)
    reasons = {p.clip_id: (p.status, p.reason) for p in problems.values()}
    assert reasons["val-line2"][0] == "bad_metadata" and "val_video_tubes.txt:2: expected 9" in reasons["val-line2"][1]
    assert "val_video_tubes.txt:3: empty, negative or reversed frame range -5..10" in reasons["val-line3"][1]
    assert "val_video_tubes.txt:4: box L0 T0 R1300 B100 lies outside the 720x1280 frame" in reasons["val-line4"][1]
    assert "must be integers" in reasons["val-line5"][1]
    assert "unsafe clip id" in reasons["val-line6"][1]
    assert "listed twice" in reasons["abcdefghijk_0001_S0_E10_L0_T0_R100_B100.duplicate"][1]
    assert reasons["abcdefghijk_0001_S0_E10_L0_T0_R100_B100"][0] == "missing"


def test_a_tube_in_train_and_val_is_a_row_not_a_silent_split(tmp_path):
    """A tube in both the train and the val list cannot be put on either side of an identity-disjoint
    split: a bad_metadata row names both lines (as VFHQ's folder/list conflicts do). `small`
    repeats train tubes by design and stays one train clip."""
    (tmp_path / "data_list").mkdir()
    both, small = ("abcdefghijk_0001, 720, 1280, 0, 10, 0, 0, 100, 100",
                   "lmnopqrstuv_0002, 720, 1280, 0, 10, 0, 0, 100, 100")
    (tmp_path / "data_list" / "train_video_tubes.txt").write_text(f"{both}\n{small}\n")
    (tmp_path / "data_list" / "val_video_tubes.txt").write_text(both)
    (tmp_path / "data_list" / "small_video_tubes.txt").write_text(small)
    _, problems = _scan("talkinghead1kh", tmp_path)
    conflict = problems["abcdefghijk_0001_S0_E10_L0_T0_R100_B100"]
    assert conflict.status == "bad_metadata"
    assert "train_video_tubes.txt:1" in conflict.reason and "val_video_tubes.txt:1" in conflict.reason
    assert problems["lmnopqrstuv_0002_S0_E10_L0_T0_R100_B100"].status == "missing"  # small + train: one clip
    assert len(problems) == 2
