"""A run whose plan holds a "."-named video (planned by an mfhq that still read such names, before
2026-12-06) keeps reading it on resume, says so in one line, and its clip ends with a row like
every planned clip. Before, the folder source no longer yielded it: its shard was left pending,
and neither it nor the shard's other clips got a row. A new run does not read it."""
from __future__ import annotations

import json
import shutil

import duckdb
import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.config import load_pipeline
from mfhq.plan import load_plan
from mfhq.sources import folder, get_source
from presets import write_preset


@pytest.fixture(scope="module")
def quick_preset(tmp_path_factory):
    return write_preset(tmp_path_factory.mktemp("preset") / "quick.yaml", {"decode.fps": 1, "run.workers": 1},
                        base=SAMPLE_PRESET)


def _rows(run) -> list[tuple]:
    return duckdb.sql(f"SELECT clip_id, status FROM read_parquet('{run}/clips/*.parquet') ORDER BY clip_id").fetchall()


def test_a_dot_named_video_the_plan_holds_is_extracted_on_resume(sample_dir, quick_preset, tmp_path, monkeypatch):
    root, run = tmp_path / "videos", tmp_path / "run"
    root.mkdir()
    shutil.copyfile(sample_dir / "videos" / "astronaut_motion.mp4", root / "a.mp4")
    shutil.copyfile(sample_dir / "videos" / "astronaut_light_blur.mp4", root / ".b.mp4")
    run.mkdir()
    with monkeypatch.context() as earlier:  # the folder source before 2026-12-06: it read "."-named files
        earlier.setattr(folder, "_hidden", lambda rel: False)
        source = get_source("folder", root)
        items = list(source.scan())
    # planned as extract plans, and stopped before any shard ran: plan.json and ids.json
    load_plan(run, items, load_pipeline(quick_preset).run.shard_size, {"folder": source.ids_of(items)})
    assert json.loads((run / "ids.json").read_text()) == {"folder": {".b.mp4": ".b", "a.mp4": "a"}}
    assert list(json.loads((run / "plan.json").read_text()).values()) == [["folder/.b", "folder/a"]]

    result = run_cli("extract", "--root", str(root), "--out", str(run), "--pipeline", str(quick_preset))
    said = [line for line in result.stderr.splitlines() if "whose names start with '.'" in line]
    assert len(said) == 1 and "are read because the run planned them" in said[0], result.stderr
    assert str(root / ".b.mp4") in said[0]
    assert _rows(run) == [(".b", "ok"), ("a", "ok")]

    fresh = tmp_path / "fresh"
    result = run_cli("extract", "--root", str(root), "--out", str(fresh), "--pipeline", str(quick_preset))
    assert _rows(fresh) == [("a", "ok")] and "whose names start with '.'" not in result.stderr
