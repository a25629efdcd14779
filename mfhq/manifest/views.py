"""DuckDB views over a run folder: `faces` and `clips`, read straight from the shards."""
from __future__ import annotations

from pathlib import Path

import duckdb


def connect(run_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with views `faces` and `clips` over the run's completed shards."""
    run_dir = Path(run_dir)
    con = duckdb.connect()
    for view in ("faces", "clips"):
        files = sorted((run_dir / view).glob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"{run_dir / view}: no Parquet shards; is {run_dir} a finished `mfhq extract` run?")
        listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet([{listing}])")
    return con


def clip_table(run_dir: Path) -> str:
    con = connect(run_dir)
    rel = con.sql(
        "SELECT source, clip_id, status, n_frames_read AS frames, n_faces_detected AS faces, "
        "n_faces_kept AS kept, decoder, left(coalesce(reason, ''), 60) AS reason "
        "FROM clips ORDER BY source, clip_id"
    )
    return str(rel)
