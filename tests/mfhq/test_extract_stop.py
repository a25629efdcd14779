"""A full disk and Ctrl-C / SIGTERM stop a run cleanly: one message, no traceback, nothing in
flight marked done, no temporary files left, and the resumed run equals an uninterrupted one."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from conftest import REPO, SAMPLE_PRESET, run_cli
from ctrl_c import ctrl_c_reaches_it
from presets import write_preset
from run_rows import rows
from source_fixtures import linked_sample_videos

GOOD = ("astronaut_motion", "t1_face2_motion")
SUPPORT = REPO / "tests" / "support"  # fault_readers: the workers import it by name


def _mount_small(mount: Path) -> subprocess.CompletedProcess:
    mount.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1600k", "tmpfs", str(mount)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A real 1.6 MiB file system (tmpfs): room for one good clip's crops, not two."""
    mount = tmp_path / "small"
    made = _mount_small(mount)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_cleanly_and_the_resume_equals_an_uninterrupted_run(
        small_disk, sample_dir, sample_run, tmp_path):
    videos = linked_sample_videos(sample_dir, tmp_path / "videos", (*GOOD, "empty"))
    preset = tmp_path / "p.yaml"
    write_preset(preset, {"run.shard_size": 1, "run.workers": 1}, base=SAMPLE_PRESET)
    run = small_disk / "run"
    args = ["extract", "--root", str(videos), "--out", str(run), "--pipeline", str(preset)]
    full = run_cli(*args, check=False)
    assert full.returncode == 2
    assert full.stderr.count("the disk is full") == 1 and "No space left on device" in full.stderr
    assert str(small_disk) in full.stderr and "re-run the same command" in full.stderr
    assert "Traceback" not in full.stderr
    done = {p.stem for p in (run / "done").glob("*.json")}
    assert 0 < len(done) < 3, "the disk did not fill up mid-run"
    assert {p.stem for p in (run / "clips").glob("*.parquet")} == done  # the shard in flight: no files
    assert not list(run.rglob(".tmp-*"))

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    run_cli(*args)
    where = "clip_id IN ('astronaut_motion', 't1_face2_motion', 'empty')"
    same = "stage_seconds, video_path, reason"  # the videos sit in another folder (reasons name it)
    assert rows(run, exclude=same) == rows(sample_run, where, exclude=same)
    assert not (run / "lock").exists()


def test_a_full_disk_without_a_small_file_system_to_mount(sample_dir, sample_run, tmp_path):
    """The same clean stop, through a fault injected into the worker's crop writes (for machines
    where a test cannot mount; where it can, the test above uses a real full file system)."""
    if _mount_small(tmp_path / "probe").returncode == 0:
        subprocess.run(["umount", "-l", str(tmp_path / "probe")], check=False)
        pytest.skip("a real small file system can be mounted here: the test above covers this")
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in GOOD:
        shutil.copy(sample_dir / "videos" / f"{name}.mp4", videos / f"{name}.mp4")
    (videos / "t1_face2_motion.mp4").rename(videos / "t1_face2_motion_fill.mp4")
    (videos / ".disk-full").touch()
    preset = tmp_path / "p.yaml"
    write_preset(preset, {"decode.backend": "fault_readers:DiskFillingReader", "run.shard_size": 1, "run.workers": 1},
                 base=SAMPLE_PRESET)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")])}
    run = tmp_path / "run"
    args = ["extract", "--root", str(videos), "--out", str(run), "--pipeline", str(preset)]
    full = run_cli(*args, check=False, env=env)
    assert full.returncode == 2 and full.stderr.count("the disk is full") == 1 and "Traceback" not in full.stderr
    assert "No space left on device" in full.stderr and "t1_face2_motion_fill" in full.stderr
    assert [p.stem for p in (run / "done").glob("*.json")] == ["folder-00000"]
    assert not (run / "clips" / "folder-00001.parquet").exists() and not list(run.rglob(".tmp-*"))
    (videos / ".disk-full").unlink()  # space freed
    run_cli(*args, env=env)
    con = duckdb.connect()
    query = ("SELECT replace(clip_id, '_fill', '') AS cid, * EXCLUDE (clip_id, video_key, crop_path, mask_path) "
             "FROM read_parquet('{}/faces/*.parquet') WHERE cid IN {} ORDER BY cid, frame_index, face_index")
    mine = con.execute(query.format(run, GOOD)).fetchall()
    reference = con.execute(query.format(sample_run, GOOD)).fetchall()
    assert mine and mine == reference


def test_ctrl_c_and_sigterm_stop_cleanly_with_one_line_and_the_run_resumes(sample_dir, sample_run, tmp_path):
    preset = tmp_path / "p.yaml"
    # Once the run has written a shard, the quality backend holds while `gate` exists, so each
    # signal lands on a run that is certainly mid-shard, however fast or loaded the machine.
    write_preset(preset, {"run.shard_size": 1, "run.workers": 1,
                          "quality.backend": "fault_backends:GatedQuality"}, base=SAMPLE_PRESET)
    run = tmp_path / "run"
    gate = tmp_path / "gate"
    env = {**os.environ, "MFHQ_TEST_GATE": str(gate), "MFHQ_TEST_GATE_DONE": str(run / "done"),
           "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-m", "mfhq", "extract", "--root", str(sample_dir / "videos"), "--out", str(run),
            "--pipeline", str(preset)]
    done = run / "done"
    # Ctrl-C in a terminal reaches the whole process group (driver, runners, workers); SIGTERM
    # from a scheduler reaches the driver.
    for how in (lambda p: os.killpg(p.pid, signal.SIGINT), lambda p: p.send_signal(signal.SIGTERM)):
        before = len(list(done.glob("*.json")))  # a stopped run may finish its shard in flight
        env["MFHQ_TEST_GATE_AFTER"] = str(before)
        gate.touch()
        reached = Path(f"{gate}.reached")
        reached.unlink(missing_ok=True)
        process = subprocess.Popen(args, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env, preexec_fn=ctrl_c_reaches_it)
        # this run is working (its handlers are set), has written a shard and holds the next one
        while process.poll() is None and not reached.exists():
            time.sleep(0.05)
        how(process)
        _, stderr = process.communicate(timeout=600)  # a hang guard, not a speed limit
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "KeyboardInterrupt" not in stderr
        lines = [line for line in stderr.splitlines() if "re-run the same command to resume" in line]
        assert len(lines) == 1 and "interrupted:" in lines[0]
        meta = json.loads((run / "run.json").read_text())
        assert meta["state"] == "interrupted" and meta["provenance"] not in (None, "pending")
        assert not list(run.rglob(".tmp-*")) and not (run / "lock").exists()
        assert len(list(done.glob("*.json"))) < 6, "the run finished before the signal"
    gate.unlink()
    run_cli(*args[3:], env=env)
    assert rows(run) == rows(sample_run)
    assert json.loads((run / "run.json").read_text())["state"] == "complete"
