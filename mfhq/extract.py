"""`mfhq extract`: source -> clip records -> planned shards -> an executor runs each shard.

Run folder layout:
  run.json            config, its fingerprint and the history of the run's configs, run id, code version,
                      model provenance, state
  plan.json           shard id -> clip keys (new clips of a later run go into new shards)
  ids.json            source -> {file: clip id} where ids depend on the folder's other files (folder)
  lock                pid and host of the process working on the folder
  faces/<shard>.parquet, clips/<shard>.parquet
  crops/<source>/<clip_id>/<frame>_<face>.jpg, masks/... .png
  done/<shard>.json   completion markers, written last (counts, provenance, config fingerprint)
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from mfhq import __version__
from mfhq.changed_videos import RETRY_CHANGED, find_changed
from mfhq.config import PipelineConfig
from mfhq.errors import MfhqError
from mfhq.executors import get_executor
from mfhq.manifest.io import DiskFull, ShardMarkers, atomic_write_json, is_disk_full
from mfhq.manifest.run_state import COMPLETE, pending_state
from mfhq.models.preflight import check_pipeline
from mfhq.plan import (RUN_REMEDY, RunLock, RunMismatch, RunStateError, check_resume, load_plan, plan_shards,
                       planned_ids, read_state, run_identity)
from mfhq.records import CLIP_STATUSES, SCHEMA_VERSION, Clip, Shard, item_key
from mfhq.signals import sigterm_as_interrupt
from mfhq.sources import SourceError, get_source, source_names
from mfhq.worker.watchdog import WorkerOutOfMemory

log = logging.getLogger(__name__)
__all__ = ["extract", "plan_shards", "RunMismatch", "RunStateError", "Interrupted", "DiskFullStop", "ExtractSummary"]


class Interrupted(MfhqError, RuntimeError):
    """Ctrl-C or SIGTERM: the run stopped cleanly; the message says how to resume."""


class DiskFullStop(MfhqError, RuntimeError):
    """The disk filled up: the run stopped cleanly; the message says where and how to resume."""


@dataclass
class ExtractSummary:
    shards_total: int = 0
    shards_skipped: int = 0
    shards_added: int = 0          # planned now for clips the run folder had not seen
    shards_run: int = 0            # run by this call: new, left unfinished by an earlier one, or retried
    shards_pending: int = 0        # not run: some of their clips are no longer in the source (or outside --limit/--clips)
    clips: int = 0
    faces_kept: int = 0
    faces_dropped: int = 0
    status_counts: dict = field(default_factory=dict)
    frames_detect_skipped: int = 0  # faces taken from the source's annotations (VFHQ)
    retried: int = 0               # transient failures run a second time
    videos_changed: str | None = None  # finished clips whose video changed, left as they are (no --retry changed)
    seconds: float = 0.0

    def add(self, stats) -> None:
        """Count a finished shard's ShardStats in."""
        self.clips += stats.clips
        self.faces_kept += stats.faces_kept
        self.faces_dropped += stats.faces_dropped
        self.frames_detect_skipped += stats.frames_detect_skipped
        self.retried += stats.retried
        for status, n in stats.status_counts.items():
            self.status_counts[status] = self.status_counts.get(status, 0) + n


def select_clips(items: list, clips_file: Path) -> list:
    """Keep the entries a file names, one per line: `<source>/<clip id>` or a bare clip id."""
    clips_file = Path(clips_file)
    if not clips_file.is_file():
        raise SourceError(f"--clips: {clips_file} not found")
    wanted = {line.strip() for line in clips_file.read_text().splitlines()}
    wanted = {w for w in wanted if w and not w.startswith("#")}
    chosen = [i for i in items if item_key(i) in wanted or i.clip_id in wanted]
    unmatched = wanted - {item_key(i) for i in chosen} - {i.clip_id for i in chosen}
    if unmatched:
        log.warning("%s: %d listed clip(s) are not in the source, e.g. %s", clips_file, len(unmatched), sorted(unmatched)[:3])
    return chosen


def _scan(source: str, root: Path, cfg: PipelineConfig, clips_file, limit, kept: dict) -> tuple[list, dict]:
    """(the items to plan, source -> {file: clip id} of their clips for ids.json); `kept`: the
    ids the run planned before, which a growing folder must not change."""
    adapter = get_source(source, Path(root))
    adapter.keep_ids(kept.get(adapter.name, {}))
    items = list(adapter.scan())
    if source == "all" and cfg.sources.names:  # the recipe's datasets only
        unknown = sorted(set(cfg.sources.names) - set(source_names()))
        if unknown:
            raise SourceError(f"sources.names: unknown source(s) {unknown}; available: {', '.join(source_names())}")
        items = [i for i in items if i.source in cfg.sources.names]
    if clips_file is not None:
        items = select_clips(items, clips_file)
    items = items if limit is None else items[:limit]
    return items, {adapter.name: adapter.ids_of([i for i in items if isinstance(i, Clip)])}


def _redo_keys(run_dir: Path, shard_ids: set, retry: set, by_key: dict, summary: "ExtractSummary") -> dict:
    """Finished shard -> the clips this call extracts again: those with a --retry status, and
    with `--retry changed` those whose video changed since (without it these are only named);
    and, on every call, those an earlier mfhq read in stored pixels (their rows' geometry is
    not what this one reads: changed_videos.READ_AS_STORED)."""
    changed = find_changed(run_dir, shard_ids, by_key, retry - {RETRY_CHANGED})
    redo = changed.with_status
    as_stored = sum(len(keys & set(by_key)) for keys in changed.as_stored.values())
    if as_stored:
        log.warning("%d finished clip(s) have non-square pixels that an earlier mfhq read as stored (faces squeezed "
                    "or stretched): extracting them again, resampled to square pixels", as_stored)
        for sid, keys in changed.as_stored.items():
            redo.setdefault(sid, set()).update(keys)
    if changed.unchecked_shards:
        log.info("%d finished shard(s) were written before clip rows recorded their video file: whether their "
                 "videos changed since is not checked", changed.unchecked_shards)
    if RETRY_CHANGED not in retry:
        if changed.clips:
            log.warning("%s", changed.line())
            summary.videos_changed = changed.line()
        return redo
    for sid, keys in changed.by_shard.items():
        redo.setdefault(sid, set()).update(keys)
    return redo


def _shards(plan: dict, by_key: dict, done: set, retry: dict, summary: ExtractSummary) -> list[Shard]:
    shards = []
    for sid, keys in plan.items():
        items = [by_key[k] for k in keys if k in by_key]
        if sid in done:
            only = retry.get(sid, set()) & set(by_key)
            if only:
                shards.append(Shard(sid, keys, items, frozenset(only)))
            else:
                summary.shards_skipped += 1
        elif len(items) < len(keys):
            log.warning("shard %s: %d of its clips are no longer in the source (or outside --limit/--clips); "
                        "left pending", sid, len(keys) - len(items))
            summary.shards_pending += 1
        else:
            shards.append(Shard(sid, keys, items))
    return shards


def extract(source: str, root: Path, run_dir: Path, cfg: PipelineConfig, models_dir=None,
            force: bool = False, limit: int | None = None, executor: str | None = None,
            clips_file: Path | None = None, retry=()) -> ExtractSummary:
    run_dir = Path(run_dir)
    made = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(run_dir), sigterm_as_interrupt():
            return _extract(source, root, run_dir, cfg, models_dir, force, limit, executor or cfg.run.executor,
                            clips_file, set(retry))
    except KeyboardInterrupt:  # before any shard ran (scanning, planning)
        raise Interrupted(f"interrupted before any work on {run_dir}; re-run the same command to start") from None
    except (DiskFull, OSError) as exc:
        if isinstance(exc, OSError) and not is_disk_full(exc):
            raise
        raise DiskFullStop(_disk_full_message(run_dir, exc)) from None
    finally:
        if made:  # a run that failed before writing anything (missing weights...) leaves no empty folder
            _remove_if_empty(run_dir)


def _remove_if_empty(run_dir: Path) -> None:
    try:
        run_dir.rmdir()  # only succeeds on an empty folder
    except OSError:
        pass


def _extract(source, root, run_dir: Path, cfg, models_dir, force, limit, executor, clips_file, retry) -> ExtractSummary:
    started = time.perf_counter()
    unknown = sorted(retry - set(CLIP_STATUSES) - {RETRY_CHANGED})
    if unknown:
        raise SourceError(f"--retry: unknown status {', '.join(map(repr, unknown))}; give a comma-separated "
                          f"list of: {', '.join(CLIP_STATUSES)}, or {RETRY_CHANGED} (clips whose video changed)")
    items, ids = _scan(source, root, cfg, clips_file, limit, planned_ids(run_dir))
    models = check_pipeline(cfg, models_dir)  # unknown backends and missing weights fail here, once
    run_path = run_dir / "run.json"
    previous = read_state(run_path, RUN_REMEDY)
    check_resume(previous, run_path, cfg, models, source, root, force)
    engine_cls = get_executor(executor)  # a missing optional extra fails before the plan changes
    plan, added = load_plan(run_dir, items, cfg.run.shard_size, ids)
    by_key = {item_key(i): i for i in items}
    done = ShardMarkers(run_dir).done_ids()
    summary = ExtractSummary(shards_total=len(plan), shards_added=added)
    shards = _shards(plan, by_key, done, _redo_keys(run_dir, done & set(plan), retry, by_key, summary), summary)
    summary.shards_run = len(shards)
    log.info("%d shards planned (%d new), %d done, %d to run%s", len(plan), added, summary.shards_skipped, len(shards),
             f" (retrying {', '.join(sorted(retry))})" if retry else "")
    run_meta = {
        "schema_version": SCHEMA_VERSION, "code_version": __version__, "config": cfg.to_dict(),
        "config_fingerprint": cfg.fingerprint(), **run_identity(previous, cfg),
        "source": source, "root": str(Path(root).resolve()),
        "models": models,  # task -> backend@weight hash
        "provenance": (previous or {}).get("provenance"), "executor": executor,
    }
    # Written before any work, so that a resumed run can check it was made by the same config.
    atomic_write_json(run_path, {**run_meta, "state": "running"})
    with logging_redirect_tqdm():  # log lines go above the progress bar, not through it
        _run_shards(engine_cls(cfg, str(run_dir), models_dir), shards, run_dir, plan, run_meta, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _run_shards(engine, shards: list[Shard], run_dir: Path, plan: dict, run_meta: dict, summary: ExtractSummary) -> None:
    """The executor runs the shards; run.json ends with the run's state (and the error that
    stopped it), never left "running"."""
    total = sum(len(s.only) if s.only else len(s.keys) for s in shards)
    # -q (warnings only) hides the bar too.
    shown = bool(shards) and log.isEnabledFor(logging.INFO)
    progress = tqdm(total=total, unit="clip", desc="extract", dynamic_ncols=True, disable=not shown)

    def on_stats(stats) -> None:
        summary.add(stats)
        if stats.provenance not in ("none", "unknown"):
            run_meta["provenance"] = stats.provenance
        # the count first: update() draws the bar, which must not show the kept faces of one shard fewer
        progress.set_postfix(kept=summary.faces_kept, refresh=False)
        progress.update(stats.clips)

    state = "failed"
    try:
        engine.run(shards, on_stats)
        state = pending_state(summary.shards_pending) if summary.shards_pending else COMPLETE
    except DiskFull:
        state = "stopped: disk full"
        raise
    except KeyboardInterrupt:
        state = "interrupted"
        raise Interrupted(_resume_line(run_dir, plan)) from None
    except MfhqError as exc:  # a worker out of memory, a model that cannot load: said in run.json too
        state = "failed: out of memory" if isinstance(exc, WorkerOutOfMemory) else "failed"
        run_meta["error"] = str(exc)
        raise
    finally:
        engine.close()
        progress.close()
        if run_meta["provenance"] is None:  # stopped before a shard's stats came back
            run_meta["provenance"] = ShardMarkers(run_dir).provenance()
        try:  # never left "running": a resumed run and `stats` read the state
            atomic_write_json(run_dir / "run.json", {**run_meta, "state": state})
        except OSError as exc:
            log.debug("could not update %s: %s", run_dir / "run.json", exc)


def _resume_line(run_dir: Path, plan: dict) -> str:
    finished = len(ShardMarkers(run_dir).done_ids() & set(plan))
    return (f"interrupted: {finished} of {len(plan)} shards of {run_dir} are done; "
            "re-run the same command to resume")


def _disk_full_message(run_dir: Path, exc: BaseException) -> str:
    detail = str(exc) if isinstance(exc, DiskFull) else f"{exc.filename or run_dir}: {exc.strerror or exc}"
    try:
        free = f"{shutil.disk_usage(run_dir).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return (f"the disk is full ({detail}; the filesystem of {run_dir.resolve()} has {free}). The run stopped: "
            "finished shards are kept, the shards in flight were not marked done. Free some space and re-run "
            "the same command to resume.")
