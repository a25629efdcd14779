"""`mfhq bench-curate`'s clip means: cluster-sample's first read, on a run's files written as
extract writes them (faces/ and clips/, one file per 64-clip shard), two ways: from the clip rows'
sums, and from every face's embedding (the way when curate.min_quality narrows the faces, or in
runs from before the sums). Measured whole at MFHQ size, also what cluster-sample saves by
starting the embedding merge's setup before it reads them.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from mfhq.config import CurateConfig
from mfhq.curate import merge
from mfhq.curate.bench import cpu_seconds
from mfhq.curate.build import usable_filter
from mfhq.curate.pairs import TORCH_FROM, large_input_arithmetic
from mfhq.manifest.clip_means import fill_clip_rows
from mfhq.manifest.io import atomic_write_arrow


CLIP_FACES = 127               # faces a clip: 17M candidate faces over 134k clips
SHARD_FACES = 64 * CLIP_FACES  # faces a file: one extract shard of 64 clips


def write_synthetic_embeddings(folder: Path, faces: int, dim: int, every: int, seed: int = 0) -> int:
    """A run's faces/ and clips/ files as extract writes them (zstd Parquet, one per shard) with
    what the clip means read: keys, the usable filter's columns and unit embeddings, each copied
    to the next `every - 1` faces with their embedding_frame as embed.every does, and clip rows
    with their sums (`fill_clip_rows`, extract's own). Returns the shard count."""
    rng = np.random.default_rng(seed)
    for sub in ("faces", "clips"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    shards = 0
    for begin in range(0, faces, SHARD_FACES):
        i = np.arange(begin, min(begin + SHARD_FACES, faces))
        n, frame = len(i), (i % CLIP_FACES).astype(np.int32)
        own = rng.standard_normal((n, dim), dtype=np.float32)
        own /= np.linalg.norm(own, axis=1, keepdims=True)
        embedded = frame - frame % every
        emb = own[np.arange(n) - (frame - embedded)]  # the embedded face's vector, copied
        clip_ids = [f"c{k:07d}" for k in (i // CLIP_FACES).tolist()]
        table = pa.table({
            "source": pa.array(["synthetic"] * n), "clip_id": pa.array(clip_ids), "frame_index": frame,
            "face_index": np.zeros(n, np.int16), "kept": np.ones(n, bool), "yaw": np.zeros(n, np.float32),
            "pitch": np.zeros(n, np.float32), "roll": np.zeros(n, np.float32), "quality": np.ones(n, np.float32),
            "embedding": pa.FixedSizeListArray.from_arrays(emb.ravel(), dim).cast(pa.list_(pa.float32())),
            "embedding_frame": embedded})
        clips = [{"source": "synthetic", "clip_id": c} for c in dict.fromkeys(clip_ids)]
        fill_clip_rows(table, clips)
        atomic_write_arrow(folder / "faces" / f"{shards:05d}.parquet", table)
        atomic_write_arrow(folder / "clips" / f"{shards:05d}.parquet", pa.Table.from_pylist(clips, schema=pa.schema([
            ("source", pa.string()), ("clip_id", pa.string()), ("embedding_sum", pa.list_(pa.float32())),
            ("embedding_faces", pa.int32())])))
        shards += 1
    return shards


def _timed_means(con, n_clips: int, narrowed: bool) -> tuple[np.ndarray, float, float]:
    cpu0, started = cpu_seconds(), time.perf_counter()
    means = merge.clip_means(con, n_clips, narrowed)
    return means, time.perf_counter() - started, cpu_seconds() - cpu0


def _means_views(folder: Path, cfg: CurateConfig) -> tuple[duckdb.DuckDBPyConnection, int]:
    """The views clip_means reads, over a synthetic run's files, and the clip count."""
    con = duckdb.connect()
    for view in ("faces", "clips"):
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{folder}/{view}/*.parquet')")
    con.execute(f"CREATE TEMP VIEW usable_faces AS SELECT * FROM faces WHERE {usable_filter(cfg)}")
    con.execute("CREATE TEMP TABLE clip_codes AS SELECT (row_number() OVER (ORDER BY source, clip_id) - 1)::BIGINT "
                "AS clip_code, source, clip_id FROM (SELECT DISTINCT source, clip_id FROM usable_faces)")
    return con, con.execute("SELECT count(*) FROM clip_codes").fetchall()[0][0]


def codes_means_and_setup(folder: Path, cfg: CurateConfig, dim: int, overlapped: bool) -> float:
    """Wall seconds of cluster-sample's first steps before the merge: the clip codes (a pass over
    the faces' keys), the clip means from the clip rows, and the embedding merge's setup (torch
    import, probe), one after another or with the setup started first (merge.prepare) as
    cluster-sample runs them. Run it in a fresh interpreter: where torch is imported already
    there is nothing to set up."""
    started = time.perf_counter()
    if overlapped:
        merge.prepare(cfg, TORCH_FROM)
    con, n_clips = _means_views(folder, cfg)
    merge.clip_means(con, n_clips, narrowed=False)
    large_input_arithmetic(dim)  # waits for the import, then probes, as the merge's first search does
    return time.perf_counter() - started


def _best_of_two_each(folder: Path, cfg: CurateConfig, dim: int) -> tuple[float, float]:
    """(one after another, overlapped): the best of two each, in the order a b b a."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for overlapped in (False, True, True, False):
        times[overlapped].append(_in_fresh_interpreter(codes_means_and_setup, folder, cfg, dim, overlapped))
    return min(times[False]), min(times[True])


def _in_fresh_interpreter(fn, *args):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def run_bench_embedding_read(folder: Path, faces: int, total_faces: int, dim: int, every: int,
                             cfg: CurateConfig) -> tuple[list[str], dict]:
    """cluster-sample's clip means (`merge.clip_means`, the real queries) on `faces` synthetic
    faces: from the clip rows' sums (its time scaled by clips) and from every face's embedding
    (scaled by faces, the way when curate.min_quality narrows the faces or in older runs)."""
    shutil.rmtree(folder, ignore_errors=True)
    shards = write_synthetic_embeddings(folder, faces, dim, every)
    os.sync()  # on disk, as after an extract: the write-back of GBs just written is not the read's time
    con, n_clips = _means_views(folder, cfg)
    rows, rows_s, rows_cpu = _timed_means(con, n_clips, narrowed=False)
    every_face, wall, cpu = _timed_means(con, n_clips, narrowed=True)
    steps = None  # (one after another, overlapped): measured whole where cluster-sample overlaps them
    if faces == total_faces and n_clips >= TORCH_FROM and cfg.merge != "off" and cfg.merge_by_embedding:
        steps = _best_of_two_each(folder, cfg, dim)
    shutil.rmtree(folder, ignore_errors=True)
    total_clips = -(-total_faces // CLIP_FACES)
    by_faces, by_clips = total_faces / faces, total_clips / n_clips
    how = "measured" if faces == total_faces else f"scaled linearly from {faces} faces, not measured at that size"
    embedded = "every face embedded" if every == 1 else f"1 face in {every} embedded, the rest copies"
    lines = [f"clip means ({dim}-d, {embedded}; {faces} faces in {shards} shards, {n_clips} clips), "
             f"from the clip rows' sums: {rows_s:.2f} s wall -> {rows_s * by_clips:.2f} s at {total_clips} clips; "
             f"from every face's embedding: {wall:.2f} s wall, {cpu:.2f} s CPU -> {wall * by_faces:.1f} s at "
             f"{total_faces} faces ({how}); the two agree to {float(np.abs(rows - every_face).max()):.1e}"]
    if steps is not None:
        lines.append(f"  clip codes, clip means from the clip rows and the merge's setup (torch import, probe), each "
                     f"in a fresh interpreter (best of two each): one after another {steps[0]:.2f} s, with the setup "
                     f"started first as cluster-sample runs it {steps[1]:.2f} s wall: {steps[0] - steps[1]:.2f} s saved")
    return lines, {"faces": faces, "clips": n_clips, "rows_s": rows_s, "scaled_rows_s": rows_s * by_clips,
                   "scaled_rows_cpu_s": rows_cpu * by_clips, "wall_s": wall, "cpu_s": cpu,
                   "scaled_s": wall * by_faces, "scaled_cpu_s": cpu * by_faces,
                   "overlap_saved_s": steps[0] - steps[1] if steps else 0.0}
