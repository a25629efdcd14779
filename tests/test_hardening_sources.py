"""Hardening of the sources (issue 12, items 1 and 9).

1. Two files that map to one clip id: ids stay readable where unique, get a short hash of the
   original relative path where not, and two inputs that still collide each get a row.
9. One bad metadata entry (a VFHQ frame index `inf`, NaN landmarks, a negative FPS, NaN H or W,
   a dangling meta-file link, a CelebV-HQ key longer than a file name may be) is a
   `bad_metadata` row naming the file and line; the rest of the dataset goes on.
Real files throughout: videos written with PyAV (or copied from the bundled sample), real
Parquet read back from `mfhq extract`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath

import av
import duckdb
import numpy as np
import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.records import Clip
from mfhq.sources import get_source
from mfhq.sources.base import MAX_ID_PART, SourceProblem
from mfhq.sources.folder import assign_ids, path_hash


def _tiny_video(path: Path, seed: int, container: str = "mp4") -> None:
    """A real 8-frame 64x64 H.264 video of noise (no face): cheap to run through extract."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w", format="matroska" if container == "mkv" else "mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(8):
            frame = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        out.mux(stream.encode())


def _scan(name: str, root: Path) -> tuple[dict[str, Clip], dict[str, SourceProblem]]:
    clips, problems = {}, {}
    for item in get_source(name, root).scan():
        bucket = clips if isinstance(item, Clip) else problems
        assert item.clip_id not in clips and item.clip_id not in problems, f"two entries share {item.clip_id}"
        bucket[item.clip_id] = item
    return clips, problems


def _rows(run: Path, view: str, order: str) -> list[dict]:
    return duckdb.sql(f"SELECT * FROM read_parquet('{run}/{view}/*.parquet') ORDER BY {order}").to_arrow_table().to_pylist()


# ------------------------------------------------------------------ item 1: clip ids

def test_readable_ids_stay_and_shared_ones_get_a_hash_of_the_path():
    rels = [PurePosixPath(p) for p in ("a b.mp4", "a_b.mp4", "x.mp4", "x.mkv", "日本.mp4", "中国.mp4",
                                       "Y.mp4", "y.mp4", "dir/plain.mp4", "..mp4")]
    ids, problems = assign_ids(rels)
    assert problems == {} and len(set(ids.values())) == len(rels)
    assert ids[PurePosixPath("dir/plain.mp4")] == "dir/plain"            # unique: unchanged
    assert ids[PurePosixPath("..mp4")] == "_"                             # never a '.' path part
    for rel, readable in (("a b.mp4", "a_b"), ("a_b.mp4", "a_b"), ("x.mkv", "x"), ("日本.mp4", "__"), ("Y.mp4", "Y")):
        assert ids[PurePosixPath(rel)] == f"{readable}-{path_hash(PurePosixPath(rel))}"
    assert assign_ids(list(reversed(rels)))[0] == ids                     # stable: order does not matter
    long = PurePosixPath("n" * 250 + ".mp4")
    assert len(assign_ids([long])[0][long]) == MAX_ID_PART


def test_folder_scan_gives_every_file_one_entry_and_rows_for_ids_that_still_collide(tmp_path):
    for n, name in enumerate(["a b.mp4", "a_b.mp4", "q q.mp4", "q_q.mp4", "solo.mp4"]):
        _tiny_video(tmp_path / name, n)
    # A file literally named like the hashed id of `q q.mp4`: the one collision left.
    squatter = f"q_q-{path_hash(PurePosixPath('q q.mp4'))}.mp4"
    _tiny_video(tmp_path / squatter, 9)
    clips, problems = _scan("folder", tmp_path)
    assert len(clips) + len(problems) == 6
    assert {c.video_path.name for c in clips.values()} == {"a b.mp4", "a_b.mp4", "q_q.mp4", "solo.mp4"}
    assert "solo" in clips
    assert len(problems) == 2 and {p.status for p in problems.values()} == {"bad_metadata"}
    reasons = sorted(p.reason for p in problems.values())
    assert reasons[0].startswith(str(tmp_path / "q q.mp4")) and f"is also the id of '{squatter}'" in reasons[0]
    assert reasons[1].startswith(str(tmp_path / squatter)) and "is also the id of 'q q.mp4'" in reasons[1]
    assert _scan("folder", tmp_path)[0].keys() == clips.keys()           # the same ids on every scan


@pytest.fixture(scope="module")
def colliding_run(sample_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A folder whose file names collide after the id mapping, through the real CLI."""
    root = tmp_path_factory.mktemp("colliding") / "videos"
    root.mkdir()
    shutil.copyfile(sample_dir / "videos" / "astronaut_motion.mp4", root / "a b.mp4")
    _tiny_video(root / "a_b.mp4", 0)  # a face clip and a no-face clip: their rows must not mix
    _tiny_video(root / "x.mp4", 1)
    _tiny_video(root / "x.mkv", 2, container="mkv")
    _tiny_video(root / "日本.mp4", 3)
    _tiny_video(root / "中国.mp4", 4)
    run = root.parent / "run"
    run_cli("extract", "--root", str(root), "--out", str(run), "--pipeline", str(SAMPLE_PRESET))
    return root, run


def test_files_whose_ids_collided_each_get_their_own_row(colliding_run):
    root, run = colliding_run
    clips = _rows(run, "clips", "clip_id")
    assert sorted(Path(r["video_path"]).name for r in clips) == sorted(p.name for p in root.iterdir())
    assert len({r["clip_id"] for r in clips}) == 6
    assert {r["status"] for r in clips if not r["video_path"].endswith("a b.mp4")} == {"no_face"}


def test_collided_files_give_the_rows_of_an_uninterrupted_run_on_their_own_names(colliding_run, sample_run):
    """`a b.mp4` (a copy of the sample's astronaut_motion) has exactly that clip's rows."""
    (root, run), name, original = colliding_run, "a b.mp4", "astronaut_motion"
    (mine,) = [r for r in _rows(run, "clips", "clip_id") if Path(r["video_path"]).name == name]
    (theirs,) = [r for r in _rows(sample_run, "clips", "clip_id") if r["clip_id"] == original]
    fields = ("status", "n_frames_read", "n_faces_detected", "n_faces_kept", "fps", "width", "height")
    assert {k: mine[k] for k in fields} == {k: theirs[k] for k in fields}
    assert mine["n_faces_kept"] > 0
    face_fields = ("frame_index", "face_index", "kept", "drop_reason", "bbox", "quality")
    faces = [{k: f[k] for k in face_fields} for f in _rows(run, "faces", "frame_index, face_index")
             if f["clip_id"] == mine["clip_id"]]
    expected = [{k: f[k] for k in face_fields} for f in _rows(sample_run, "faces", "frame_index, face_index")
                if f["clip_id"] == original]
    assert faces == expected
    crops = {f["crop_path"] for f in _rows(run, "faces", "frame_index") if f["clip_id"] == mine["clip_id"] and f["kept"]}
    assert crops and all((run / c).is_file() and f"/{mine['clip_id']}/" in c for c in crops)


# ------------------------------------------------------------------ item 9: bad metadata entries

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
