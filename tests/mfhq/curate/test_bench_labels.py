"""`mfhq bench-curate`'s selection line names what it counts: under `short_identities: flag` the
faces picked include those of identities short of faces_per_identity, so the line names them
apart instead of giving every face to the identities with enough (counted again by DuckDB)."""
from __future__ import annotations

import re

import duckdb

from mfhq.config import CurateConfig
from mfhq.curate.bench import run_bench_curate


def test_flagged_short_identities_are_named_in_the_selection_line(tmp_path):
    cfg = CurateConfig(short_identities="flag")
    lines = run_bench_curate(300, 20_000, tmp_path / "bench", cfg, workers=1)
    per_clip = (f"SELECT clip_id, count(*) AS n FROM '{tmp_path}/bench/faces.parquet' WHERE kept AND yaw IS NOT NULL "
                "AND pitch IS NOT NULL AND roll IS NOT NULL AND quality IS NOT NULL GROUP BY clip_id")
    full, short, faces = duckdb.sql(f"SELECT count(*) FILTER (WHERE n >= 8), count(*) FILTER (WHERE n < 8), "
                                    f"sum(least(n, 8)) FROM ({per_clip})").fetchall()[0]
    assert short > 0  # faces per identity vary: some fall under 8
    line = next(line for line in lines if line.startswith("cluster-sample"))
    found = re.search(r"-> (\d+) faces for (\d+) identities with >= 8 faces and (\d+) short of 8 "
                      r"\(short_identities: flag\)$", line)
    assert found, line
    assert (int(found[1]), int(found[2]), int(found[3])) == (faces, full, short)
