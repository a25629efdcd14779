"""Clips -> shards of work, the plan on disk, incremental additions, and the run folder's lock.

A shard id is `<source>-<n>`; its clips are fixed once planned. A later run on the same folder
plans only clips it has not seen into new shards numbered after the existing ones, so finished
shards are never touched, which is only right for the same videos: a resume with another config,
models, --source or --root is refused (check_resume). Two processes on one run folder would write
the same shards: a lock file naming its holder keeps the second one out.
"""
from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path

from mfhq.config import HOW_NOT_WHAT, SCHEDULE_PER_CHUNK, PipelineConfig, fingerprint_of
from mfhq.errors import MfhqError
from mfhq.manifest.io import atomic_write_json
from mfhq.manifest.lock import FolderLock
from mfhq.records import item_key

log = logging.getLogger(__name__)


class RunStateError(MfhqError, RuntimeError):
    """plan.json / run.json / the lock cannot be used; the message names the file and what to do."""


class RunMismatch(MfhqError, RuntimeError):
    """The run folder was made by another config, models or videos; refusing to mix rows."""


def plan_shards(items, shard_size: int, start: dict[str, int] | None = None) -> dict[str, list[str]]:
    """Deterministic shards: sorted by key, grouped per source, `<source>-<n>` ids counted from
    `start[source]` (0 for a new run)."""
    by_source: dict[str, set[str]] = {}
    for item in items:
        key = item_key(item)
        by_source.setdefault(key.split("/", 1)[0], set()).add(key)
    plan = {}
    for source, keys in sorted(by_source.items()):
        keys = sorted(keys)
        first = (start or {}).get(source, 0)
        for n, begin in enumerate(range(0, len(keys), shard_size), start=first):
            plan[f"{source}-{n:05d}"] = keys[begin:begin + shard_size]
    return plan


def extend_plan(stored: dict[str, list[str]], items, shard_size: int) -> tuple[dict, int]:
    """The stored plan plus new shards for the clips it does not hold; returns (plan, new shards)."""
    planned = {k for keys in stored.values() for k in keys}
    fresh = [i for i in items if item_key(i) not in planned]
    start: dict[str, int] = {}
    for sid in stored:
        source, n = sid.rsplit("-", 1)
        start[source] = max(start.get(source, 0), int(n) + 1)
    added = plan_shards(fresh, shard_size, start)
    return {**stored, **added}, len(added)


def read_state(path: Path, remedy: str) -> dict | None:
    """A run-state JSON file, or None when absent; a damaged one is a RunStateError saying what to do."""
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunStateError(f"{path} is damaged (not valid JSON: {exc}). mfhq writes it atomically, so it was "
                            f"truncated or changed outside mfhq; {remedy}") from exc
    if not isinstance(content, dict):
        raise RunStateError(f"{path} is damaged (a JSON object was expected); {remedy}")
    return content


PLAN_REMEDY = ("restore it from a backup, or start again in a new --out (finished shards cannot be matched "
               "to their clips without it)")
RUN_REMEDY = ("delete it and re-run the same command with --force to resume (the config check is then "
              "skipped: make sure the config is the one the run was made with), or use a new --out")


def check_resume(previous: dict | None, run_path: Path, cfg: PipelineConfig, models: dict, source: str, root: Path,
                 force: bool) -> None:
    """Refuse to resume a run (`previous`: its run.json) with another config, models or videos;
    --force resumes anyway."""
    if previous is None:
        return
    _check_videos(previous, run_path, source, root, force)
    if force:
        return
    earlier = earlier_fingerprint(previous, cfg)
    if earlier is not None:
        log.info("%s: the run's config fingerprint %s was made by an earlier mfhq that also counted options which change "
                 "no row (%s); it makes the rows this config makes: continuing (fingerprint %s from now on)", run_path,
                 earlier, HOW_NOT_WHAT, cfg.fingerprint())
    elif previous.get("config_fingerprint") != cfg.fingerprint():
        from mfhq.config_diff import config_differences

        differ = config_differences(previous.get("config") or {}, cfg) or [
            SCHEDULE_PER_CHUNK if made_per_chunk(previous, cfg) else
            f"fingerprint {previous.get('config_fingerprint')} in the run, {cfg.fingerprint()} now"]
        raise RunMismatch(
            f"{run_path}: this run was made with another pipeline config ({'; '.join(differ)}); resuming would "
            "mix rows from two configs. Use a new --out, the run's own options, or --force to resume anyway.")
    changed = {t: (previous["models"].get(t), m) for t, m in models.items()
               if "models" in previous and previous["models"].get(t) != m}
    if changed:
        raise RunMismatch(
            f"{run_path}: this run was made with other model weights ("
            + "; ".join(f"{t}: {old} vs {new}" for t, (old, new) in sorted(changed.items()))
            + "); resuming would mix rows from two models. Use a new --out, or --force to resume anyway.")


def _check_videos(previous: dict, run_path: Path, source: str, root: Path, force: bool) -> None:
    """The same videos as the run's: a clip key already planned counts as done, so resuming on
    another --root (or --source) would skip its videos of the same names without a row. A root
    recorded as given (runs before roots were resolved) also matches the same text."""
    if "source" not in previous or "root" not in previous:
        return
    old_root = str(previous["root"])
    same_root = old_root == str(root) or Path(old_root).resolve() == Path(root).resolve()
    if previous["source"] == source and same_root:
        return
    what = (f"--source {previous['source']} --root {old_root} in the run, --source {source} --root "
            f"{Path(root).resolve()} now")
    if force:
        log.warning("%s: --force: resuming with other videos (%s); clips the run already planned are taken as done",
                    run_path, what)
        return
    raise RunMismatch(
        f"{run_path}: this run was made from other videos ({what}); resuming would take every video here whose "
        "clip id the run already planned as done, without a row. Use the run's own --source and --root, a new "
        "--out for these videos, or --force if the same videos moved.")


def earlier_fingerprint(previous: dict | None, cfg: PipelineConfig) -> str | None:
    """The run's recorded fingerprint where it differs from cfg's only because an earlier mfhq
    also fingerprinted options that change no row (mfhq.config.HOW_NOT_WHAT): the config the run
    recorded fingerprints as cfg does today, and the rows are cfg's (not made_per_chunk). None
    otherwise."""
    earlier = _earlier_rule(previous, cfg)
    return None if earlier is None or cfg.embed.every > 1 else earlier


def made_per_chunk(previous: dict | None, cfg: PipelineConfig) -> bool:
    """A run an earlier mfhq made with cfg's options and embed.every > 1: its embedding schedule
    started over at each decode chunk (mfhq.config.SCHEDULE_PER_CHUNK), so its rows are not
    cfg's, though its config fingerprints as cfg does today."""
    return cfg.embed.every > 1 and _earlier_rule(previous, cfg) is not None


def _earlier_rule(previous: dict | None, cfg: PipelineConfig) -> str | None:
    """The run's recorded fingerprint where it is not cfg's but the config the run recorded
    fingerprints as cfg does today: an earlier mfhq's rule made it."""
    recorded, config = (previous or {}).get("config_fingerprint"), (previous or {}).get("config")
    now = cfg.fingerprint()
    if recorded and recorded != now and isinstance(config, dict) and fingerprint_of(config) == now:
        return str(recorded)
    return None


def run_identity(previous: dict | None, cfg: PipelineConfig) -> dict:
    """run.json's fields that outlive a resume: `run_id` (made once, when the folder's first
    extract starts: a run deleted and made again at the same path is another run, and what was
    derived from the old one, such as `mfhq materialize`'s markers, must not vouch for the new
    one), `created`, and `configs`: each config the run was extracted with (`--force` may change
    it), with when that config's first extract started, oldest first. A config that makes the
    same rows as the one before under another fingerprint (earlier_fingerprint) names it in
    `same_rows_as`, so that readers count the run's shards as one config."""
    previous = previous or {}
    fingerprint, earlier = cfg.fingerprint(), earlier_fingerprint(previous, cfg)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    history = [dict(c) for c in previous.get("configs") or [] if isinstance(c, dict)]
    if not history and previous.get("config_fingerprint"):  # a run from before the history: its one config
        history = [{"fingerprint": previous["config_fingerprint"], "since": previous.get("created")}]
    if not history or history[-1].get("fingerprint") != fingerprint:
        history.append({"fingerprint": fingerprint, "since": now, **({"same_rows_as": earlier} if earlier else {})})
    return {"run_id": previous.get("run_id") or uuid.uuid4().hex, "created": previous.get("created") or now,
            "configs": history}


IDS_REMEDY = ("delete it and re-run: the folder's files are then named as the folder is now, so a file added "
              "since beside a planned one may be renamed and processed twice; or use a new --out")


def planned_ids(run_dir: Path) -> dict[str, dict[str, str]]:
    """ids.json: source -> {file: clip id} of the clips the run planned, for sources whose ids
    depend on the other files (Source.keep_ids); {} for a run without one."""
    path = run_dir / "ids.json"
    stored = read_state(path, IDS_REMEDY) or {}
    if not all(isinstance(v, dict) and all(isinstance(i, str) for i in v.values()) for v in stored.values()):
        raise RunStateError(f"{path} is damaged (each source must map files to clip ids); {IDS_REMEDY}")
    return stored


def _record_ids(run_dir: Path, plan: dict[str, list[str]], ids: dict[str, dict[str, str]] | None) -> None:
    """Add to ids.json the files of planned clips it does not name yet; written before plan.json,
    so that no planned clip's file is ever without its id."""
    stored = planned_ids(run_dir)
    planned = {k for keys in plan.values() for k in keys}
    fresh = {source: {f: i for f, i in found.items() if f"{source}/{i}" in planned and f not in stored.get(source, {})}
             for source, found in (ids or {}).items()}
    if any(fresh.values()):
        atomic_write_json(run_dir / "ids.json", {s: {**stored.get(s, {}), **fresh.get(s, {})}
                                                 for s in {*stored, *fresh} if stored.get(s) or fresh.get(s)})


def load_plan(run_dir: Path, items, shard_size: int,
              ids: dict[str, dict[str, str]] | None = None) -> tuple[dict[str, list[str]], int]:
    """plan.json extended by the clips it does not hold yet, written back when it grew; `ids`
    (source -> {file: clip id}, from Source.ids_of) go to ids.json for the planned clips."""
    path = run_dir / "plan.json"
    stored = read_state(path, PLAN_REMEDY)
    if stored is None:
        plan = plan_shards(items, shard_size)
        added = len(plan)
    else:
        if not all(isinstance(v, list) for v in stored.values()):
            raise RunStateError(f"{path} is damaged (shard ids must map to lists of clip keys); {PLAN_REMEDY}")
        plan, added = extend_plan(stored, items, shard_size)
        if added:
            log.info("%s: %d new shard(s) for clips added since the last run", path, added)
    _record_ids(run_dir, plan, ids)
    if added or stored is None:
        atomic_write_json(path, plan)
    return plan, added


class RunLock(FolderLock):
    """`RUN/lock`: the process working on the run folder (mfhq.manifest.lock: the code is shared
    with the manifest folders' lock)."""

    what = "run folder"
    command = "mfhq extract"
    error = RunStateError
