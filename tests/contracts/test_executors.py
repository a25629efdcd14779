"""Executor conformance: `local` and `ray` (a local Ray instance with 2 CPUs) give the same rows,
lose a runner mid-shard without a partial shard, turn a hanging decoder into a `timeout` row,
give a shard whose runner is always lost up after MAX_ATTEMPTS, and resume after the driver is
killed with -9."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from conftest import REPO, SAMPLE_PRESET, run_cli
from mfhq.config import load_pipeline
from mfhq.executors.ray_reaper import descendants, process_table
from mfhq.extract import extract
from presets import write_preset
from run_rows import rows

SUPPORT = REPO / "tests" / "support"  # fault_readers: the workers import it by name
EXECUTORS = ["local", pytest.param("ray", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance for the module (its start costs about 10 s). Its workers inherit
    this environment: the test helpers' folder on PYTHONPATH lets them load fault_readers."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as env:  # given back after the module: later tests see their own
        env.setenv("PYTHONPATH", os.pathsep.join([str(SUPPORT), str(REPO), os.environ.get("PYTHONPATH", "")]))
        env.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "disabled"))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()


@pytest.fixture(params=EXECUTORS)
def executor(request):
    if request.param == "ray":
        request.getfixturevalue("ray_address")
    return request.param


def test_same_rows_as_the_reference_run(executor, sample_dir, sample_run, tmp_path):
    # Another shard size and worker count than the reference, and frames read in line rather
    # than ahead in a thread: rows must not depend on them.
    reference_reads_ahead = load_pipeline(SAMPLE_PRESET).run.reads_ahead()  # (auto: by this machine's cores)
    cfg = load_pipeline(SAMPLE_PRESET).replace(run={"executor": executor, "shard_size": 3,
                                                    "workers": 1 if executor == "local" else 2,
                                                    "decode_ahead": "never" if reference_reads_ahead else "always"})
    run = tmp_path / "run"
    summary = extract("folder", sample_dir / "videos", run, cfg)
    assert summary.clips == 6 and summary.shards_total == 2
    assert rows(run) == rows(sample_run)
    assert not list(run.rglob(".tmp-*")) and not (run / "lock").exists()


def test_a_lost_runner_reruns_its_shard_and_a_hang_becomes_a_timeout_row(executor, sample_dir, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    good = sample_dir / "videos" / "astronaut_motion.mp4"
    for name in ("good", "hang", "hangread", "killparent"):
        shutil.copy(good, videos / f"{name}.mp4")
    preset = tmp_path / "faulty.yaml"
    # Chunks of 2 frames, so that `hangread` hangs in a read made ahead; the bound on a clip
    # (40 s) is far above the decode bound, so only the decode bound can give its reason. `hang`
    # hangs in its opening, bounded as a decode on its own clock.
    write_preset(preset, {"decode.backend": "fault_readers:FaultyReader", "decode.fps": 1, "decode.timeout_s": 3,
                          "decode.chunk_frames": 2, "run.shard_size": 1, "run.clip_timeout_s": 40}, base=SAMPLE_PRESET)
    assert load_pipeline(preset).run.clip_timeout_s == 40
    sys.path.insert(0, str(SUPPORT))  # the local executor's workers import the reader in this environment
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), env_path])
    try:
        cfg = load_pipeline(preset).replace(run={"executor": executor, "workers": 2, "decode_ahead": "always"})
        run = tmp_path / "run"
        summary = extract("folder", videos, run, cfg)
    finally:
        os.environ["PYTHONPATH"] = env_path
    con = duckdb.connect()
    statuses = dict(con.execute(f"SELECT clip_id, status FROM read_parquet('{run}/clips/*.parquet')").fetchall())
    assert statuses == {"good": "ok", "hang": "timeout", "hangread": "timeout", "killparent": "ok"}
    # A timeout is transient: the clip runs once more before its row is written, and no more.
    # Counted by the clip's own opens, not summary.retried: on a loaded machine a good clip's
    # decode may also pass the 3 s watchdog once and be retried (it then ends ok).
    for name in ("hang", "hangread"):
        assert (videos / f".{name}.mp4.tries").read_text().splitlines() == ["try", "try"], name
    assert summary.retried >= 2
    reasons = dict(con.execute(f"SELECT clip_id, reason FROM read_parquet('{run}/clips/*.parquet')").fetchall())
    assert reasons["hang"].endswith("hang.mp4: opening the video ran past the 3 s watchdog"), reasons["hang"]
    assert "hangread.mp4" in reasons["hangread"] and "decoding ran past the 3 s watchdog" in reasons["hangread"]
    assert (videos / ".killparent.mp4.killed").exists(), "the runner was never killed"
    # The killed runner's shard was written whole, once: the same rows as the good copy's.
    faces = con.execute(f"SELECT clip_id, frame_index, face_index, bbox FROM read_parquet('{run}/faces/*.parquet') "
                        "WHERE clip_id IN ('good', 'killparent') ORDER BY frame_index, face_index, clip_id").fetchall()
    assert faces and [f[1:] for f in faces if f[0] == "good"] == [f[1:] for f in faces if f[0] == "killparent"]
    assert sorted(p.stem for p in (run / "done").glob("*.json")) == sorted(p.stem for p in (run / "clips").glob("*.parquet"))
    assert not list(run.rglob(".tmp-*"))


@pytest.mark.slow
def test_ray_driver_killed_with_sigkill_then_resumed_equals_an_uninterrupted_run(ray_address, sample_dir, sample_run, tmp_path):
    # (The local executor's twin is tests/mfhq/worker/test_watchdog.py.)
    preset = tmp_path / "one_per_shard.yaml"
    write_preset(preset, {"run.shard_size": 1}, base=SAMPLE_PRESET)
    run = tmp_path / "killed"
    args = ["extract", "--root", str(sample_dir / "videos"), "--out", str(run), "--pipeline", str(preset),
            "--executor", "ray", "--address", ray_address]
    process = subprocess.Popen([sys.executable, "-m", "mfhq", *args], cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = run / "done"
    while process.poll() is None and len(list(done.glob("*.json"))) < 3:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 0 < len(list(done.glob("*.json"))) < 6, "the run was not interrupted mid-way"
    # The dead driver's lock is stale (its pid is gone): the resume takes it over.
    run_cli(*args)
    assert len(list(done.glob("*.json"))) == 6
    assert rows(run) == rows(sample_run)


def _descendants(mark: str, tree: dict[int, str]) -> list[str]:
    """The processes a driver started, at any depth: those whose environment holds
    MFHQ_TEST_RUN=mark, and those of tree (pid -> start time, looked at before the kill) still
    running (a process that renames itself may overwrite the environment /proc shows)."""
    table = process_table()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            pid = int(entry.name) if entry.name.isdigit() else None
            ours = pid in tree and pid in table and table[pid][1] == tree[pid]
            if ours or f"MFHQ_TEST_RUN={mark}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(f"{entry.name} {(entry / 'cmdline').read_bytes().replace(bytes(1), b' ')[:80].decode()}")
        except (OSError, ValueError):
            continue
    return found


def _tree(pid: int) -> dict[int, str]:
    table = process_table()
    return {child: table[child][1] for child in descendants({pid}, table)}


def _none_left(mark: str, tree: dict[int, str] | None = None, wait_s: float = 30) -> list[str]:
    deadline = time.monotonic() + wait_s  # a bounded wait: the processes are killed, not timed
    while (left := _descendants(mark, tree or {})) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="counts processes through /proc")
def test_ray_driver_killed_leaves_no_ray_process_and_never_a_second_writer(sample_dir, sample_run, tmp_path):
    # The driver starts its own local Ray instance (no --address), then dies by kill -9 alone
    # (not its process group): its actors, their workers and Ray's agents must all stop.
    pytest.importorskip("ray")
    preset = write_preset(tmp_path / "p.yaml", {"run.shard_size": 1, "run.workers": 2}, base=SAMPLE_PRESET)
    run = tmp_path / "killed"
    mark = uuid.uuid4().hex
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "MFHQ_TEST_RUN": mark}
    args = ["extract", "--root", str(sample_dir / "videos"), "--out", str(run), "--pipeline", str(preset),
            "--executor", "ray"]
    process = subprocess.Popen([sys.executable, "-m", "mfhq", *args], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = run / "done"
    while process.poll() is None and not list(done.glob("*.json")):
        time.sleep(0.05)
    tree = _tree(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and len(list(done.glob("*.json"))) < 6, "not interrupted mid-way"
    assert _none_left(mark, tree) == []
    markers = {p.name: p.stat().st_mtime_ns for p in done.glob("*.json")}
    run_cli(*args, env=env)  # takes the dead driver's lock over
    assert _none_left(mark) == []  # a run that ends well leaves nothing either
    assert len(list(done.glob("*.json"))) == 6 and rows(run) == rows(sample_run)
    assert all((done / name).stat().st_mtime_ns == t for name, t in markers.items()), "a done shard was rewritten"


def test_ray_missing_names_the_extra(tmp_path, monkeypatch):
    from mfhq.executors import ExecutorError, get_executor

    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra sees
    with pytest.raises(ExecutorError, match=r"mfhq\[ray\]"):
        get_executor("ray")(load_pipeline(SAMPLE_PRESET), str(tmp_path))
    with pytest.raises(ExecutorError, match="unknown executor 'spark'; available: local, ray"):
        get_executor("spark")


def test_a_shard_whose_runner_is_always_lost_is_given_up_after_max_attempts(executor, sample_dir, tmp_path):
    """A clip that kills its runner every time (a decoder that takes the process down with it)
    costs the run MAX_ATTEMPTS tries of its shard, then a clear error; never one more, never forever."""
    from mfhq.executors import ExecutorError
    from mfhq.executors.base import MAX_ATTEMPTS

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(sample_dir / "videos" / "astronaut_motion.mp4", videos / "killalways.mp4")
    preset = tmp_path / "faulty.yaml"
    write_preset(preset, {"decode.backend": "fault_readers:FaultyReader", "decode.fps": 1}, base=SAMPLE_PRESET)
    sys.path.insert(0, str(SUPPORT))  # the local executor's workers import the reader in this environment
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), env_path])
    try:
        cfg = load_pipeline(preset).replace(run={"executor": executor, "workers": 1})
        with pytest.raises(ExecutorError, match=f"{MAX_ATTEMPTS} times"):
            extract("folder", videos, tmp_path / "run", cfg)
    finally:
        os.environ["PYTHONPATH"] = env_path
    assert len((videos / ".killalways.mp4.tries").read_text().splitlines()) == MAX_ATTEMPTS == 3
    assert not list((tmp_path / "run" / "done").glob("*.json"))  # the shard given up is still pending
