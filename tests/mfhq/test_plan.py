"""A run folder grows: new videos go into new shards, finished shards are left alone;
`--retry STATUS` re-runs just those clips; a lock keeps a second process out; damaged run
state is named with what to do."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.config import load_pipeline
from mfhq.plan import RunMismatch, check_resume, extend_plan, plan_shards
from mfhq.records import Clip
from presets import write_preset


@pytest.fixture(scope="module")
def quick_preset(tmp_path_factory) -> Path:
    preset = tmp_path_factory.mktemp("preset") / "quick.yaml"
    write_preset(preset, {"decode.fps": 1, "run.workers": 1}, base=SAMPLE_PRESET)
    return preset


def _clips(run: Path) -> list[tuple]:
    return duckdb.connect().execute(
        f"SELECT clip_id, status FROM read_parquet('{run}/clips/*.parquet') ORDER BY clip_id").fetchall()


def _files(run: Path, shard: str) -> dict:
    paths = [run / "faces" / f"{shard}.parquet", run / "clips" / f"{shard}.parquet", run / "done" / f"{shard}.json"]
    return {p.name + p.parent.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


def test_plan_extension_keeps_old_shards_and_numbers_new_ones_after_them():
    from mfhq.records import Clip

    clips = [Clip("folder", f"c{i}", Path(f"c{i}.mp4"), f"c{i}") for i in range(5)]
    first = plan_shards(clips[:3], 2)
    assert first == {"folder-00000": ["folder/c0", "folder/c1"], "folder-00001": ["folder/c2"]}
    grown, added = extend_plan(first, clips + [Clip("other", "a", Path("a.mp4"), "a")], 2)
    assert added == 2 and {k: grown[k] for k in first} == first
    assert grown["folder-00002"] == ["folder/c3", "folder/c4"] and grown["other-00000"] == ["other/a"]
    assert extend_plan(grown, clips, 2) == (grown, 0)


def test_added_videos_get_new_shards_and_finished_shards_are_untouched(sample_dir, quick_preset, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a0", "a1", "a2", "a3"):
        (videos / f"{name}.mp4").write_bytes(b"")  # status rows without decoding: a quick run
    run = tmp_path / "run"
    args = ["extract", "--root", str(videos), "--out", str(run), "--pipeline", str(quick_preset)]
    run_cli(*args, "--limit", "3")
    assert len(_clips(run)) == 3
    run_cli(*args)  # --limit grew: the 4th clip is planned into a new shard
    before = {s: _files(run, s) for s in ("folder-00000", "folder-00001")}
    shutil.copy(sample_dir / "videos" / "corrupt.mp4", videos / "a4.mp4")
    (videos / "0first.mp4").write_bytes(b"")  # sorts first, still goes into a new shard
    out = run_cli(*args)
    assert [c[0] for c in _clips(run)] == ["0first", "a0", "a1", "a2", "a3", "a4"]
    assert dict(_clips(run))["a4"] == "decode_error"
    assert {s: _files(run, s) for s in before} == before
    plan = json.loads((run / "plan.json").read_text())
    assert plan["folder-00000"] == ["folder/a0", "folder/a1"] and plan["folder-00003"] == ["folder/0first", "folder/a4"]
    assert "2 clips" in out.stderr and "1 new" in out.stderr


def test_retry_missing_turns_a_late_video_ok_without_duplicating_rows(sample_dir, quick_preset, tmp_path):
    videos, store = tmp_path / "videos", tmp_path / "store"
    videos.mkdir()
    store.mkdir()
    (videos / "late.mp4").symlink_to(store / "late.mp4")  # the download has not arrived yet
    (videos / "zero.mp4").write_bytes(b"")
    run = tmp_path / "run"
    args = ["extract", "--root", str(videos), "--out", str(run), "--pipeline", str(quick_preset)]
    run_cli(*args)
    assert _clips(run) == [("late", "missing"), ("zero", "empty")]
    shutil.copy(sample_dir / "videos" / "astronaut_motion.mp4", store / "late.mp4")
    run_cli(*args)
    assert _clips(run) == [("late", "missing"), ("zero", "empty")], "a finished shard must not change unasked"
    run_cli(*args, "--retry", "missing")
    assert _clips(run) == [("late", "ok"), ("zero", "empty")]
    faces = duckdb.connect().execute(
        f"SELECT count(*), count(DISTINCT (frame_index, face_index)) FROM read_parquet('{run}/faces/*.parquet')").fetchone()
    assert faces[0] > 0 and faces[0] == faces[1]
    bad = run_cli(*args, "--retry", "missing,bogus", check=False)
    assert bad.returncode == 2 and "--retry: unknown status 'bogus'; give a comma-separated list of: ok, " in bad.stderr


def test_a_held_lock_is_refused_and_a_stale_one_taken_over(quick_preset, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "zero.mp4").write_bytes(b"")
    run = tmp_path / "run"
    run.mkdir()
    lock = run / "lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}))
    args = ["extract", "--root", str(videos), "--out", str(run), "--pipeline", str(quick_preset)]
    held = run_cli(*args, check=False)
    assert held.returncode == 2 and f"in use by pid {os.getpid()} on host {socket.gethostname()}" in held.stderr
    assert "Traceback" not in held.stderr and not (run / "clips").exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname(), "since": "then"}))
    taken = run_cli(*args)
    assert "taking over a stale lock" in taken.stderr and _clips(run) == [("zero", "empty")] and not lock.exists()


def test_damaged_plan_or_run_json_is_named_with_what_to_do(quick_preset, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "zero.mp4").write_bytes(b"")
    run = tmp_path / "run"
    args = ["extract", "--root", str(videos), "--out", str(run), "--pipeline", str(quick_preset)]
    run_cli(*args)
    for name, remedy in (("plan.json", "new --out"), ("run.json", "--force")):
        path = run / name
        good = path.read_bytes()
        path.write_bytes(good[: len(good) // 2])
        bad = run_cli(*args, check=False)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert f"{path} is damaged (not valid JSON" in bad.stderr and remedy in bad.stderr
        path.write_bytes(good)
    (run / "run.json").unlink()  # the run.json remedy: delete it, resume with --force
    run_cli(*args, "--force")
    assert json.loads((run / "run.json").read_text())["state"] == "complete"


def test_the_same_clip_id_in_two_sources_never_collides():
    from mfhq.extract import plan_shards

    same = [Clip(name, "abcdefghijk_0_1", Path("x.mp4"), "abcdefghijk") for name in ("celebvhq", "celebvtext")]
    assert plan_shards(same, shard_size=8) == {"celebvhq-00000": ["celebvhq/abcdefghijk_0_1"],
                                               "celebvtext-00000": ["celebvtext/abcdefghijk_0_1"]}


def test_resuming_from_other_videos_is_refused(quick_preset, tmp_path):
    # A clip id the run already planned counts as done: another --root's video of the same name
    # would get no row, without a word.
    first, other = tmp_path / "videos", tmp_path / "elsewhere"
    for folder, names in ((first, ("a0", "a1")), (other, ("a0", "b0"))):
        folder.mkdir()
        for name in names:
            (folder / f"{name}.mp4").write_bytes(b"")
    run = tmp_path / "run"
    args = ["--out", str(run), "--pipeline", str(quick_preset)]
    run_cli("extract", "--root", str(first), *args)
    before = {name: (run / name).read_bytes() for name in ("run.json", "plan.json")}
    refused = run_cli("extract", "--root", str(other), *args, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (f"{run / 'run.json'}: this run was made from other videos (--source folder --root {first} in the run, "
            f"--source folder --root {other} now)") in refused.stderr
    assert "Use the run's own --source and --root, a new --out for these videos" in refused.stderr
    assert {name: (run / name).read_bytes() for name in before} == before and _clips(run) == [("a0", "empty"), ("a1", "empty")]

    same = run_cli("extract", "--root", "videos/../videos", *args, cwd=tmp_path)  # the same folder, spelled otherwise
    assert "already complete: 2 clips" in same.stderr
    forced = run_cli("extract", "--root", str(other), *args, "--force")
    assert "--force: resuming with other videos" in forced.stderr and [c[0] for c in _clips(run)] == ["a0", "a1", "b0"]

    cfg = load_pipeline(quick_preset)
    with pytest.raises(RunMismatch, match=r"--source folder --root .* in the run, --source vfhq --root "):
        check_resume({"source": "folder", "root": str(first)}, run / "run.json", cfg, {}, "vfhq", first, force=False)


def test_a_run_forced_onto_another_config_keeps_its_history_and_summary_says_it_mixes(quick_preset, tmp_path):
    videos, run = tmp_path / "videos", tmp_path / "run"
    videos.mkdir()
    (videos / "a0.mp4").write_bytes(b"")
    other = write_preset(tmp_path / "other.yaml", {"decode.fps": 2, "run.workers": 1}, base=SAMPLE_PRESET)
    args = ["extract", "--root", str(videos), "--out", str(run)]
    run_cli(*args, "--pipeline", str(quick_preset))
    first = json.loads((run / "run.json").read_text())
    assert "mixes configs" not in run_cli("summary", "--run", str(run)).stdout
    (videos / "a1.mp4").write_bytes(b"")
    run_cli(*args, "--pipeline", str(other), "--force")
    meta = json.loads((run / "run.json").read_text())
    fingerprints = [c["fingerprint"] for c in meta["configs"]]
    assert fingerprints == [first["config_fingerprint"], load_pipeline(other).fingerprint()]
    assert meta["run_id"] == first["run_id"] and meta["created"] == first["created"]
    markers = {p.stem: json.loads(p.read_text())["config_fingerprint"] for p in (run / "done").glob("*.json")}
    assert markers == {"folder-00000": fingerprints[0], "folder-00001": fingerprints[1]}
    said = run_cli("summary", "--run", str(run)).stdout
    assert f"mixes configs: its finished shards were made with 2 pipeline configs (1 with {fingerprints[0]}, 1 with " \
           f"{fingerprints[1]}" in " ".join(said.split())
    assert "mixes configs" in run_cli(*args, "--pipeline", str(other)).stderr  # "already complete" says it too


def test_markers_of_older_runs_count_as_the_runs_one_config(quick_preset, tmp_path):
    """Markers written before they named a config stay valid and mix nothing."""
    from mfhq.manifest.run_state import read_run_state

    videos, run = tmp_path / "videos", tmp_path / "run"
    videos.mkdir()
    (videos / "a0.mp4").write_bytes(b"")
    run_cli("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(quick_preset))
    meta = json.loads((run / "run.json").read_text())
    for key in ("configs", "run_id", "created"):
        meta.pop(key)
    (run / "run.json").write_text(json.dumps(meta))
    for marker in (run / "done").glob("*.json"):
        marker.write_text(json.dumps({k: v for k, v in json.loads(marker.read_text()).items()
                                      if k != "config_fingerprint"}))
    state = read_run_state(run)
    assert state.complete and state.mixed_configs is None
    assert state.configs == ((meta["config_fingerprint"], 1),)


def test_a_run_made_again_at_the_same_path_is_another_run(quick_preset, tmp_path):
    videos, run = tmp_path / "videos", tmp_path / "run"
    videos.mkdir()
    (videos / "a0.mp4").write_bytes(b"")
    args = ["extract", "--root", str(videos), "--out", str(run), "--pipeline", str(quick_preset)]
    run_cli(*args)
    first = json.loads((run / "run.json").read_text())["run_id"]
    run_cli(*args)
    assert json.loads((run / "run.json").read_text())["run_id"] == first  # a resume is the same run
    shutil.rmtree(run)
    run_cli(*args)
    assert json.loads((run / "run.json").read_text())["run_id"] not in (first, None)
