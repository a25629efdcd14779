"""run_shard writes a shard only while its driver holds the run: an outlived runner writes nothing;
a retry stopped part-way leaves its shard pending, never a marker over a mix of old and new files."""
from __future__ import annotations

import json
import shutil

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mfhq.worker.shard
from conftest import SAMPLE_PRESET, run_cli
from mfhq.config import load_pipeline
from mfhq.manifest.io import ShardMarkers, atomic_write_table
from mfhq.manifest.lock import FolderLock, NotOwner
from mfhq.manifest.run_state import read_run_state
from mfhq.records import CLIP_SCHEMA, FACE_SCHEMA, Clip, ClipRow, Shard, item_key
from mfhq.sources import get_source
from mfhq.sources.base import SourceProblem
from mfhq.worker.shard import close_watchdogs, run_shard
from presets import write_preset


def test_a_shard_is_written_only_under_its_drivers_lock(tmp_path):
    # Source problems only: their rows need no worker process, so the test loads no models.
    problem = SourceProblem("folder", "gone", "missing", "gone.mp4: no such file")
    shard = Shard("folder-00000", ["folder/gone"], [problem])
    cfg = load_pipeline(SAMPLE_PRESET)
    run = tmp_path / "run"
    run.mkdir()
    with FolderLock(run) as lock:  # a resumed run took the lock over from the dead driver
        with pytest.raises(NotOwner, match=rf"{run}: the lock no longer names the run this process writes for "
                                           r"\(pid \d+ on host .* holds it now\); shard folder-00000 is left"):
            run_shard(shard, run, cfg, owner="the-dead-drivers-token")
        assert not any(run.rglob("*.parquet")) and not (run / "done").exists()
        stats = run_shard(shard, run, cfg, owner=lock.token)
    assert stats.status_counts == {"missing": 1} and (run / "done" / "folder-00000.json").is_file()
    with pytest.raises(NotOwner, match="nobody holds it now"):  # the lock is gone: the run ended
        run_shard(Shard("folder-00001", ["folder/gone"], [problem]), run, cfg, owner=lock.token)


def _rows(run, view: str, columns: str) -> list:
    return duckdb.connect().execute(f"SELECT {columns} FROM read_parquet('{run}/{view}/*.parquet') ORDER BY ALL").fetchall()


def test_a_retry_stopped_between_its_renames_leaves_the_shard_pending(sample_dir, tmp_path, monkeypatch):
    preset = write_preset(tmp_path / "quick.yaml", {"decode.fps": 1, "run.workers": 1, "run.shard_size": 1},
                          base=SAMPLE_PRESET)
    videos, store, run = tmp_path / "videos", tmp_path / "store", tmp_path / "run"
    videos.mkdir()
    store.mkdir()
    (videos / "late.mp4").symlink_to(store / "late.mp4")  # the download has not arrived yet
    (videos / "zero.mp4").write_bytes(b"")
    args = ["extract", "--root", str(videos), "--out", str(run), "--pipeline", str(preset)]
    run_cli(*args)
    shutil.copy(sample_dir / "videos" / "astronaut_motion.mp4", store / "late.mp4")
    # What `--retry missing` hands a runner for the late clip's shard.
    plan = json.loads((run / "plan.json").read_text())
    sid = next(s for s, keys in plan.items() if keys == ["folder/late"])
    items = {item_key(i): i for i in get_source("folder", videos).scan()}
    shard = Shard(sid, plan[sid], [items[k] for k in plan[sid]], frozenset({"folder/late"}))

    def stop(*args, **kwargs):  # Ctrl-C after the new faces/ file is renamed in, before clips/
        raise KeyboardInterrupt

    monkeypatch.setattr(mfhq.worker.shard, "atomic_write_table", stop)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_shard(shard, run, load_pipeline(preset))
    finally:
        close_watchdogs()
        monkeypatch.undo()
    assert _rows(run, "faces", "count(*) > 0") == [(True,)]  # new faces beside the old clip row...
    assert ("late", "missing") in _rows(run, "clips", "clip_id, status")
    assert not (run / "done" / f"{sid}.json").exists()  # ...which no marker vouches for
    state = read_run_state(run)
    assert not state.complete and (state.shards_done, state.shards_total) == (1, 2)

    again = run_cli(*args)  # the same command, no --retry: the pending shard is redone in full
    assert "1 clips" in again.stderr and (run / "done" / f"{sid}.json").is_file()
    assert _rows(run, "clips", "clip_id, status") == [("late", "ok"), ("zero", "empty")]
    assert _rows(run, "faces", "count(*) = count(DISTINCT (frame_index, face_index))") == [(True,)]
    assert read_run_state(run).complete


def test_a_retry_rewrites_a_schema_6_shard_with_the_person_keys_of_its_clips(tmp_path):
    """A shard written before clip rows had person_key, retried for another of its entries: the
    rewritten file (this version's) gives the row it keeps its clip's person key from the source."""
    clip = Clip("vfhq", "Clip+synthVF-pk1+P4+C0+F0-90", tmp_path / "gone.mp4", "synthVF-pk1", person_key="P4")
    problem = SourceProblem("vfhq", "broken", "bad_metadata", "broken.txt:3: expected numbers")
    run, sid = tmp_path / "run", "vfhq-00000"
    old = pa.Table.from_pylist([ClipRow.failed(clip, "missing", "gone.mp4: no such file", "none"),
                                ClipRow.problem(problem)], schema=CLIP_SCHEMA).drop_columns(["person_key"])
    (run / "clips").mkdir(parents=True)
    pq.write_table(old.replace_schema_metadata({**old.schema.metadata, b"mfhq.schema_version": b"6"}),
                   run / "clips" / f"{sid}.parquet")
    atomic_write_table(run / "faces" / f"{sid}.parquet", [], FACE_SCHEMA)
    ShardMarkers(run).mark_done(sid, {"clips": 2})
    # Source problems only are re-run: their rows need no worker process, so no model is loaded.
    shard = Shard(sid, [clip.key, "vfhq/broken"], [clip, problem], frozenset({"vfhq/broken"}))
    with FolderLock(run) as lock:
        run_shard(shard, run, load_pipeline(SAMPLE_PRESET), owner=lock.token)
    assert _rows(run, "clips", "clip_id, status, person_key") == [
        ("Clip+synthVF-pk1+P4+C0+F0-90", "missing", "P4"), ("broken", "bad_metadata", None)]
