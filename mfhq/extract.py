"""`mfhq extract`: source -> clip records -> planned shards -> executor -> Parquet shards.

Run folder layout:
  run.json            config, its fingerprint, code version, model provenance
  plan.json           shard id -> clip keys (fixed at the first run; resume reuses it)
  faces/<shard>.parquet, clips/<shard>.parquet
  crops/<source>/<clip_id>/<frame>_<face>.jpg, masks/... .png
  done/<shard>.json   completion markers, written last
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mfhq import __version__
from mfhq.config import PipelineConfig
from mfhq.executors import EXECUTORS, ClipOutcome
from mfhq.manifest.io import ShardMarkers, atomic_write_json, atomic_write_table
from mfhq.models.preflight import check_pipeline
from mfhq.records import CLIP_SCHEMA, FACE_SCHEMA, SCHEMA_VERSION, Clip, empty_clip_row
from mfhq.sources import SourceError, get_source, source_names
from mfhq.sources.base import SourceProblem

log = logging.getLogger(__name__)


class RunMismatch(RuntimeError):
    """The run folder was made by another config or clip list; refusing to mix rows."""


@dataclass
class ExtractSummary:
    shards_total: int = 0
    shards_skipped: int = 0
    clips: int = 0
    faces_kept: int = 0
    faces_dropped: int = 0
    status_counts: dict = field(default_factory=dict)
    frames_detect_skipped: int = 0  # faces taken from the source's annotations (VFHQ)
    seconds: float = 0.0


def _item_key(item: Clip | SourceProblem) -> str:
    return item.key if isinstance(item, Clip) else f"{item.source}/{item.clip_id}"


def plan_shards(items: list[Clip | SourceProblem], shard_size: int) -> dict[str, list[str]]:
    """Deterministic shards: sorted by key, grouped per source, `<source>-<n>` ids."""
    by_source: dict[str, list[str]] = {}
    for item in items:
        key = _item_key(item)
        by_source.setdefault(key.split("/", 1)[0], []).append(key)
    plan = {}
    for source, keys in sorted(by_source.items()):
        keys = sorted(set(keys))
        for n, begin in enumerate(range(0, len(keys), shard_size)):
            plan[f"{source}-{n:05d}"] = keys[begin:begin + shard_size]
    return plan


def _load_or_write_plan(run_dir: Path, plan: dict, cfg: PipelineConfig, force: bool, models: dict | None = None) -> dict:
    plan_path, run_path = run_dir / "plan.json", run_dir / "run.json"
    if plan_path.is_file():
        import json

        stored = json.loads(plan_path.read_text())
        if sorted(k for ks in stored.values() for k in ks) != sorted(k for ks in plan.values() for k in ks):
            raise RunMismatch(f"{plan_path}: this run folder was planned for a different clip list; use a new --out")
        previous = json.loads(run_path.read_text()) if run_path.is_file() else {}
        if previous.get("config_fingerprint") != cfg.fingerprint() and not force:
            raise RunMismatch(
                f"{run_path}: this run was made with another pipeline config "
                f"({previous.get('config_fingerprint')} vs {cfg.fingerprint()}); resuming would mix rows "
                "from two configs. Use a new --out, or --force to resume anyway."
            )
        changed = {t: (previous["models"].get(t), m) for t, m in (models or {}).items()
                   if "models" in previous and previous["models"].get(t) != m}
        if changed and not force:
            raise RunMismatch(
                f"{run_path}: this run was made with other model weights ("
                + "; ".join(f"{t}: {old} vs {new}" for t, (old, new) in sorted(changed.items()))
                + "); resuming would mix rows from two models. Use a new --out, or --force to resume anyway."
            )
        return stored
    atomic_write_json(plan_path, plan)
    return plan


def select_clips(items: list, clips_file: Path) -> list:
    """Keep the entries a file names, one per line: `<source>/<clip id>` or a bare clip id."""
    clips_file = Path(clips_file)
    if not clips_file.is_file():
        raise SourceError(f"--clips: {clips_file} not found")
    wanted = {line.strip() for line in clips_file.read_text().splitlines()}
    wanted = {w for w in wanted if w and not w.startswith("#")}
    chosen = [i for i in items if _item_key(i) in wanted or i.clip_id in wanted]
    unmatched = wanted - {_item_key(i) for i in chosen} - {i.clip_id for i in chosen}
    if unmatched:
        log.warning("%s: %d listed clip(s) are not in the source, e.g. %s", clips_file, len(unmatched), sorted(unmatched)[:3])
    return chosen


def extract(source: str, root: Path, run_dir: Path, cfg: PipelineConfig, models_dir=None,
            force: bool = False, limit: int | None = None, executor: str = "local",
            clips_file: Path | None = None) -> ExtractSummary:
    started = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    items = list(get_source(source, Path(root)).scan())
    if source == "all" and cfg.sources.names:  # the recipe's datasets only
        unknown = sorted(set(cfg.sources.names) - set(source_names()))
        if unknown:
            raise SourceError(f"sources.names: unknown source(s) {unknown}; available: {', '.join(source_names())}")
        items = [i for i in items if i.source in cfg.sources.names]
    if clips_file is not None:
        items = select_clips(items, clips_file)
    if limit is not None:
        items = items[:limit]
    models = check_pipeline(cfg, models_dir)  # unknown backends and missing weights fail here, once
    plan = _load_or_write_plan(run_dir, plan_shards(items, cfg.run.shard_size), cfg, force, models)
    by_key = {_item_key(i): i for i in items}
    markers = ShardMarkers(run_dir)
    done = markers.done_ids()
    pending = {sid: keys for sid, keys in plan.items() if sid not in done}
    summary = ExtractSummary(shards_total=len(plan), shards_skipped=len(plan) - len(pending))
    log.info("%d shards planned, %d already done, %d to run", len(plan), summary.shards_skipped, len(pending))

    results: dict[str, dict[str, ClipOutcome]] = {sid: {} for sid in pending}
    shard_of = {key: sid for sid, keys in pending.items() for key in keys}
    run_meta = {
        "schema_version": SCHEMA_VERSION, "code_version": __version__, "config": cfg.to_dict(),
        "config_fingerprint": cfg.fingerprint(), "source": source, "root": str(root),
        "models": models,  # task -> backend@weight hash
    }
    # Written before any work, so that a resumed run can check it was made by the same config.
    atomic_write_json(run_dir / "run.json", {**run_meta, "provenance": "pending"})
    engine = EXECUTORS[executor](cfg, str(run_dir), models_dir)
    progress = tqdm(total=len(shard_of), unit="clip", desc="extract", dynamic_ncols=True)

    def finish(outcome: ClipOutcome) -> None:
        sid = shard_of[outcome.clip.key]
        results[sid][outcome.clip.key] = outcome
        kept = sum(f["kept"] for f in outcome.faces)
        summary.faces_kept += kept
        summary.faces_dropped += len(outcome.faces) - kept
        status = outcome.row["status"]
        summary.status_counts[status] = summary.status_counts.get(status, 0) + 1
        summary.clips += 1
        summary.frames_detect_skipped += outcome.row.get("n_frames_detect_skipped") or 0
        progress.update(1)
        progress.set_postfix(kept=summary.faces_kept, refresh=False)
        if len(results[sid]) == len(pending[sid]):
            _write_shard(run_dir, sid, pending[sid], results.pop(sid), markers)

    # Entries the source could not turn into clips get their status rows without a worker.
    for key, item in list(by_key.items()):
        if key in shard_of and isinstance(item, SourceProblem):
            fake = Clip(item.source, item.clip_id, Path(""), item.video_key or item.clip_id, split=item.split)
            finish(ClipOutcome(fake, [], empty_clip_row(fake, item.status, item.reason, "none")))
    todo = [by_key[k] for sid in pending for k in pending[sid] if isinstance(by_key.get(k), Clip)]
    try:
        engine.run(todo, finish)
    finally:
        progress.close()
        run_meta["provenance"] = engine.provenance
        atomic_write_json(run_dir / "run.json", run_meta)
    summary.seconds = time.perf_counter() - started
    return summary


def _write_shard(run_dir: Path, shard_id: str, keys: list[str], outcomes: dict, markers: ShardMarkers) -> None:
    faces = [f for key in keys for f in outcomes[key].faces]
    clips = [outcomes[key].row for key in keys]
    atomic_write_table(run_dir / "faces" / f"{shard_id}.parquet", faces, FACE_SCHEMA)
    atomic_write_table(run_dir / "clips" / f"{shard_id}.parquet", clips, CLIP_SCHEMA)
    markers.mark_done(shard_id, {"clips": len(clips), "faces": len(faces), "kept": sum(f["kept"] for f in faces)})
