"""`mfhq cluster-sample`: extract runs -> identities -> 8 faces each -> manifests.

All per-face work is DuckDB (filters, joins, ordering), numpy over whole columns, or the compiled
per-identity kernels of `mfhq.curate.kernels`; Python loops run over k-means batches only.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from mfhq import __version__
from mfhq.config import ConfigError, CurateConfig
from mfhq.curate.cluster import JOB_FACES, NotInKeyOrder, stream_select
from mfhq.curate.merge import assign_identities, clip_means, prepare, reads_embeddings
from mfhq.curate.split import assign_split
from mfhq.curate.target import check_out_outside_runs, check_target
from mfhq.decode_shown import READ_AS_STORED
from mfhq.manifest.card import render_card
from mfhq.manifest.clip_means import USABLE_FACE
from mfhq.manifest.folder import CARD, IDENTITIES, MATERIALIZE, ManifestLock, run_entries, write_manifest_folder
from mfhq.manifest.schema import IDENTITY_SCHEMA, MANIFEST_SCHEMA, SPLITS
from mfhq.manifest.run_state import read_run_state, require_complete, snapshot
from mfhq.manifest.views import RunError, check_given_once, check_run, connect_runs, naming_damaged_shards
from mfhq.manifest.schema import ManifestError

log = logging.getLogger(__name__)
POSE = ("yaw", "pitch", "roll")


class EmptyTrainSplit(ManifestError):
    """The split left nothing to train on: an error, not a manifest to find out about later."""


def empty_train_message(out: Path, counts: dict, cfg: CurateConfig) -> str:
    why = (f"the split holds out whole groups of identities and their videos until curate.test_videos "
           f"({cfg.test_videos}) videos are in test, and these {counts['test']['videos']} videos form too few groups "
           "to leave one for train: sample more videos, or lower curate.test_videos"
           if cfg.split == "videos" else "the sources' own split puts every sampled clip in test")
    return (f"no faces in the train split ({counts['test']['identities']} identities, {counts['test']['faces']} "
            f"faces, all in test): {why}. Nothing was written to {out}")


def usable_filter(cfg: CurateConfig) -> str:
    cond = USABLE_FACE
    if cfg.min_quality is not None:
        cond += f" AND quality >= {float(cfg.min_quality)}"
    return cond


def pick_faces(con: duckdb.DuckDBPyConnection, cfg: CurateConfig, workers: int) -> pa.Table:
    """Needs views `usable_faces` (faces) and `members` (source, clip_id, identity_id,
    identity_faces). Returns the chosen faces' keys with sample_rank and pose_cluster."""
    if cfg.short_identities not in ("drop", "flag"):
        raise ConfigError(f"curate.short_identities must be 'drop' or 'flag', got {cfg.short_identities!r}")
    keep_short = "TRUE" if cfg.short_identities == "flag" else f"m.identity_faces >= {cfg.faces_per_identity}"
    if cfg.pose_clusters <= cfg.faces_per_identity:
        raise ConfigError(f"curate.pose_clusters ({cfg.pose_clusters}) must exceed faces_per_identity "
                         f"({cfg.faces_per_identity}): the paper over-clusters")
    # Integer sort keys, the strings joined back for the chosen faces only: sorting 17M rows by
    # integer codes is several times faster than by their strings. clip_rank numbers the clips in
    # (identity, clip) order, so one key orders faces by identity, then clip; id_code of a clip_rank
    # is looked up from pick_members instead of being sorted along with every face.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE pick_members AS SELECT *, (row_number() OVER (ORDER BY id_code, clip_ord) - 1)::BIGINT "
        "AS clip_rank FROM (SELECT source, clip_id, identity_id, (dense_rank() OVER (ORDER BY identity_id) - 1)::BIGINT "
        f"AS id_code, (row_number() OVER (ORDER BY source, clip_id) - 1)::BIGINT AS clip_ord FROM members m WHERE {keep_short})"
    )
    members = con.sql("SELECT identity_id, source, clip_id, id_code FROM pick_members ORDER BY clip_rank").to_arrow_table()
    parts = _select_in_key_order(con, cfg, workers, members.column("id_code").to_numpy())
    keys = ["identity_id", "source", "clip_id", "frame_index", "face_index"]
    if not parts:
        types = con.sql("SELECT frame_index, face_index FROM usable_faces LIMIT 0").to_arrow_table().schema
        empty = {name: pa.array([], (members.schema if name in members.schema.names else types).field(name).type)
                 for name in keys}
        return pa.table(empty).append_column("sample_rank", pa.array([], pa.int16())).append_column(
            "pose_cluster", pa.array([], pa.int16()))
    picked = pa.concat_tables(parts)
    clip = members.take(picked.column("clip_rank"))
    return pa.table({"identity_id": clip.column("identity_id"), "source": clip.column("source"),
                     "clip_id": clip.column("clip_id"), "frame_index": picked.column("frame_index"),
                     "face_index": picked.column("face_index"), "sample_rank": picked.column("sample_rank"),
                     "pose_cluster": picked.column("pose_cluster")})


def _select_in_key_order(con: duckdb.DuckDBPyConnection, cfg: CurateConfig, workers: int,
                         identity_of: np.ndarray) -> list[pa.Table]:
    """stream_select over the usable faces in (clip_rank, frame_index, face_index) order, in
    record batches cut into jobs at identity boundaries: memory holds workers + 1 jobs, not the
    17M-row table (results do not depend on the batching).

    Faces of runs written clip by clip in key order often arrive in that order already: read
    first without ORDER BY, in one DuckDB thread (several interleave their rows), while the
    k-means runs beside it, and fall back to sorting at the first row out of order."""
    keys = ["clip_rank", "frame_index", "face_index"]
    select = ("SELECT p.clip_rank, u.frame_index, u.face_index, u.yaw, u.pitch, u.roll, u.quality "
              "FROM usable_faces u JOIN pick_members p USING (source, clip_id)")
    args = (cfg.pose_clusters, cfg.faces_per_identity, cfg.kmeans_iters, cfg.seed, cfg.chunk_faces, workers, keys,
            identity_of)
    batch = min(cfg.chunk_faces, JOB_FACES)  # small batches: DuckDB reuses their memory
    threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    try:
        con.execute("SET threads = 1")
        return list(stream_select(con.sql(select).to_arrow_reader(batch), *args, check_order=True))
    except NotInKeyOrder:
        log.debug("cluster-sample: faces not in key order; sorting them")
    finally:
        con.execute(f"SET threads = {int(threads)}")
    return list(stream_select(con.sql(f"{select} ORDER BY {', '.join(keys)}").to_arrow_reader(batch), *args))


def _code_version() -> str:
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def cluster_sample(run_dirs: list[Path], out: Path, cfg: CurateConfig, pipeline: str = "default",
                   workers: int | None = None, allow_partial: bool = False, force: bool = False) -> dict:
    """force: replace a manifest built from other runs or another config (mfhq.curate.target)."""
    out = Path(out)
    check_out_outside_runs(out)
    check_given_once(run_dirs)  # before the manifest's runs are compared with these
    for run_dir in run_dirs:
        check_run(run_dir)  # a folder that is no run at all is named as such first
    require_complete(run_dirs, allow_partial)
    check_target(out, run_dirs, cfg, force)  # before any file is made in someone else's folder
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with ManifestLock(out, "mfhq cluster-sample"), naming_damaged_shards(run_dirs):
            if check_target(out, run_dirs, cfg, force):  # again under the lock: what it finds is what is replaced
                # its markers vouch for files in the other runs' folders: materialize plans anew
                shutil.rmtree(out / MATERIALIZE, ignore_errors=True)
            return _cluster_sample(run_dirs, out, cfg, pipeline, workers, allow_partial)
    except BaseException:
        if made and not any(out.iterdir()):  # a failed first write leaves no empty folder behind
            out.rmdir()
        raise


def _cluster_sample(run_dirs: list[Path], out: Path, cfg: CurateConfig, pipeline: str, workers: int | None,
                    allow_partial: bool) -> dict:
    started = time.perf_counter()
    con, metas = connect_runs(run_dirs)
    runs = run_entries([m["run_dir"] for m in metas], out)
    for meta, entry in zip(metas, runs):
        meta["name"] = entry["name"]
        meta["snapshot"] = snapshot(meta["run_dir"])  # so that `stats` can tell when the run changes since
        meta["configs"] = [fp for fp, _ in read_run_state(meta["run_dir"]).configs]  # of the shards read
    warn_mixed_configs(metas)
    warn_read_as_stored(con)
    con.register("run_names", pa.table({"run_dir": [m["run_dir"] for m in metas], "run": [r["name"] for r in runs]}))
    prepare(cfg, con.execute("SELECT count(*) FROM clips").fetchall()[0][0])  # the clip rows: at least the clips
    con.execute(f"CREATE TEMP VIEW usable_faces AS SELECT * FROM faces WHERE {usable_filter(cfg)}")
    con.execute(
        "CREATE TEMP TABLE clip_codes AS SELECT (row_number() OVER (ORDER BY f.source, f.clip_id) - 1)::BIGINT AS clip_code, "
        "f.source, f.clip_id, f.source || '/' || f.clip_id AS clip_key, f.video_key, c.split AS source_split, f.n_usable, "
        "c.person_key FROM (SELECT source, clip_id, min(video_key) AS video_key, count(*) AS n_usable FROM usable_faces "
        "GROUP BY ALL) f LEFT JOIN (SELECT source, clip_id, any_value(split) AS split, any_value(person_key) AS person_key "
        "FROM clips GROUP BY ALL) c USING (source, clip_id)"
    )
    clips = con.sql("SELECT * FROM clip_codes ORDER BY clip_code").to_arrow_table()
    if clips.num_rows == 0:
        raise RunError(f"{', '.join(str(r) for r in run_dirs)}: no usable faces (kept, with pose and quality"
                       + (f", quality >= {cfg.min_quality}" if cfg.min_quality is not None else "") + "); nothing to sample")
    emb = (clip_means(con, clips.num_rows, narrowed=cfg.min_quality is not None) if reads_embeddings(cfg)
           else np.zeros((clips.num_rows, 1), np.float32))
    ident = assign_identities(clips, emb, cfg)
    con.register("ident_arrow", ident.append_column("clip_code", pa.array(np.arange(clips.num_rows, dtype=np.int64))))
    con.execute(
        "CREATE TEMP TABLE members AS SELECT c.*, i.identity_id, i.decision, i.evidence, "
        "sum(c.n_usable) OVER (PARTITION BY i.identity_id) AS identity_faces "
        "FROM clip_codes c JOIN ident_arrow i USING (clip_code) WHERE i.decision <> 'dedup_dropped'"
    )
    per_id = cfg.faces_per_identity
    picked = pick_faces(con, cfg, workers or cfg.workers)
    con.register("picked_arrow", picked)
    rows = con.sql(
        f"SELECT p.identity_id, NULL AS split, m.source_split, f.source, f.video_key, f.clip_id, f.frame_index, f.face_index, "
        "n.run, f.crop_path, f.mask_path, f.landmarks, f.face_size, f.yaw, f.pitch, f.roll, f.quality, "
        f"p.pose_cluster, p.sample_rank, m.identity_faces < {per_id} AS short, f.embedding, f.provenance "
        "FROM picked_arrow p JOIN faces f USING (source, clip_id, frame_index, face_index) "
        "JOIN run_names n USING (run_dir) JOIN members m USING (source, clip_id) ORDER BY p.identity_id, p.sample_rank"
    ).to_arrow_table()
    # every member clip (duplicates too) ties its identity to its video, not only the sampled ones,
    # and its official split counts as much as a sampled clip's
    links = con.sql("SELECT i.identity_id, c.video_key, c.source_split FROM clip_codes c JOIN ident_arrow i USING (clip_code)")
    split = assign_split(rows, cfg, links.to_arrow_table())
    rows = rows.set_column(rows.schema.get_field_index("split"), "split", pa.array(split.tolist(), pa.string()))
    summary = write_manifests(out, rows, cfg, pipeline, metas, _identities(con, rows, cfg), _crops_state(metas),
                              allow_partial)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    log.debug("cluster-sample: %s", summary)
    return summary


def warn_mixed_configs(metas: list[dict]) -> None:
    """Faces of several pipeline configs (`extract --force`, or runs of other presets) sampled together."""
    if len(made := {fp for m in metas for fp in m["configs"]}) > 1:
        log.warning("the runs read mix %d pipeline configs (%s); the manifest's runs[].configs say which", len(made),
                    "; ".join(f"run {m['run_dir']}: {', '.join(m['configs'])}" for m in metas))


def warn_read_as_stored(con: duckdb.DuckDBPyConnection) -> None:
    """Clips of non-square pixels an earlier mfhq read as stored: their faces are squeezed or
    stretched, until the same `mfhq extract` into their run extracts them again as shown."""
    found = con.execute("SELECT count(*), list(DISTINCT run_dir ORDER BY run_dir) FROM clips WHERE "
                        f"contains(coalesce(reason, ''), '{READ_AS_STORED}')").fetchall()[0]
    if found[0]:
        log.warning("%d clip(s) have non-square pixels that an earlier mfhq read as stored, so their faces are squeezed "
                    "or stretched in the manifest; run the same `mfhq extract` into %s again (it extracts just those "
                    "clips again, as shown) and then this command", found[0], ", ".join(found[1]))


def _crops_state(metas: list[dict]) -> dict:
    """The sidecar's crops state: pending while a run made its crops later (align.crops: materialize)."""
    later = any(((m.get("config") or {}).get("align") or {}).get("crops") == "materialize" for m in metas)
    return {"crops": "pending" if later else "written"}


def _identities(con: duckdb.DuckDBPyConnection, rows: pa.Table, cfg: CurateConfig) -> pa.Table:
    con.register("rows_arrow", rows.select(["identity_id", "split"]))
    short = "short_flagged" if cfg.short_identities == "flag" else "short_dropped"
    table = con.sql(
        "WITH t AS (SELECT c.source, c.clip_id, c.video_key, c.source_split, i.identity_id, i.decision, i.evidence, c.n_usable, "
        "sum(CASE WHEN i.decision = 'dedup_dropped' THEN 0 ELSE c.n_usable END) OVER (PARTITION BY i.identity_id) AS identity_faces "
        "FROM clip_codes c JOIN ident_arrow i USING (clip_code)) "
        "SELECT t.source, t.clip_id, t.video_key, t.identity_id, t.decision, t.evidence, t.n_usable, t.identity_faces::BIGINT AS identity_faces, "
        f"CASE WHEN t.decision = 'dedup_dropped' THEN 'duplicate' WHEN t.identity_faces < {cfg.faces_per_identity} THEN '{short}' "
        "ELSE 'sampled' END AS status, s.split, t.source_split "
        "FROM t LEFT JOIN (SELECT DISTINCT identity_id, split FROM rows_arrow) s ON s.identity_id = t.identity_id "
        "ORDER BY t.source, t.clip_id"
    ).to_arrow_table()
    return table.cast(IDENTITY_SCHEMA)


def write_manifests(out: Path, rows: pa.Table, cfg: CurateConfig, pipeline: str, metas: list[dict],
                    identities: pa.Table | None, crops: dict | None = None, allow_partial: bool = False) -> dict:
    """metas: one per run, with `name` and `run_dir` (and the run.json's provenance fields);
    crops: the sidecar's crops state (mfhq.manifest.folder.CROPS_STATES) and what made them.
    Every file of the folder is written as one unit (write_manifest_folder)."""
    out = Path(out)
    rows = rows.cast(MANIFEST_SCHEMA)
    split = rows.column("split").to_numpy(zero_copy_only=False)
    counts, parts = {}, {}
    for name in SPLITS:
        part = parts[name] = rows.filter(pa.array(split == name))
        counts[name] = {"faces": part.num_rows, "identities": len(set(part.column("identity_id").to_pylist())),
                        "videos": len(set(part.column("video_key").to_pylist())),
                        "short_identities": len(set(part.filter(part.column("short")).column("identity_id").to_pylist()))}
    if counts["train"]["faces"] == 0:
        raise EmptyTrainSplit(empty_train_message(out, counts, cfg))
    entries = {m["name"]: {"name": m["name"], "run_dir": m["run_dir"],
                           "run_dir_relative": os.path.relpath(m["run_dir"], out.resolve())} for m in metas}
    sidecar = {
        "code_version": _code_version(), "pipeline": pipeline, "config": dataclasses.asdict(cfg), "counts": counts,
        "paths": "crop_path and mask_path are relative to the folder of the row's `run` (as in the run's faces/); "
                 "runs[].run_dir_relative is that folder relative to this one, runs[].run_dir where it was",
        "runs": [{**entries[m["name"]], "provenance": m.get("provenance"), "code_version": m.get("code_version"),
                  "config_fingerprint": m.get("config_fingerprint"), "schema_version": m.get("schema_version"),
                  "run_id": m.get("run_id"), "configs": m.get("configs"), "snapshot": m.get("snapshot")}
                 for m in metas],
        "allow_partial": allow_partial,  # True: built with --allow-partial from a run that was not complete
        "model_provenance": sorted({m.get("provenance") for m in metas if m.get("provenance")}),
        **(crops or {"crops": "written"}),
    }
    files = {CARD: render_card(counts).encode()}
    if identities is not None:  # (folders written before identities.parquet existed have none)
        files[IDENTITIES] = identities
    write_manifest_folder(out, parts, sidecar, MANIFEST_SCHEMA, files)
    return {"train": counts["train"], "test": counts["test"], "out": str(out)}
