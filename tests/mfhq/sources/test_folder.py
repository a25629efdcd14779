"""The folder source: videos listed in order, and file names that map to one clip id. Ids stay
readable where unique, get a short hash of the original relative path where not, and two inputs
that still collide each get a row. Real videos written with PyAV (or copied from the bundled
sample), real Parquet read back from `mfhq extract`."""
from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

import av
import duckdb
import numpy as np
import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.records import Clip
from mfhq.sources import get_source
from mfhq.sources.base import MAX_ID_PART, SourceError, SourceProblem
from mfhq.sources.folder import assign_ids, path_hash
from source_fixtures import run_rows_of as _rows, scan_unique as _scan


def test_folder_source_lists_videos_in_order(sample_dir):
    clips = list(get_source("folder", sample_dir / "videos").scan())
    assert [c.clip_id for c in clips] == sorted(c.clip_id for c in clips)
    assert {c.clip_id for c in clips} >= {"astronaut_motion", "corrupt", "empty"}
    with pytest.raises(SourceError, match="not a folder"):
        get_source("folder", sample_dir / "nope")
    with pytest.raises(SourceError, match="unknown source 'vfhq2'"):
        get_source("vfhq2", sample_dir)


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


def test_a_planned_file_keeps_its_id_when_a_colliding_file_arrives(tmp_path):
    """`a_b.mp4` added beside an already processed `a b.mp4` must not rename it: the old file
    would be processed again under a new id, one person becoming two clips."""
    videos, run = tmp_path / "videos", tmp_path / "run"
    videos.mkdir()
    for name in ("a b.mp4", "c.mp4"):
        (videos / name).write_bytes(b"")  # status rows without decoding: a quick run
    args = ["extract", "--root", str(videos), "--out", str(run), "--pipeline", str(SAMPLE_PRESET)]
    run_cli(*args)
    (videos / "a_b.mp4").write_bytes(b"")
    run_cli(*args)
    rows = {Path(r["video_path"]).name: r["clip_id"] for r in _rows(run, "clips", "clip_id")}
    assert len(_rows(run, "clips", "clip_id")) == 3, "each file exactly once"
    assert rows == {"a b.mp4": "a_b", "a_b.mp4": f"a_b-{path_hash(PurePosixPath('a_b.mp4'))}", "c.mp4": "c"}
    assert "already complete: 3 clips" in run_cli(*args).stderr  # a third pass plans nothing


def test_planned_ids_are_kept_and_never_taken_by_another_file():
    rels = [PurePosixPath(p) for p in ("a b.mp4", "a_b.mp4", "new.mp4")]
    ids, problems = assign_ids(rels, {"a b.mp4": "a_b", "gone.mp4": "new"})
    assert problems == {}
    assert ids[rels[0]] == "a_b" and ids[rels[1]] == f"a_b-{path_hash(rels[1])}"
    assert ids[rels[2]] == f"new-{path_hash(rels[2])}"  # a vanished file's id still counts as done
    squatter = PurePosixPath(f"new-{path_hash(rels[2])}.mp4")  # the hashed id is planned already
    _, problems = assign_ids([squatter, rels[2]], {squatter.as_posix(): squatter.stem, "gone.mp4": "new"})
    assert list(problems) == [rels[2]] and f"is also the id of '{squatter.as_posix()}'" in problems[rels[2]]
