"""Open one or more extract runs for curation: check them, then expose DuckDB views.

Checks are cheap and happen before any work: the folder exists, it holds run.json and Parquet
shards, and every shard's schema version (read from the Parquet footer, no data) is the one this
code reads. A run that fails a check raises RunError naming the path and the problem.
"""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from mfhq.manifest.io import check_schema_version


class RunError(RuntimeError):
    """A run folder that cannot be curated; the message names the path and the problem."""


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def check_run(run_dir: Path) -> dict:
    """Validate a run folder; returns its run.json."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder; make one with `mfhq extract --out {run_dir}`")
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise RunError(f"{meta_path}: missing; {run_dir} is not an `mfhq extract` run folder")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{meta_path}: not valid JSON ({exc})") from exc
    for view in ("faces", "clips"):
        files = sorted((run_dir / view).glob("*.parquet"))
        if not files:
            raise RunError(f"{run_dir / view}: no Parquet shards; is {run_dir} a finished `mfhq extract` run?")
        for path in files:
            try:
                meta_kv = pq.read_schema(path).metadata or {}
            except Exception as exc:  # pyarrow raises several types for a damaged footer
                raise RunError(f"{path}: not a readable Parquet file ({exc})") from exc
            check_schema_version(path, meta_kv, "re-run `mfhq extract` into a new folder, or use the mfhq release that wrote it")
    return meta


def connect_runs(run_dirs: list[Path]) -> tuple[duckdb.DuckDBPyConnection, list[dict]]:
    """DuckDB views `faces` and `clips` over all runs, each row with its absolute `run_dir`.

    Clip keys (source/clip_id) must be unique across runs: they are the identities' units.
    """
    if not run_dirs:
        raise RunError("no run folder given")
    metas, parts = [], {"faces": [], "clips": []}
    for run_dir in run_dirs:
        run_dir = Path(run_dir).resolve()
        metas.append({**check_run(run_dir), "run_dir": str(run_dir)})
        for view in parts:
            listing = ", ".join(_sql_str(str(p)) for p in sorted((run_dir / view).glob("*.parquet")))
            parts[view].append(f"SELECT *, {_sql_str(str(run_dir))} AS run_dir FROM read_parquet([{listing}])")
    con = duckdb.connect()
    for view, selects in parts.items():
        con.execute(f"CREATE VIEW {view} AS " + " UNION ALL BY NAME ".join(selects))
    dup = con.execute(
        "SELECT source, clip_id, count(DISTINCT run_dir) FROM clips GROUP BY ALL HAVING count(DISTINCT run_dir) > 1 LIMIT 1"
    ).fetchall()
    if dup:
        raise RunError(f"clip {dup[0][0]}/{dup[0][1]} is in {dup[0][2]} of the runs given; give each run once")
    return con, metas
