"""Every row of a run folder, in a fixed order, to compare two runs."""
from __future__ import annotations

from pathlib import Path

import duckdb


def rows(run: Path, where: str = "true", exclude: str = "stage_seconds") -> tuple[list, list]:
    """Every face and clip row of a run, in a fixed order (stage timings aside)."""
    con = duckdb.connect()
    faces = con.execute(f"SELECT * FROM read_parquet('{run}/faces/*.parquet') WHERE {where} "
                        "ORDER BY clip_id, frame_index, face_index").fetchall()
    clips = con.execute(f"SELECT * EXCLUDE ({exclude}) FROM read_parquet('{run}/clips/*.parquet') WHERE {where} "
                        "ORDER BY clip_id").fetchall()
    return faces, clips
