"""`mfhq extract`'s closing line counts this call's work: a run resumed after an interruption runs
shards planned by the earlier call, which are neither new nor already done, and the line says how
many it ran (counted again from the run's plan, done markers and Parquet files)."""
from __future__ import annotations

import json
import re

import duckdb

from conftest import SAMPLE_PRESET, run_cli
from source_fixtures import linked_sample_videos

NAMES = ("astronaut_motion", "corrupt", "empty", "t1_intruder")  # two shards of two clips (the sample preset's)


def test_a_resumed_run_says_the_shards_it_ran(sample_dir, tmp_path):
    videos = linked_sample_videos(sample_dir, tmp_path / "videos", NAMES)
    run = tmp_path / "run"
    args = ("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(SAMPLE_PRESET))
    run_cli(*args)
    plan = json.loads((run / "plan.json").read_text())
    assert len(plan) == 2
    # as if the first call stopped before this shard was marked done
    unfinished = sorted(plan)[-1]
    (run / "done" / f"{unfinished}.json").unlink()
    result = run_cli(*args)
    text = result.stdout + result.stderr
    found = re.search(r"(\d+) clips in [\d.]+ s \((\d+) shards? run, (\d+) of them newly planned; (\d+) already "
                      r"done\): .*; faces kept (\d+), dropped (\d+)\.", text)
    assert found, text
    kept, dropped = duckdb.sql(f"SELECT count(*) FILTER (WHERE kept), count(*) FILTER (WHERE NOT kept) "
                               f"FROM '{run}/faces/{unfinished}.parquet'").fetchall()[0]
    assert [int(g) for g in found.groups()] == [len(plan[unfinished]), 1, 0, 1, kept, dropped]
