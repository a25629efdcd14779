"""The VFHQ adapter on SYNTHETIC meta files written from the format description: ranges,
annotations, splits, malformed files as rows, header variants and ids with `+`."""
from __future__ import annotations

import pytest

from mfhq.geometry import resolve
from mfhq.sources.base import safe_clip_id
from source_fixtures import scan as _scan, vfhq_meta as _vfhq_meta, vfhq_root as _vfhq_root


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
    assert (raw.person_key, cut.person_key) == ("P2", "P0")  # the person index within the video
    # The F bounds are exclusive: frames 11..14 of the source video.
    assert (raw.start_frame, raw.end_frame) == (11, 14)
    assert raw.person_box == (100, 50, 400, 350) and raw.box_space == (1280, 720)
    assert raw.annotations.frames == (11, 12, 13) and raw.annotations.boxes[0] == (200, 100, 300, 220)
    # Rescaled to a 640x360 download: every coordinate halves.
    resolved = resolve(raw, 640, 360, fps=25.0)
    assert resolved.annotations.landmarks[0][:4] == (115, 75, 135, 75) and resolved.person_box == (50, 25, 200, 175)
    assert resolved.annotations.frames == (11, 12, 13) and (resolved.start_frame, resolved.end_frame) == (11, 14)
    # A download at 50 fps holds the meta file's 25 fps frame n at frames 2n and 2n + 1.
    retimed = resolve(raw, 640, 360, fps=50.0)
    assert retimed.annotations.frames == (22, 24, 26) and (retimed.start_frame, retimed.end_frame) == (22, 29)
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


def test_a_listed_clip_without_its_meta_file_is_a_row(tmp_path):
    # SYNTHETIC names. The id lists name official meta files: a name whose file is absent is a
    # clip that cannot be made, and must say so rather than vanish.
    root = _vfhq_root(tmp_path, {"Clip+synthVF_a-1+P0+C0+F10-15.txt": _vfhq_meta()})
    (root / "id_train.txt").write_text("Clip+synthVF_a-1+P0+C0+F10-15\n")
    (root / "id_test.txt").write_text("\nClip+synthVF_a-1+P1+C0+F10-200\n")
    (root / "videos").mkdir()
    (root / "videos" / "synthVF_a-1.mp4").write_bytes(b"not decoded here")
    found, problems = _scan("vfhq", root)
    assert found["Clip+synthVF_a-1+P0+C0+F10-15"].split == "train"
    (problem,) = problems.values()
    assert (problem.clip_id, problem.status, problem.split, problem.video_key) == (
        "Clip+synthVF_a-1+P1+C0+F10-200", "missing", "test", "synthVF_a-1")
    assert f"{root / 'id_test.txt'}:2: clip 'Clip+synthVF_a-1+P1+C0+F10-200' is listed, but no meta file" in problem.reason


@pytest.mark.parametrize("folder,lists,named", [
    ("train/", {"test": ["Clip+synthVF_a-1+P0+C0+F10-15"]}, ["it sits in train/, but", "id_test.txt:1 lists it as test"]),
    ("test/", {"train": ["", "Clip+synthVF_a-1+P0+C0+F10-15"]}, ["it sits in test/, but", "id_train.txt:2 lists it as train"]),
    ("", {"train": ["Clip+synthVF_a-1+P0+C0+F10-15"], "test": ["Clip+synthVF_a-1+P0+C0+F10-15"]},
     ["id_train.txt:1 lists it as train", "id_test.txt:1 lists it as test"]),
])
def test_a_clip_whose_folder_and_id_lists_disagree_is_a_row_naming_both(tmp_path, folder, lists, named):
    # SYNTHETIC names. The folder and EFHQ's lists agree on real files; a contradiction cannot
    # be settled here (a misplaced file or an edited list), and a test clip taken as train would
    # leak into training under `split: official`: the clip is a row, not a clip of either split.
    name = "Clip+synthVF_a-1+P0+C0+F10-15"
    root = _vfhq_root(tmp_path, {f"{folder}{name}.txt": _vfhq_meta(),
                                 "train/Clip+synthVF_a-1+P1+C0+F10-15.txt": _vfhq_meta()})
    for split, lines in lists.items():
        (root / f"id_{split}.txt").write_text("\n".join(lines + ["Clip+synthVF_a-1+P1+C0+F10-15"] * (split == "train")) + "\n")
    (root / "videos").mkdir()
    (root / "videos" / "synthVF_a-1.mp4").write_bytes(b"not decoded here")
    found, problems = _scan("vfhq", root)
    assert list(found) == ["Clip+synthVF_a-1+P1+C0+F10-15"] and found["Clip+synthVF_a-1+P1+C0+F10-15"].split == "train"
    (problem,) = problems.values()
    assert (problem.clip_id, problem.status) == (name, "bad_metadata")
    assert f"{root / 'meta_info' / folder / name}.txt: contradictory split" in problem.reason
    assert all(text in problem.reason for text in named), problem.reason


def test_a_name_in_both_lists_without_its_meta_file_is_one_row_of_no_split(tmp_path):
    root = _vfhq_root(tmp_path, {"train/Clip+synthVF_a-1+P0+C0+F10-15.txt": _vfhq_meta()})
    for split in ("train", "test"):
        (root / f"id_{split}.txt").write_text("Clip+synthVF_a-1+P1+C0+F10-200\n")
    (root / "videos").mkdir()
    (root / "videos" / "synthVF_a-1.mp4").write_bytes(b"not decoded here")
    (problem,) = _scan("vfhq", root)[1].values()
    assert (problem.status, problem.split) == ("missing", None)
    assert f"{root / 'id_train.txt'}:1, {root / 'id_test.txt'}:1: clip" in problem.reason


@pytest.mark.parametrize("folder", ["cropped_videos", "data/cropped_videos"])
def test_a_vfhq_downloader_cut_is_read_where_the_raw_video_is_not(tmp_path, folder):
    # yunyu/vfhq-downloader's crop_clips.py names its cut without the F range and writes it to
    # data/cropped_videos/ of its checkout (meta_info/ beside data/); frames start+1 .. end-2.
    name = "Clip+synthVF_a-1+P2+C0+F10-15"
    root = _vfhq_root(tmp_path, {f"train/{name}.txt": _vfhq_meta(range(11, 15))})
    cut = root / folder / "Clip+synthVF_a-1+P2+C0.mp4"
    cut.parent.mkdir(parents=True)
    cut.write_bytes(b"not decoded here")
    clip = _scan("vfhq", root)[0][name]
    assert (clip.video_path, clip.extra["layout"], clip.geometry, clip.split) == (cut, "downloader-cut", "vfhq-downloader", "train")
    assert (clip.start_frame, clip.end_frame, clip.frame_fps) == (None, None, 25.0)
    # Source frames 11, 12, 13 are the cut's 0, 1, 2; 14 is not in it. Boxes stay in the meta
    # file's pixels, the CROP beside them, for the rule that sees the cut's size.
    assert clip.annotations.frames == (0, 1, 2) and clip.annotations.boxes[0] == (200, 100, 300, 220)
    assert (clip.person_box, clip.box_space) == ((100, 50, 400, 350), (1280, 720))
    # The raw download wins where it is there too (full resolution, exact frames), in the
    # downloader's own data/youtube_videos/ as well.
    raw = root / "data" / "youtube_videos" / "synthVF_a-1.webm"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_bytes(b"not decoded here")
    clip = _scan("vfhq", root)[0][name]
    assert (clip.video_path, clip.extra["layout"], clip.geometry, clip.start_frame) == (raw, "raw", "scaled", 11)


def test_a_vfhq_downloader_cut_shared_by_two_meta_files_is_a_row_for_each(tmp_path):
    # Two clips of person 2 numbered C0 (different F ranges): the downloader writes the first it
    # meets under the shorter name and skips the other, so which one the cut holds cannot be told.
    # It writes P and C as the numbers it read: P03 is P3, a cut of its own.
    shared, other, alone, padded = ("Clip+synthVF_a-1+P2+C0+F10-15", "Clip+synthVF_a-1+P2+C0+F100-300",
                                    "Clip+synthVF_a-1+P2+C1+F10-15", "Clip+synthVF_a-1+P03+C00+F10-15")
    root = _vfhq_root(tmp_path, {f"train/{shared}.txt": _vfhq_meta(), f"train/{other}.txt": _vfhq_meta(range(101, 103)),
                                 f"train/{alone}.txt": _vfhq_meta(), f"train/{padded}.txt": _vfhq_meta()})
    (root / "cropped_videos").mkdir()
    for cut in ("Clip+synthVF_a-1+P2+C0.mp4", "Clip+synthVF_a-1+P2+C1.mp4", "Clip+synthVF_a-1+P3+C0.mp4"):
        (root / "cropped_videos" / cut).write_bytes(b"not decoded here")
    found, problems = _scan("vfhq", root)
    assert sorted(found) == sorted([alone, padded]) and {c.extra["layout"] for c in found.values()} == {"downloader-cut"}
    assert found[padded].video_path == root / "cropped_videos" / "Clip+synthVF_a-1+P3+C0.mp4"
    assert {p.clip_id: p.status for p in problems.values()} == {shared: "bad_metadata", other: "bad_metadata"}
    reason = problems[shared].reason
    assert reason.startswith(f"{root / 'meta_info' / 'train' / shared}.txt: the cut clip {root / 'cropped_videos'}/Clip+synthVF_a-1+P2+C0.mp4")
    assert f"could be this clip or {other}.txt" in reason and problems[shared].video_key == "synthVF_a-1"
    # With the raw download there is nothing to guess (and it wins over the unambiguous cut too).
    (root / "videos").mkdir()
    (root / "videos" / "synthVF_a-1.mp4").write_bytes(b"not decoded here")
    found, problems = _scan("vfhq", root)
    assert problems == {} and sorted(found) == sorted([shared, other, alone, padded])
    assert {c.extra["layout"] for c in found.values()} == {"raw"}


def test_a_vfhq_clip_with_no_video_names_every_place_looked(tmp_path):
    root = _vfhq_root(tmp_path, {"train/Clip+synthVF_a-1+P2+C0+F10-15.txt": _vfhq_meta()})
    (problem,) = _scan("vfhq", root)[1].values()
    assert problem.status == "missing" and "youtube_videos/, data/youtube_videos/" in problem.reason
    assert problem.reason.endswith("nor the cut Clip+synthVF_a-1+P2+C0.mp4 in cropped_videos/, data/cropped_videos/")
