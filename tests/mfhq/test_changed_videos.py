"""A video replaced under a run after extract read it (a cut-short download fetched again, a
re-encode): a re-run names the clips whose file changed instead of keeping their rows silently,
and `--retry changed` extracts just those again. A copy that only lost its times is not a change."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq import video_file
from mfhq.changed_videos import find_changed
from mfhq.records import Clip
from presets import write_preset


@pytest.fixture(scope="module")
def quick_preset(tmp_path_factory) -> Path:
    preset = tmp_path_factory.mktemp("preset") / "quick.yaml"
    write_preset(preset, {"decode.fps": 1, "run.workers": 1}, base=SAMPLE_PRESET)
    return preset


def _rows(run: Path) -> dict:
    query = (f"SELECT clip_id, status, reason, n_frames_read, video_bytes, video_digest "
             f"FROM read_parquet('{run}/clips/*.parquet') ORDER BY clip_id")
    return {r[0]: r[1:] for r in duckdb.connect().execute(query).fetchall()}


def _qualities(run: Path, clip_id: str) -> list:
    return duckdb.connect().execute(f"SELECT quality FROM read_parquet('{run}/faces/*.parquet') "
                                    f"WHERE clip_id = '{clip_id}' ORDER BY frame_index, face_index").fetchall()


def test_a_rerun_names_a_replaced_video_and_retry_changed_extracts_only_it(sample_dir, quick_preset, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("astronaut_motion", "t1_intruder"):
        shutil.copy(sample_dir / "videos" / f"{name}.mp4", videos / f"{name}.mp4")
    run = tmp_path / "run"
    args = ["extract", "--root", str(videos), "--out", str(run), "--pipeline", str(quick_preset)]
    run_cli(*args)
    first = _rows(run)
    before_faces = _qualities(run, "astronaut_motion")
    size = (videos / "astronaut_motion.mp4").stat().st_size
    assert first["astronaut_motion"][0] == "ok" and first["astronaut_motion"][3] == size
    assert first["astronaut_motion"][4] == video_file.identity(videos / "astronaut_motion.mp4")["video_digest"]

    # Copied without its times: the same file, nothing to say and nothing redone.
    os.utime(videos / "t1_intruder.mp4", ns=(1_000_000_000, 1_000_000_000))
    quiet = run_cli(*args)
    assert "changed since extract read it" not in quiet.stderr and _rows(run) == first

    # The file is replaced by another one (a re-download, a re-encode) of another size.
    other = sample_dir / "videos" / "astronaut_light_blur.mp4"
    shutil.copy(other, videos / "astronaut_motion.mp4")
    new_size = other.stat().st_size
    assert new_size != size
    warned = run_cli(*args)
    assert (f"1 finished clip(s) have a video that changed since extract read it ({videos / 'astronaut_motion.mp4'}: "
            f"{size} bytes when extracted, {new_size} now)") in warned.stderr
    assert "--retry changed" in warned.stderr
    assert _rows(run) == first, "a re-run without --retry changed leaves the finished rows as they are"

    run_cli(*args, "--retry", "changed")
    again = _rows(run)
    assert again["t1_intruder"] == first["t1_intruder"]
    assert again["astronaut_motion"][3:] == (new_size, video_file.identity(other)["video_digest"])
    assert _qualities(run, "astronaut_motion") != before_faces, "its faces are the new file's"
    done = run_cli(*args)
    assert "changed since extract read it" not in done.stderr and _rows(run) == again
    nothing = run_cli(*args, "--retry", "changed")
    assert "no clip has a video changed since it was extracted: nothing to retry" in nothing.stderr


def test_the_difference_reads_a_file_whose_time_changed_at_both_ends(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(bytes(range(256)) * 1024)  # 256 KiB: a head, a middle and a tail
    recorded = video_file.identity(video)
    assert video_file.difference(recorded, video) is None
    os.utime(video, ns=(5, 5))
    assert video_file.difference(recorded, video) is None, "a copy that lost its times is the same file"
    data = bytearray(video.read_bytes())
    data[-1] ^= 0xFF  # same size, another last byte
    video.write_bytes(bytes(data))
    assert "same size, other content" in video_file.difference(recorded, video)
    data[-1] ^= 0xFF
    data[100_000] ^= 0xFF  # between the two ends: not looked at (the price of not hashing every video)
    video.write_bytes(bytes(data))
    assert video_file.difference(recorded, video) is None
    assert video_file.difference(video_file.UNKNOWN, video) is None, "a row that recorded no file"
    video.unlink()
    assert video_file.difference(recorded, video) is None, "a file gone is a retry's `missing`, not a change"
    assert video_file.identity(video) == video_file.UNKNOWN


def test_shards_written_before_run_schema_8_are_counted_not_checked_and_still_retried_by_status(tmp_path):
    (tmp_path / "clips").mkdir()
    old = pa.table({"source": ["folder"], "clip_id": ["a"], "status": ["missing"], "video_path": [str(tmp_path / "a.mp4")]})
    pq.write_table(old, tmp_path / "clips" / "folder-00000.parquet")
    video = tmp_path / "b.mp4"
    video.write_bytes(b"\x00" * 10)
    new = pa.table({"source": ["folder"], "clip_id": ["b"], "status": ["ok"], "video_path": [str(video)],
                    **{k: [v] for k, v in video_file.identity(video).items()}})
    pq.write_table(new, tmp_path / "clips" / "folder-00001.parquet")
    video.write_bytes(b"\x00" * 11)
    found = find_changed(tmp_path, {"folder-00000", "folder-00001"}, {}, {"missing"})
    assert found.unchecked_shards == 1 and found.by_shard == {"folder-00001": {"folder/b"}}
    assert found.with_status == {"folder-00000": {"folder/a"}}, "an old shard's statuses are still read for --retry"
    assert found.examples == [f"{video}: 10 bytes when extracted, 11 now"]
    # The source names another file for the clip now (VFHQ: the raw video, where a cut was read).
    raw = tmp_path / "raw.mp4"
    raw.write_bytes(b"\x00" * 12)
    moved = find_changed(tmp_path, {"folder-00001"}, {"folder/b": Clip("folder", "b", raw, "b")})
    assert moved.examples == [f"{raw}: 10 bytes when extracted, 12 now (extracted from {video})"]
