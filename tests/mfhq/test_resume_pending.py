"""A resumed run whose planned video is gone runs every other shard and leaves that one's shard
pending: run.json must not call it complete (it said "complete: 0 of 1 shards done, 2 of 2 clips
never processed; re-run the same `mfhq extract`", which would leave it pending again), and what
extract and summary print says what to do. With the video back, the same command finishes it."""
from __future__ import annotations

import json
import shutil

import duckdb
import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.config import load_pipeline
from mfhq.manifest.run_state import PENDING, read_run_state
from mfhq.plan import load_plan
from mfhq.sources import get_source
from presets import write_preset


@pytest.fixture(scope="module")
def one_clip_shards(tmp_path_factory):
    return write_preset(tmp_path_factory.mktemp("preset") / "quick.yaml",
                        {"decode.fps": 1, "run.workers": 1, "run.shard_size": 1}, base=SAMPLE_PRESET)


def test_a_shard_whose_video_is_gone_leaves_the_run_pending_not_complete(sample_dir, one_clip_shards, tmp_path):
    root, run = tmp_path / "videos", tmp_path / "run"
    root.mkdir()
    shutil.copyfile(sample_dir / "videos" / "astronaut_motion.mp4", root / "a.mp4")
    shutil.copyfile(sample_dir / "videos" / "astronaut_light_blur.mp4", root / "b.mp4")
    run.mkdir()
    source = get_source("folder", root)
    items = list(source.scan())
    # planned as extract plans, and stopped before any shard ran; then b.mp4 is moved away
    load_plan(run, items, load_pipeline(one_clip_shards).run.shard_size, {"folder": source.ids_of(items)})
    shutil.move(root / "b.mp4", tmp_path / "b.mp4")

    result = run_cli("extract", "--root", str(root), "--out", str(run), "--pipeline", str(one_clip_shards))
    state = json.loads((run / "run.json").read_text())["state"]
    assert state.startswith(PENDING) and "(1 whose clips' videos are no longer in the source" in state
    assert not read_run_state(run).complete
    said = result.stdout + result.stderr
    assert "1 of 2 shards done, 1 of 2 clips never processed; put their videos back" in said, said
    summary = run_cli("summary", "--run", str(run)).stdout
    assert summary.startswith("WARNING: run") and PENDING in summary, summary

    shutil.move(tmp_path / "b.mp4", root / "b.mp4")
    run_cli("extract", "--root", str(root), "--out", str(run), "--pipeline", str(one_clip_shards))
    assert json.loads((run / "run.json").read_text())["state"] == "complete"
    rows = duckdb.sql(f"SELECT clip_id, status FROM read_parquet('{run}/clips/*.parquet') ORDER BY 1").fetchall()
    assert rows == [("a", "ok"), ("b", "ok")]
