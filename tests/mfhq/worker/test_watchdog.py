"""A hanging or crashing decoder costs one status row, never the run; a killed run resumes."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import yaml

from conftest import REPO, SAMPLE_PRESET, run_cli
from presets import write_preset

SUPPORT = REPO / "tests" / "support"  # fault_readers: the workers import it by name


def _statuses(run: Path) -> dict:
    return dict(duckdb.connect().execute(f"SELECT clip_id, status FROM read_parquet('{run}/clips/*.parquet')").fetchall())


def test_hanging_and_crashing_decoders_become_status_rows(sample_dir, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    good = sample_dir / "videos" / "astronaut_motion.mp4"
    # One shard, one worker reading ahead: each bad clip is opened on the reader thread while the
    # good clip before it is in the models, so the worker that hangs or dies was running both.
    names = ("a_good", "b_hang", "c_good", "d_crash")
    for name in names:
        shutil.copy(good, videos / f"{name}.mp4")
    preset = tmp_path / "faulty.yaml"
    # A hang in an opening ends at the decode bound, on the opening's own clock, once it is opened alone.
    write_preset(preset, {"decode.backend": "fault_readers:FaultyReader", "decode.timeout_s": 4, "run.clip_timeout_s": 40,
                          "run.workers": 1, "run.shard_size": 4}, base=SAMPLE_PRESET)
    recipe = yaml.safe_load(preset.read_text())
    recipe["run"]["decode_ahead"] = "always"  # (the sample preset leaves it to `auto`)
    preset.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "PYTHONPATH": f"{SUPPORT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = tmp_path / "run"
    result = run_cli("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(preset), env=env)
    statuses = _statuses(run)
    assert statuses == {"a_good": "ok", "b_hang": "timeout", "c_good": "ok", "d_crash": "crashed"}
    reasons = dict(duckdb.connect().execute(f"SELECT clip_id, reason FROM read_parquet('{run}/clips/*.parquet')").fetchall())
    assert reasons["b_hang"].endswith("b_hang.mp4: opening the video ran past the 4 s watchdog"), reasons["b_hang"]
    assert "d_crash.mp4" in reasons["d_crash"] and "signal 11" in reasons["d_crash"]
    # The crashing clip's own outcome: its row blames a death while it was opened alone, nothing
    # read ahead beside it. It was opened alone exactly twice, the first attempt and the one retry
    # the run gives a transient status (records.TRANSIENT_STATUSES), plus once for each death
    # while it was read ahead beside another clip, which is never pinned on either (the warning
    # names each). Never retried, it would open once less; retried without end, more, and past
    # fault_readers.CRASH_OPENS it would end ok.
    assert reasons["d_crash"].endswith("d_crash.mp4: the worker died (signal 11) during open"), reasons["d_crash"]
    opens = len((videos / ".d_crash.mp4.tries").read_text().splitlines())
    read_ahead = result.stderr.count("d_crash.mp4 ahead")
    assert read_ahead >= 1 and opens == 2 + read_ahead, result.stderr
    # The death while d_crash was read ahead could not be pinned on one clip: both ran alone.
    assert "read" in result.stderr and "d_crash.mp4 ahead" in result.stderr and "running each alone" in result.stderr
    faces = duckdb.connect().execute(f"SELECT clip_id, count(*) FROM read_parquet('{run}/faces/*.parquet') GROUP BY 1").fetchall()
    assert dict(faces)["a_good"] == dict(faces)["c_good"] > 0  # the clips run again are whole


def _rows(run: Path) -> tuple[list, list]:
    con = duckdb.connect()
    faces = con.execute(
        f"SELECT * FROM read_parquet('{run}/faces/*.parquet') ORDER BY clip_id, frame_index, face_index"
    ).fetchall()
    clips = con.execute(
        f"SELECT * EXCLUDE (stage_seconds) FROM read_parquet('{run}/clips/*.parquet') ORDER BY clip_id"
    ).fetchall()
    return faces, clips


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(sample_dir, sample_run, tmp_path):
    preset = tmp_path / "one_per_shard.yaml"
    write_preset(preset, {"run.shard_size": 1, "run.workers": 1}, base=SAMPLE_PRESET)
    run = tmp_path / "killed"
    args = [sys.executable, "-m", "mfhq", "extract", "--root", str(sample_dir / "videos"), "--out", str(run), "--pipeline", str(preset)]
    process = subprocess.Popen(args, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = run / "done"
    # Kill as soon as some, but not all, shards are finished: the worst moment for a resume.
    while process.poll() is None and len(list(done.glob("*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = len(list(done.glob("*.json")))
    assert 0 < finished_before < 6, "the run was not interrupted mid-way"

    run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(run), "--pipeline", str(preset))
    assert len(list(done.glob("*.json"))) == 6
    faces, clips = _rows(run)
    reference_faces, reference_clips = _rows(sample_run)
    assert clips == reference_clips
    assert faces == reference_faces
    keys = [(f[1], f[3], f[5]) for f in faces]  # clip_id, frame_index, face_index
    assert len(keys) == len(set(keys))
