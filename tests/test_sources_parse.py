"""The source adapters' parsers: real TalkingHead-1KH lists, SYNTHETIC CelebV-HQ / CelebV-Text /
VFHQ metadata written from the format descriptions (those datasets forbid redistribution).

No video is decoded here: clips whose video is absent come out as `missing` problems, which
is itself behaviour under test.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mfhq.records import Clip
from mfhq.sources import get_source
from mfhq.geometry import resolve
from mfhq.sources.base import SourceError, SourceProblem, safe_clip_id

REAL = Path(__file__).resolve().parent / "data" / "talkinghead-1kh"  # real, MIT: see its README


def _scan(name: str, root: Path) -> tuple[dict[str, Clip], dict[str, SourceProblem]]:
    clips, problems = {}, {}
    for item in get_source(name, root).scan():
        (clips if isinstance(item, Clip) else problems)[item.clip_id] = item
    return clips, problems


# ---------------------------------------------------------------- TalkingHead-1KH (real lists)

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


# ---------------------------------------------------------------- CelebV-HQ (SYNTHETIC)

def _hq_entry(**changes) -> dict:
    entry = {"ytb_id": "synth_HQ-id", "duration": {"start_sec": 52.72, "end_sec": 56.1},
             "bbox": {"top": 0.0, "bottom": 0.6, "left": 0.3, "right": 1.0}, "version": "v0.1"}
    entry.update(changes)
    return entry


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


# ---------------------------------------------------------------- CelebV-Text (SYNTHETIC)

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


# ---------------------------------------------------------------- VFHQ (SYNTHETIC)

def _vfhq_meta(frames=range(11, 14), crop="100 50 400 350", header=True) -> str:
    lines = ["Video ID: synthVF_a-1", "H: 720", "W: 1280", "FPS: 25.0", ""] if header else []
    lines += ["FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]", ""]
    for f in frames:
        lines.append(f"{f:08d} 0 200 100 100 120 230 150 270 150 250 175 235 200 265 200")
    return "\n".join(lines + [f"CROP: {crop}"]) + "\n"


def _vfhq_root(tmp_path: Path, metas: dict[str, str]) -> Path:
    for rel, text in metas.items():
        (tmp_path / "meta_info" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "meta_info" / rel).write_text(text)
    return tmp_path


def test_vfhq_meta_ranges_annotations_and_splits(tmp_path):
    root = _vfhq_root(tmp_path, {"train/Clip+synthVF_a-1+P2+C0+F10-15.txt": _vfhq_meta(),
                                 "Clip+synthVF_a-1+P0+C1+F100-300.txt": _vfhq_meta(range(101, 103))})
    (root / "id_test.txt").write_text("Clip+synthVF_a-1+P0+C1+F100-300\n")
    (root / "videos").mkdir()
    (root / "videos" / "synthVF_a-1.mp4").write_bytes(b"x")
    (root / "clips").mkdir()
    (root / "clips" / "Clip+synthVF_a-1+P0+C1+F100-300.mp4").write_bytes(b"x")
    found, problems = _scan("vfhq", root)
    assert problems == {}
    raw, cut = found["Clip+synthVF_a-1+P2+C0+F10-15"], found["Clip+synthVF_a-1+P0+C1+F100-300"]
    assert (raw.split, cut.split, raw.video_key) == ("train", "test", "synthVF_a-1")
    # The F bounds are exclusive: frames 11..14 of the source video.
    assert (raw.start_frame, raw.end_frame) == (11, 14)
    assert raw.person_box == (100, 50, 400, 350) and raw.box_space == (1280, 720)
    assert raw.annotations.frames == (11, 12, 13) and raw.annotations.boxes[0] == (200, 100, 300, 220)
    # Rescaled to a 640x360 download: every coordinate halves.
    resolved = resolve(raw, 640, 360, fps=25.0)
    assert resolved.annotations.landmarks[0][:4] == (115, 75, 135, 75) and resolved.person_box == (50, 25, 200, 175)
    assert resolved.annotations.frames == (11, 12, 13) and (resolved.start_frame, resolved.end_frame) == (11, 14)
    # A download at 50 fps holds the meta file's 25 fps frame n at frame 2n.
    retimed = resolve(raw, 640, 360, fps=50.0)
    assert retimed.annotations.frames == (22, 24, 26) and (retimed.start_frame, retimed.end_frame) == (22, 28)
    # A cut clip starts at frame start+1 and shows the CROP region only.
    assert cut.start_frame is None and cut.annotations.frames == (0, 1)
    assert cut.annotations.boxes[0] == (100, 50, 200, 170) and cut.box_space == (300, 300)


@pytest.mark.parametrize("name,text,needle", [
    ("Clip+synthVF_a-1+P0+C0+F10-15", _vfhq_meta().replace("H: 720\n", ""), "no H line"),
    ("Clip+synthVF_a-1+P0+C0+F10-15", _vfhq_meta() + "garbage here\n", ":12: expected numbers"),
    ("Clip+synthVF_a-1+P0+C0+F10-15", _vfhq_meta()[:-40], "a frame line needs 16 values"),
    ("Clip+synthVF_a-1+P0+C0+F10-15", _vfhq_meta().rsplit("CROP", 1)[0], "no CROP line"),
    ("Clip+synthVF_a-1+P0+C0+F15-10", _vfhq_meta(), "empty or reversed frame range F15-10"),
    ("Clip+synthVF_a-1+P0+C0+F10-11", _vfhq_meta(), "empty or reversed frame range F10-11"),
    ("Clip+synthVF_a-1+P0+C0+F10-15", _vfhq_meta(crop="100 50 1400 350"), "lies outside the 720x1280 frame"),
    ("Clip+synthVF+P0+C0+F10-15", _vfhq_meta(), "the name is not"),
    ("Clip+synthVF_b-2+P0+C0+F10-15", _vfhq_meta(), "Video ID 'synthVF_a-1' differs"),
])
def test_vfhq_malformed_meta_files_become_rows_naming_the_file(tmp_path, name, text, needle):
    root = _vfhq_root(tmp_path, {f"train/{name}.txt": text})
    found, problems = _scan("vfhq", root)
    (problem,) = problems.values()
    assert found == {} and problem.status == "bad_metadata"
    assert f"{name}.txt" in problem.reason and needle in problem.reason


def test_vfhq_header_separators_and_frame_ids_as_file_names(tmp_path):
    text = _vfhq_meta().replace("H: 720", "H\t720").replace("W: 1280", "W:1280").replace("00000012 ", "00000012.png ")
    root = _vfhq_root(tmp_path, {"train/Clip+synthVF_a-1+P2+C0+F10-15.txt": text})
    (root / "videos").mkdir()
    (root / "videos" / "synthVF_a-1.mp4").write_bytes(b"not decoded here")
    (clip,) = _scan("vfhq", root)[0].values()
    assert clip.box_space == (1280, 720) and clip.annotations.frames == (11, 12, 13)


def test_vfhq_names_with_plus_are_safe_ids_and_traversal_is_not():
    assert safe_clip_id("Clip+XZ2qCoO0gbU+P0+C2+F157105-157607")
    with pytest.raises(ValueError):
        safe_clip_id("Clip+../../x")


# ---------------------------------------------------------------- all

def test_all_finds_each_dataset_by_its_folder_name(tmp_path):
    (tmp_path / "CelebV-HQ").mkdir()
    (tmp_path / "CelebV-HQ" / "celebvhq_info.json").write_text(json.dumps({"clips": {"synth_HQ-id_0": _hq_entry()}}))
    _vfhq_root(tmp_path / "VFHQ", {"train/Clip+synthVF_a-1+P2+C0+F10-15.txt": _vfhq_meta()})
    items = list(get_source("all", tmp_path).scan())
    assert sorted(i.key if isinstance(i, Clip) else f"{i.source}/{i.clip_id}" for i in items) == [
        "celebvhq/synth_HQ-id_0", "vfhq/Clip+synthVF_a-1+P2+C0+F10-15"]
    with pytest.raises(SourceError, match="no dataset folder"):
        list(get_source("all", tmp_path / "VFHQ" / "meta_info").scan())
    # A dataset folder without its metadata is one row; the others are still read.
    (tmp_path / "talkinghead1kh").mkdir()
    items = {i.source: i for i in get_source("all", tmp_path).scan()}
    assert items["talkinghead1kh"].status == "bad_metadata" and "no <split>_video_tubes.txt" in items["talkinghead1kh"].reason
    assert items["celebvhq"].clip_id == "synth_HQ-id_0" and items["vfhq"].clip_id.startswith("Clip+")


# ---------------------------------------------------------------- the paper's preset (parsed only)

def test_paper_preset_names_the_paper_sources_models_and_thresholds():
    from mfhq.config import load_pipeline
    from mfhq.sources import source_names

    cfg = load_pipeline(Path(__file__).resolve().parents[1] / "pipelines" / "paper.yaml")
    assert sorted(cfg.sources.names) == ["celebvhq", "celebvtext", "talkinghead1kh", "vfhq"]
    assert set(cfg.sources.names) <= set(source_names())
    assert (cfg.detect.backend, cfg.embed.backend, cfg.pose.backend, cfg.quality.backend, cfg.parsing.backend) == (
        "scrfd", "arcface", "6drepnet", "topiq-nr-face", "facexlib-parsenet")
    assert (cfg.align.template, cfg.align.size, cfg.align.min_face_px) == ("arcface", 448, 448)
    assert cfg.detect.use_source_annotations and cfg.detect.verify_every > 0


def test_the_same_clip_id_in_two_sources_never_collides():
    from mfhq.extract import plan_shards

    same = [Clip(name, "abcdefghijk_0_1", Path("x.mp4"), "abcdefghijk") for name in ("celebvhq", "celebvtext")]
    assert plan_shards(same, shard_size=8) == {"celebvhq-00000": ["celebvhq/abcdefghijk_0_1"],
                                               "celebvtext-00000": ["celebvtext/abcdefghijk_0_1"]}
