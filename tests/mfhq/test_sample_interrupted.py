"""A `mfhq sample` killed part way is never read as a whole folder of videos: `extract --root`
(the sample folder or its videos/) and `bench` refuse it in one line, naming the folder and what
to run; the sample written again is whole, without the temporary files the killed one left, and
extract reads it. Real processes (SIGKILL), real videos; the folder source never takes a "."-named
file (a write under way) for a clip."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import av
import duckdb
import numpy as np
import pytest

from conftest import REPO, SAMPLE_PRESET, run_cli
from mfhq.records import Clip
from mfhq.sources import get_source


def _files(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _killed_sample(out) -> bool:
    """`mfhq sample` SIGKILLed once its first clip is whole and the second is being written; False
    where it finished before this process looked again (a loaded machine)."""
    process = subprocess.Popen([sys.executable, "-m", "mfhq", "sample", "--out", str(out)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = out / "videos" / ".astronaut_light_blur.partial.mp4"
    while process.poll() is None and not second.exists():
        time.sleep(0.01)  # polling only: no bound on how long the render takes
    if process.poll() is not None:
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (out / "videos" / "astronaut_motion.mp4").is_file() and not (out / "sample.json").exists()
    return True


def test_an_interrupted_sample_is_refused_by_extract_and_bench_until_written_again(sample_dir, tmp_path):
    made = tmp_path / "sample"
    for _ in range(5):
        if _killed_sample(made):
            break
        shutil.rmtree(made)
    else:
        pytest.fail("the sample finished five times before it could be stopped part way")
    for root in (made, made / "videos"):
        run = tmp_path / f"run-{root.name}"
        result = run_cli("extract", "--root", str(root), "--out", str(run), "--pipeline", str(SAMPLE_PRESET),
                         check=False)
        assert result.returncode == 2, result.stdout + result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"{made}: a sample that `mfhq sample` has not finished" in errors[0], errors[0]
        assert f"run `mfhq sample --out {made}` again to write it whole" in errors[0], errors[0]
        assert not run.exists()  # refused before the run folder was made
    bench = run_cli("bench", "--root", str(made / "videos"), "--out", str(tmp_path / "bench"), check=False)
    assert bench.returncode == 2 and f"{made}: a sample that `mfhq sample` has not finished" in bench.stderr

    # A kill inside an atomic write (mfhq.manifest.io: a mkstemp name, renamed when whole) leaves its
    # temporary file too; its window is too short to hit, so these are put where such a kill leaves them.
    leftovers = [made / "videos" / ".tmp-corrupt.mp4-k2x9q1", made / ".tmp-sample.json-3fz8w0"]
    for left in leftovers:
        left.write_bytes(b"cut short")
    run_cli("sample", "--out", str(made))  # written again whole: the same files as an uninterrupted sample
    assert _files(made) == _files(sample_dir)  # before: the killed write's temporary files stayed
    run = tmp_path / "run"
    run_cli("extract", "--root", str(made / "videos"), "--out", str(run), "--pipeline", str(SAMPLE_PRESET),
            "--limit", "1")
    statuses = duckdb.sql(f"SELECT clip_id, status FROM '{run}/clips/*.parquet'").fetchall()
    assert statuses == [("astronaut_light_blur", "ok")]


def _video(path, frames: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * i, np.uint8), format="bgr24")))
        out.mux(stream.encode())


def test_the_folder_source_takes_no_dot_named_file_for_a_clip(tmp_path):
    _video(tmp_path / "clip.mp4")
    _video(tmp_path / "sub" / "other.mkv")
    # a write under way (the sample's and bench's temporary name), a macOS resource file, a hidden folder
    shutil.copyfile(tmp_path / "clip.mp4", tmp_path / ".next.partial.mp4")
    (tmp_path / "._clip.mp4").write_bytes(b"\x00\x05\x16\x07")
    _video(tmp_path / ".trash" / "old.mp4")
    items = list(get_source("folder", tmp_path).scan())
    assert all(isinstance(i, Clip) for i in items)
    assert [i.clip_id for i in items] == ["clip", "sub/other"]
