"""The headline's merge counts: clips merged into another clip's identity (`merge: merge`) and
clips dropped as duplicates (`merge: dedup`) are two numbers, each from identities.parquet."""
from __future__ import annotations

import pytest

from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from mfhq.stats import run_query
from synthetic_runs import ClipSpec, write_run

MERGED = "clips merged into another's identity"
DROPPED = "clips dropped as duplicates (merge: dedup)"

# Person 1 in three videos (one identity of 3 clips under merge), person 2 in two, person 3 alone.
SPECS = [ClipSpec("s", "a1", "v1", 1), ClipSpec("s", "a2", "v2", 1), ClipSpec("s", "a3", "v3", 1),
         ClipSpec("s", "b1", "v4", 2), ClipSpec("s", "b2", "v5", 2), ClipSpec("s", "c1", "v6", 3)]


@pytest.mark.parametrize(("merge", "merged", "dropped"), [("merge", 3, 0), ("dedup", 0, 3), ("off", 0, 0)])
def test_headline_counts_merged_and_dropped_clips_apart(tmp_path, merge, merged, dropped):
    run = write_run(tmp_path / "run", SPECS)
    out = tmp_path / "man"
    cluster_sample([run], out, CurateConfig(merge=merge, test_videos=1))
    table = run_query([run], out, "SELECT metric, value FROM headline WHERE metric LIKE 'clips %'")
    values = {line[:line.rindex(" ")].strip(): int(line.split()[-1]) for line in table.splitlines()[1:]}
    assert values[MERGED] == merged and values[DROPPED] == dropped
