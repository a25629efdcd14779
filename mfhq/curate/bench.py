"""`mfhq bench-curate`: cluster-sample's cost at MFHQ size, beside a DuckDB full scan, one run.

The synthetic table holds only what pose clustering needs (keys, kept, yaw, pitch, roll,
quality): 17M 512-d embeddings would be 35 GB. Merging works per clip on mean embeddings, so it
is measured apart, on synthetic clip means with known groups (1-3 clips per person), at
three clip counts: the fitted exponent of time against clip count says how it scales, and at
the smallest size its identities are compared with the exact all-pairs merge. Making those
means is measured apart too (mfhq.curate.bench_means). Face counts per identity vary (0 to 2x
the mean), so some identities fall under 8 faces and take the short path. The ratio to the scan
compares across machines better than the seconds do.
"""
from __future__ import annotations

import dataclasses
import resource
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from mfhq.config import CurateConfig
from mfhq.errors import MfhqError
from mfhq.manifest.io import first_names
from mfhq.curate.build import pick_faces, usable_filter
from mfhq.curate import merge
from mfhq.curate.pairs import TORCH_FROM, large_input_arithmetic


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


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished workers: on a shared machine wall time
    also counts other people's work."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class WorkdirError(MfhqError, ValueError):
    """--workdir is not bench-curate's own scratch folder: it would be deleted."""


OWN = {"faces.parquet", "embeddings"}  # all bench-curate writes in --workdir


def check_workdir(workdir: Path) -> None:
    """The scratch folder is deleted before each run: refuse one that holds anything else (a
    finished run, a manifest, the --pipeline file: `--workdir runs/x` deleted the run)."""
    if workdir.exists() and not workdir.is_dir():
        raise WorkdirError(f"--workdir {workdir}: is a file, not a folder; give a new or empty folder")
    foreign = sorted(p.name for p in workdir.iterdir() if p.name not in OWN) if workdir.is_dir() else []
    if foreign:
        raise WorkdirError(f"--workdir {workdir}: holds files bench-curate did not write ({first_names(foreign)}), "
                           "and it deletes the folder before each run; give a new or empty folder (default "
                           "runs/bench-curate)")


def run_bench_curate(identities: int, faces: int, workdir: Path, cfg: CurateConfig, workers: int | None,
                     result: dict | None = None) -> list[str]:
    """The report's lines; `result`, when given, receives scan_s and sample_s (wall seconds)."""
    workdir = Path(workdir)
    check_workdir(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    table = workdir / "faces.parquet"
    started = time.perf_counter()
    write_synthetic(table, identities, faces)
    made_s = time.perf_counter() - started

    con = duckdb.connect()
    src = f"read_parquet('{table}')"
    cpu0, started = cpu_seconds(), time.perf_counter()
    scan = con.execute(f"SELECT count(*), sum(yaw), sum(pitch), sum(roll), sum(quality), count(DISTINCT clip_id) "
                       f"FROM {src}").fetchall()[0]
    scan_s, scan_cpu = time.perf_counter() - started, cpu_seconds() - cpu0

    cpu0, started = cpu_seconds(), time.perf_counter()
    con.execute(f"CREATE VIEW usable_faces AS SELECT * FROM {src} WHERE {usable_filter(cfg)}")
    con.execute("CREATE TEMP TABLE members AS SELECT source, clip_id, source || '/' || clip_id AS identity_id, "
                "count(*) AS identity_faces FROM usable_faces GROUP BY ALL")
    picked = pick_faces(con, cfg, workers or cfg.workers)
    sample_s, sample_cpu = time.perf_counter() - started, cpu_seconds() - cpu0
    per_id = con.execute("SELECT count(*) FROM members WHERE identity_faces >= ?", [cfg.faces_per_identity]).fetchall()[0][0]
    # short_identities: flag samples the identities short of faces_per_identity too: named apart
    short = len(set(picked.column("identity_id").to_pylist())) - per_id
    short_text = f" and {short} short of {cfg.faces_per_identity} (short_identities: flag)" if short else ""
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if result is not None:
        result.update(scan_s=scan_s, sample_s=sample_s, scan_cpu_s=scan_cpu, sample_cpu_s=sample_cpu)
    return [
        f"synthetic table: {scan[0]} faces, {scan[5]} identities ({table.stat().st_size / 2**20:.0f} MiB Parquet, made in {made_s:.1f} s)",
        f"DuckDB full scan (sums of pose and quality): {scan_s:.2f} s wall, {scan_cpu:.2f} s CPU",
        f"cluster-sample (usable filter, sort, k-means K={cfg.pose_clusters}, selection; workers={workers or cfg.workers}): "
        f"{sample_s:.2f} s wall, {sample_cpu:.2f} s CPU -> {picked.num_rows} faces for {per_id} identities with >= {cfg.faces_per_identity} faces{short_text}",
        f"ratio cluster-sample / full scan: {sample_s / max(scan_s, 1e-9):.1f}x wall, {sample_cpu / max(scan_cpu, 1e-9):.1f}x CPU",
        f"throughput: {scan[0] / sample_s / 1e6:.2f} M faces/s; peak RSS {peak_mib:.0f} MiB",
    ]


def synthetic_clip_means(n_clips: int, dim: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit clip-mean embeddings of people with 1-3 clips each: (emb [n, dim], person [n]).

    A person's clips scatter around their centre at a cosine of about 0.7 to each other,
    strangers near 0, as for ArcFace/SFace clip means."""
    rng = np.random.default_rng(seed)
    person = np.repeat(np.arange(n_clips), rng.integers(1, 4, n_clips))[:n_clips]
    person = person[rng.permutation(n_clips)]  # a person's clips are not neighbours in clip order
    centres = rng.standard_normal((int(person.max()) + 1, dim), dtype=np.float32)
    emb = np.empty((n_clips, dim), np.float32)
    for begin in range(0, n_clips, 16384):  # bounded temporaries
        part = person[begin:begin + 16384]
        block = centres[part] + rng.standard_normal((len(part), dim), dtype=np.float32) * 0.6
        emb[begin:begin + len(part)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return emb, person


def _merge_seconds(emb: np.ndarray, cfg: CurateConfig, video: np.ndarray | None = None) -> tuple[float, float, pa.Table]:
    """assign_identities' time; `video` gives clips a shared source video (default: one each)."""
    n = len(emb)
    keys = [f"s/c{i:07d}" for i in range(n)]
    video = np.arange(n) if video is None else video
    clips = pa.table({"clip_key": keys, "video_key": [f"v{int(v)}" for v in video], "n_usable": np.ones(n, np.int64)})
    cpu0, started = cpu_seconds(), time.perf_counter()
    ident = merge.assign_identities(clips, emb, cfg)
    return time.perf_counter() - started, cpu_seconds() - cpu0, ident


def plant_lookalikes(emb: np.ndarray, person: np.ndarray, cfg: CurateConfig, seed: int = 0):
    """Appends n/100 (at least 2) one-clip strangers, each a look-alike of a person with one clip:
    half in their own video at cosine threshold +- 0.05 to that clip (a wrong embedding merge is
    possible), half in that person's video at guard +- 0.05 (a wrong video-key merge is). The
    base clips are untouched. Returns (emb, person, video): each person's clips in one video."""
    rng = np.random.default_rng(seed + 1)
    lone = np.flatnonzero(np.bincount(person)[person] == 1)
    m = min(max(2, len(emb) // 100), len(lone))
    target = rng.choice(lone, m, replace=False)
    guard = cfg.video_key_min_similarity if cfg.video_key_min_similarity is not None else cfg.embedding_similarity
    cos = np.where(np.arange(m) % 2 == 0, cfg.embedding_similarity, guard) + rng.uniform(-0.05, 0.05, m)
    w = rng.standard_normal((m, emb.shape[1])).astype(np.float32)
    w -= np.einsum("ij,ij->i", w, emb[target])[:, None] * emb[target]
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    extra = cos[:, None] * emb[target] + np.sqrt(1 - cos**2)[:, None] * w
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    strangers = person.max() + 1 + np.arange(m)
    video = np.concatenate([person, np.where(np.arange(m) % 2 == 0, strangers, person[target])])
    return np.concatenate([emb, extra.astype(np.float32)]), np.concatenate([person, strangers]), video


def pair_scores(ident: pa.Table, person: np.ndarray) -> tuple[float, float]:
    """(precision, recall) of the identities' clip pairs against the planted people's: of the
    pairs put in one identity, the share of one person; of one person's pairs, the share put
    in one identity (1.0 where there are none)."""
    found = np.unique(np.asarray(ident.column("identity_id").to_pylist()), return_inverse=True)[1].astype(np.int64)
    both = _pairs_alike(found * (int(person.max()) + 1) + person)
    same_found, same_person = _pairs_alike(found), _pairs_alike(person)
    return both / same_found if same_found else 1.0, both / same_person if same_person else 1.0


def _pairs_alike(codes: np.ndarray) -> int:
    counts = np.unique(codes, return_counts=True)[1].astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def run_bench_preset_merge(n_clips: int, cfg: CurateConfig, dim: int = 512) -> tuple[list[str], dict]:
    """The preset's own identity merge, as configured, on n/4, n/2 and n synthetic clips whose
    people's clips come from one source video each (as CelebV-HQ cuts several clips from one
    YouTube video), plus 1% planted look-alike strangers (plant_lookalikes), with the exponent
    of its time against the clip count and the pair precision and recall against the people.

    The paper preset merges by source video with a similarity guard and never by embedding:
    every pair of a video's clips, linear in the clips for videos of a few clips. Presets that
    also merge by embedding compare every pair of the groups that leaves."""
    sizes = [max(n_clips // 4, 2), max(n_clips // 2, 2), n_clips]
    setup_s, arithmetic = _filter_setup(dim) if cfg.merge_by_embedding else (0.0, "")
    walls, cpus, exact = [], [], None
    for n in sizes:
        emb, person, video = plant_lookalikes(*synthetic_clip_means(n, dim), cfg)
        wall, cpu, ident = _merge_seconds(emb, cfg, video=video)
        walls.append(wall)
        cpus.append(cpu)
        if n == sizes[0] and cfg.merge_by_video_key:
            exact = _same_as_every_clip_pair(emb, video, ident, cfg)
        del emb
    found = len(set(ident.column("identity_id").to_pylist()))
    precision, recall = pair_scores(ident, person)
    exponent = float(np.polyfit(np.log(sizes), np.log(np.maximum(walls, 1e-6)), 1)[0])
    how = " + ".join(name for name, on in (("source video", cfg.merge_by_video_key),
                                           ("embedding", cfg.merge_by_embedding)) if on) or "none"
    width = f"; {dim}-d clip means" if cfg.merge_by_embedding else ""
    planted = len(person) - n_clips
    lines = [f"the preset's merge ({cfg.merge}, by {how}{width}) of {n_clips} clips + {planted} planted look-alikes: "
             f"{walls[-1]:.2f} s wall, {cpus[-1]:.2f} s CPU, {found} identities ({len(np.unique(person))} synthetic "
             f"people); time ~ clips^{exponent:.2f} (wall) over {sizes} ({', '.join(f'{w:.2f}' for w in walls)} s)",
             f"  clip pairs against the synthetic people: precision {precision:.4f}, recall {recall:.4f}"]
    if exact is not None:
        lines.append(f"  same identities as the exact search of every clip pair (not video groups) at {sizes[0]} "
                     f"clips: {exact}")
    if cfg.merge_by_embedding:
        lines.append(f"  its pair filter: {arithmetic} from {TORCH_FROM} clips; set up once per run (torch import, "
                     f"arithmetic probe) in {setup_s:.2f} s, before the times above"
                     + ("" if n_clips >= TORCH_FROM else "; not paid by cluster-sample at this size"))
    # cluster-sample pays the setup where it imports torch: from TORCH_FROM clips
    paid_s = setup_s if n_clips >= TORCH_FROM else 0.0
    return lines, {"wall_s": walls[-1], "cpu_s": cpus[-1], "identities": found, "sizes": sizes, "walls": walls,
                   "exponent_wall": exponent, "setup_s": paid_s, "same_as_every_clip_pair": exact,
                   "precision": precision, "recall": recall, "planted": planted}


def _same_as_every_clip_pair(emb: np.ndarray, video: np.ndarray, ident: pa.Table, cfg: CurateConfig,
                             block: int = 1024) -> bool:
    """Whether the merge's identities (video groups compared by their pooled means) are the
    components of every clip pair of one video at the guard plus, where the preset merges by
    embedding, every clip pair at the threshold: plain float32 products of all clips, blocked."""
    guard = -np.inf if cfg.video_key_min_similarity is None else cfg.video_key_min_similarity
    a_all, b_all = [], []
    for begin in range(0, len(emb), block):
        sims = emb[begin:begin + block] @ emb.T
        upper = np.arange(len(emb))[None, :] > np.arange(begin, begin + len(sims))[:, None]
        edge = upper & (video[begin:begin + block, None] == video[None, :]) & (sims >= guard)
        if cfg.merge_by_embedding:
            edge |= upper & (sims >= cfg.embedding_similarity)
        a, b = np.nonzero(edge)
        a_all.append(a + begin)
        b_all.append(b)
    return _same_identities(ident, len(emb), np.concatenate(a_all), np.concatenate(b_all))


def _same_identities(ident: pa.Table, n: int, a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ident's identities are the connected components of the edges (a, b) of n clips."""
    exact = merge._components(n, a, b)
    found = np.unique(np.asarray(ident.column("identity_id").to_pylist()), return_inverse=True)[1]
    return bool(len(set(zip(exact.tolist(), found.tolist()))) == len(set(exact.tolist())) == found.max() + 1)


def _filter_setup(dim: int) -> tuple[float, str]:
    """(seconds, arithmetic) of the pair filter's one-off setup, done before any merge is timed:
    a cluster-sample run pays it once, a fit over sizes should not see it in its first size."""
    started = time.perf_counter()
    arithmetic = large_input_arithmetic(dim)
    return time.perf_counter() - started, arithmetic


def run_bench_merge(n_clips: int, cfg: CurateConfig, exact_check: int = 40_000, dim: int = 512) -> tuple[list[str], dict]:
    """The embedding merge alone (every clip its own video) at n/4, n/2 and n clips: its time,
    the exponent of a log-log fit, the arithmetic that filtered the pairs, and agreement with the
    plain float32 all-pairs reference at the smallest size (when it is at most `exact_check` clips)."""
    sizes = [max(n_clips // 4, 2), max(n_clips // 2, 2), n_clips]
    cfg = dataclasses.replace(cfg, merge="merge", merge_by_video_key=False, merge_by_embedding=True)
    arithmetic = _filter_setup(dim)[1]
    walls, cpus, lines = [], [], []
    agree = None
    for n in sizes:
        emb, person = synthetic_clip_means(n, dim)
        wall, cpu, ident = _merge_seconds(emb, cfg)
        walls.append(wall)
        cpus.append(cpu)
        found = np.unique(np.asarray(ident.column("identity_id").to_pylist()), return_inverse=True)[1]
        # A few of a person's clip pairs fall under the threshold by chance, so even the exact
        # merge splits some people: the true count is context, the all-pairs check is the test.
        precision, recall = pair_scores(ident, person)
        lines.append(f"merge of {n} clips: {wall:.2f} s wall, {cpu:.2f} s CPU, {found.max() + 1} identities "
                     f"({len(np.unique(person))} synthetic people; clip pairs: precision {precision:.4f}, "
                     f"recall {recall:.4f})")
        if n == sizes[0] and n <= exact_check:
            agree = _same_identities(ident, n, *merge.all_pairs_edges(emb, cfg.embedding_similarity)[:2])
            lines.append(f"  same identities as the plain float32 all-pairs merge at {n} clips: {agree}")
        del emb
    exponent = float(np.polyfit(np.log(sizes), np.log(np.maximum(walls, 1e-6)), 1)[0])
    exponent_cpu = float(np.polyfit(np.log(sizes), np.log(np.maximum(cpus, 1e-6)), 1)[0])
    lines.append(f"merge time ~ clips^{exponent:.2f} (wall), ^{exponent_cpu:.2f} (CPU), fitted over {sizes}: every "
                 f"pair is compared (quadratic); products filtered in {arithmetic} from {TORCH_FROM} clips")
    return lines, {"sizes": sizes, "wall_s": walls, "cpu_s": cpus, "exponent_wall": exponent,
                   "exponent_cpu": exponent_cpu, "same_as_all_pairs": agree, "arithmetic": arithmetic}
