"""`mfhq bench-curate`: cluster-sample's cost at MFHQ size, beside a DuckDB full scan, one run.

The synthetic table holds only what pose clustering needs (keys, kept, yaw, pitch, roll,
quality): 17M 512-d embeddings would be 35 GB. Merging works per clip on mean embeddings and is
not part of this figure. Face counts per identity vary (0 to 2x the mean), so some identities
fall under 8 faces and take the short path. The ratio to the scan compares across machines
better than the seconds do.
"""
from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path

import duckdb

from mfhq.config import CurateConfig
from mfhq.curate.build import pick_faces, usable_filter


def write_synthetic(path: Path, identities: int, faces: int) -> None:
    """A face table of `faces` rows over `identities` clips (one identity each), by DuckDB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    # identity = floor(I * sqrt(i / N)): faces per identity grow linearly from 0 to 2x the mean.
    con.execute(
        f"COPY (SELECT 'synthetic' AS source, printf('c%07d', ident) AS clip_id, printf('v%07d', ident) AS video_key, "
        "(i - min(i) OVER (PARTITION BY ident))::INTEGER AS frame_index, 0::SMALLINT AS face_index, "
        "(hash(i, 7) % 20) <> 0 AS kept, "
        "((hash(i, 1) % 12000) / 100.0 - 60)::FLOAT AS yaw, ((hash(i, 2) % 6000) / 100.0 - 30)::FLOAT AS pitch, "
        "((hash(i, 3) % 4000) / 100.0 - 20)::FLOAT AS roll, ((hash(i, 4) % 1000) / 1000.0)::FLOAT AS quality "
        f"FROM (SELECT i, floor({identities} * sqrt(i / {faces}))::BIGINT AS ident FROM range({faces}) t(i))) "
        f"TO '{path}' (FORMAT parquet, COMPRESSION zstd)"
    )


def _cpu() -> float:
    """CPU seconds of this process and its finished workers: on a shared machine wall time
    also counts other people's work."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_bench_curate(identities: int, faces: int, workdir: Path, cfg: CurateConfig, workers: int | None) -> list[str]:
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    table = workdir / "faces.parquet"
    started = time.perf_counter()
    write_synthetic(table, identities, faces)
    made_s = time.perf_counter() - started

    con = duckdb.connect()
    src = f"read_parquet('{table}')"
    cpu0, started = _cpu(), time.perf_counter()
    scan = con.execute(f"SELECT count(*), sum(yaw), sum(pitch), sum(roll), sum(quality), count(DISTINCT clip_id) "
                       f"FROM {src}").fetchall()[0]
    scan_s, scan_cpu = time.perf_counter() - started, _cpu() - cpu0

    cpu0, started = _cpu(), time.perf_counter()
    con.execute(f"CREATE VIEW usable_faces AS SELECT * FROM {src} WHERE {usable_filter(cfg)}")
    con.execute("CREATE TEMP TABLE members AS SELECT source, clip_id, source || '/' || clip_id AS identity_id, "
                "count(*) AS identity_faces FROM usable_faces GROUP BY ALL")
    picked = pick_faces(con, cfg, workers or cfg.workers)
    sample_s, sample_cpu = time.perf_counter() - started, _cpu() - cpu0
    per_id = con.execute("SELECT count(*) FROM members WHERE identity_faces >= ?", [cfg.faces_per_identity]).fetchall()[0][0]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [
        f"synthetic table: {scan[0]} faces, {scan[5]} identities ({table.stat().st_size / 2**20:.0f} MiB Parquet, made in {made_s:.1f} s)",
        f"DuckDB full scan (sums of pose and quality): {scan_s:.2f} s wall, {scan_cpu:.2f} s CPU",
        f"cluster-sample (usable filter, sort, k-means K={cfg.pose_clusters}, selection; workers={workers or cfg.workers}): "
        f"{sample_s:.2f} s wall, {sample_cpu:.2f} s CPU -> {picked.num_rows} faces for {per_id} identities with >= {cfg.faces_per_identity} faces",
        f"ratio cluster-sample / full scan: {sample_s / max(scan_s, 1e-9):.1f}x wall, {sample_cpu / max(scan_cpu, 1e-9):.1f}x CPU",
        f"throughput: {scan[0] / sample_s / 1e6:.2f} M faces/s; peak RSS {peak_mib:.0f} MiB",
    ]
