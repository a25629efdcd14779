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


def query(run: Path, sql: str) -> list:
    """sql over the run's `clips` and `faces` views."""
    con = duckdb.connect()
    for view in ("clips", "faces"):
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{run}/{view}/*.parquet')")
    return con.execute(sql).fetchall()


def image_files(run: Path) -> set[str]:
    """The crop and mask files on disk, relative to the run."""
    return {p.relative_to(run).as_posix() for folder in ("crops", "masks") for p in (run / folder).rglob("*")
            if p.is_file()}


def named_files(run: Path) -> set[str]:
    """The crop and mask files the face rows name (any row: a dropped face must name none)."""
    return {p for row in query(run, "SELECT crop_path, mask_path FROM faces") for p in row if p is not None}
