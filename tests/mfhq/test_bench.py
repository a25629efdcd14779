"""`mfhq bench` runs on its own generated 1080p clips (a large face, bounded chunks) and reports
decode, stages, their ratio and the worker's memory."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.benchclips import make_clips
from mfhq.config import DecodeConfig, usable_cores
from mfhq.decode import CHUNK_BYTES, ClipDecoder
from mfhq.models import create_backend
from mfhq.geometry import box_iou


def _detector(working_size: int):
    backend = create_backend("detector", "yunet-dlib68", working_size=working_size)
    backend.setup()
    return backend


@pytest.fixture(scope="module")
def clips_1080p(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench-clips")
    make_clips(out, 1, "1080p", seconds=0.6)
    return out


def test_bench_clips_are_1080p_with_a_large_face_and_chunks_stay_bounded(clips_1080p):
    index = json.loads((clips_1080p / "clips.json").read_text())
    (entry,) = index["clips"]
    decoder = ClipDecoder(DecodeConfig(chunk_frames=32))
    info = decoder.open(clips_1080p / entry["file"])
    assert (info.width, info.height, info.n_frames) == (1920, 1080, entry["n_frames"])
    chunks = list(decoder.chunks(clips_1080p / entry["file"], list(range(info.n_frames))))
    decoder.close()
    assert all(c.frames.nbytes <= CHUNK_BYTES for c in chunks) and sum(len(c.frames) for c in chunks) == info.n_frames
    widths = [b[2] - b[0] for b in entry["face_boxes"].values()]
    assert 450 < min(widths) and max(widths) < 750
    found = _detector(640).detect([chunks[0].frames[0]])[0]
    assert len(found.scores) == 1
    assert box_iou(np.asarray(entry["face_boxes"]["0"], np.float64), found.boxes.astype(np.float64))[0] > 0.6
    # Encoded as ffmpeg's command line encodes: one slice per frame, so a decoder gets one core
    # per stream as with the sources' clips (slices spread over threads would speed decode-only).
    assert _slices_per_frame(clips_1080p / entry["file"]) == {1}


def _slices_per_frame(path: Path) -> set[int]:
    """The number of coded slices (H.264 NAL units of type 1 or 5) in each packet of an MP4."""
    import av

    counts = set()
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            data, pos, slices = bytes(packet), 0, 0
            while pos + 4 <= len(data):  # MP4 stores NAL units behind 4-byte big-endian lengths
                size = int.from_bytes(data[pos:pos + 4], "big")
                slices += (data[pos + 4] & 0x1F) in (1, 5)
                pos += 4 + size
            if data:
                counts.add(slices)
    return counts


def test_bench_reports_decode_stages_ratio_and_worker_rss(clips_1080p, tmp_path):
    result = json.loads(run_cli("bench", "--root", str(clips_1080p), "--out", str(tmp_path / "run"),
                                "--pipeline", str(SAMPLE_PRESET), "--json").stdout)
    assert result["clips"] == 1 and result["status"] == {"ok": 1}
    assert result["faces_kept"] == result["sampled_frames"] > 0  # the one face, in every sampled frame
    assert {"decode", "detect", "embed", "quality"} <= set(result["stages"])
    assert result["stages"]["detect"]["ms_per_face"] > 0
    assert 0 < result["ratio_stage_time"] and 0 < result["ratio_wall"]
    before, after = result["decode_only"]["wall_s_before_and_after"]
    assert before > 0 and after > 0
    assert result["decode_only"]["wall_s"] == pytest.approx((before + after) / 2, abs=2e-3)
    assert result["peak_rss_worker_mib"] > 100
    # CPU beside wall: with decode-ahead a worker may keep more than one core busy. The preset
    # leaves it to auto: on for 1 worker where there is a core to spare.
    assert result["decode_ahead"] == "auto" and result["reads_ahead"] == (usable_cores() > 1)
    assert result["decode_only"]["cpu_s"] > 0 and result["extract"]["cpu_s"] > result["decode_only"]["cpu_s"]
    assert result["extract"]["cores_busy"] == pytest.approx(result["extract"]["cpu_s"] / result["extract"]["wall_s"])


def test_bench_refuses_an_out_folder_it_did_not_make(tmp_path):
    finished = tmp_path / "runs" / "sample"  # a finished extract run, or anyone's folder
    (finished / "faces").mkdir(parents=True)
    (finished / "run.json").write_text('{"state": "complete"}')
    (finished / "faces" / "s-00000.parquet").write_bytes(b"rows")
    before = sorted(p.relative_to(finished) for p in finished.rglob("*"))
    result = run_cli("bench", "--root", str(tmp_path), "--out", str(finished), check=False)
    assert result.returncode == 2
    assert f"--out {finished}: not a scratch folder made by `mfhq bench`" in result.stderr
    assert "choose another --out, or remove this folder yourself" in result.stderr
    assert sorted(p.relative_to(finished) for p in finished.rglob("*")) == before
    assert (finished / "run.json").read_text() == '{"state": "complete"}'
    # the profile's folder (OUT-profile) is scratch too, checked before any work
    (tmp_path / "new-profile").mkdir()
    (tmp_path / "new-profile" / "notes.txt").write_text("mine")
    result = run_cli("bench", "--root", str(tmp_path), "--out", str(tmp_path / "new"), "--profile", check=False)
    assert result.returncode == 2 and f"{tmp_path / 'new-profile'}: not a scratch folder" in result.stderr
    assert (tmp_path / "new-profile" / "notes.txt").read_text() == "mine" and not (tmp_path / "new").exists()


def test_bench_replaces_its_own_scratch_folder_and_extract_accepts_it(tmp_path):
    from mfhq.bench import replace_scratch
    from mfhq.checks import check_run_folder

    out = tmp_path / "bench"
    replace_scratch(out)  # new: made and marked
    check_run_folder(out)  # extract runs in it
    (out / "faces").mkdir()
    (out / "faces" / "old.parquet").write_bytes(b"an earlier bench's rows")
    (out / "run.json").write_text("{}")
    replace_scratch(out)  # made by bench: emptied, still marked
    assert [p.name for p in out.iterdir()] == [".mfhq-bench-scratch"]
    empty = tmp_path / "empty"
    empty.mkdir()
    replace_scratch(empty)  # an empty folder holds nothing to lose
    assert (empty / ".mfhq-bench-scratch").is_file()


def test_bench_says_a_failed_run_or_a_bad_preset_in_one_line(tmp_path):
    no_videos = tmp_path / "no-videos"  # a folder, but nothing in it to measure
    no_videos.mkdir()
    result = run_cli("bench", "--root", str(no_videos), "--out", str(tmp_path / "run"), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--root {no_videos}: no video files" in result.stderr
    result = run_cli("bench", "--root", str(no_videos), "--out", str(tmp_path / "run"), "--pipeline", "nosuch",
                     check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "pipeline preset not found: nosuch" in result.stderr


def test_decode_only_measures_the_clips_extract_runs(clips_1080p, tmp_path):
    # .m4v is a video to the folder source: extract runs it, so decode-only must decode it too,
    # or video seconds and both ratios would set one set of clips against another's time
    import av

    root = tmp_path / "videos"
    root.mkdir()
    (clip,) = clips_1080p.glob("bench-*.mp4")
    for name in ("a.mp4", "b.m4v"):
        (root / name).symlink_to(clip)
    result = json.loads(run_cli("bench", "--root", str(root), "--out", str(tmp_path / "run"),
                                "--pipeline", str(SAMPLE_PRESET), "--json").stdout)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        seconds = stream.frames / float(stream.average_rate)
    assert result["video_seconds"] == pytest.approx(2 * seconds, abs=0.01)
    assert result["clips"] == result["decode_only"]["clips"] == 2


@pytest.mark.parametrize("args, message", [
    (["--make-clips", "-1"], "Invalid value for '--make-clips': Input should be greater than or equal to 0"),
    (["--make-clips", "1", "--seconds", "0"], "--seconds 0.0: the length of each generated clip must be more than 0"),
    (["--make-clips", "1", "--workers", "0"], "Invalid value for '--workers': Input should be greater than or equal to 1")])
def test_bench_refuses_a_count_or_length_out_of_range_before_any_clip(tmp_path, args, message):
    """Before: --make-clips -1 ended in a ValueError traceback, --seconds 0 rendered and measured a
    clip anyway, and --workers 0 was refused only after the clips were rendered."""
    clips = tmp_path / "clips"
    result = run_cli("bench", "--root", str(clips), "--out", str(tmp_path / "run"), *args, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    assert not clips.exists()


def test_a_clips_index_cut_short_is_rendered_again_not_a_traceback(tmp_path):
    out = tmp_path / "bench-clips"
    (first,) = make_clips(out, 1, "1080p", seconds=0.2)
    text = (out / "clips.json").read_text()
    (out / "clips.json").write_text(text[: len(text) // 2])  # as a write killed part way leaves it
    assert make_clips(out, 1, "1080p", seconds=0.2) == [first]
    index = json.loads((out / "clips.json").read_text())
    assert [entry["file"] for entry in index["clips"]] == [first.name] and index["seconds"] == 0.2


def test_a_bench_killed_as_it_empties_its_scratch_folder_leaves_one_the_next_bench_replaces(tmp_path):
    """bench empties its --out under the run lock; killed (SIGKILL: the lock stays, stale) right
    after the emptying, before it lets go of the lock, its folder is still its own scratch folder:
    the next bench takes the stale lock over and replaces it (before, the emptying removed the
    scratch mark too, and the folder, holding only the stale lock, was refused as someone's)."""
    import os
    import signal

    from mfhq.bench import replace_scratch
    from mfhq.plan import RunLock

    out = tmp_path / "bench"
    replace_scratch(out)
    (out / "faces").mkdir()
    (out / "faces" / "old.parquet").write_bytes(b"an earlier bench's rows")
    (out / "run.json").write_text("{}")
    child = os.fork()
    if child == 0:  # the bench killed once the folder is emptied, its lock still held
        try:
            RunLock.release = lambda lock: os.kill(os.getpid(), signal.SIGKILL)
            replace_scratch(out)
        finally:
            os._exit(1)  # not reached: killed in release
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert (out / "lock").is_file() and not (out / "run.json").exists()  # emptied, the lock left stale
    replace_scratch(out)  # taken as bench's: the stale lock taken over, the folder replaced
    assert [p.name for p in out.iterdir()] == [".mfhq-bench-scratch"]


def test_a_render_into_a_file_is_refused_in_one_line(tmp_path):
    """`--make-clips N --root FILE`: one line naming the file, nothing written (before: the
    traceback of the folder's mkdir)."""
    afile = tmp_path / "clips"
    afile.write_text("mine")
    result = run_cli("bench", "--make-clips", "1", "--seconds", "0.2", "--root", str(afile), "--out",
                     str(tmp_path / "run"), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"--root {afile}: is a file; give the folder to render the clips into" in result.stderr
    assert afile.read_text() == "mine" and not (tmp_path / "run").exists()
