"""cluster-sample's merge line counts what the stats headline counts, from identities.parquet:
the clips merged into another clip's identity (`merge: merge`), or dropped as duplicates
(`merge: dedup`), not every clip of an identity of several clips."""
from __future__ import annotations

import logging
import re

import duckdb
import pytest

from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from synthetic_runs import ClipSpec, write_run

# Person 1 in three videos, person 2 in two, person 3 alone: 6 clips, 3 people.
SPECS = [ClipSpec("s", "a1", "v1", 1), ClipSpec("s", "a2", "v2", 1), ClipSpec("s", "a3", "v3", 1),
         ClipSpec("s", "b1", "v4", 2), ClipSpec("s", "b2", "v5", 2), ClipSpec("s", "c1", "v6", 3)]


@pytest.mark.parametrize(("merge", "what", "where"), [
    ("merge", "merged into another's identity", "decision = 'merged' AND source || '/' || clip_id <> identity_id"),
    ("dedup", "dropped as duplicates", "decision = 'dedup_dropped'")])
def test_the_merge_line_counts_the_clips_joined_to_another(tmp_path, caplog, merge, what, where):
    run = write_run(tmp_path / "run", SPECS)
    with caplog.at_level(logging.INFO, logger="mfhq.curate.merge"):
        cluster_sample([run], tmp_path / "man", CurateConfig(merge=merge, test_videos=1))
    line = next(r.getMessage() for r in caplog.records if "clips -> " in r.getMessage())
    found = re.search(r"^(\d+) clips -> (\d+) identities .*\((\d+) clips (.+)\)$", line)
    assert found, line
    ids = f"'{tmp_path}/man/identities.parquet'"
    q = lambda sql: duckdb.sql(sql).fetchall()[0][0]  # noqa: E731
    assert int(found[1]) == q(f"SELECT count(*) FROM {ids}") == 6
    assert int(found[2]) == q(f"SELECT count(DISTINCT identity_id) FROM {ids}") == 3
    assert int(found[3]) == q(f"SELECT count(*) FROM {ids} WHERE {where}") == 3
    assert found[4] == what
