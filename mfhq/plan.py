"""Clips -> shards of work, the plan on disk, incremental additions, and the run folder's lock.

A shard id is `<source>-<n>`; its clips are fixed once planned. A later run on the same folder
plans only clips it has not seen into new shards numbered after the existing ones, so finished
shards are never touched. Two processes on one run folder would write the same shards: a lock
file naming its holder keeps the second one out.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from mfhq.errors import MfhqError
from mfhq.manifest.io import atomic_write_json
from mfhq.manifest.lock import FolderLock
from mfhq.records import item_key

log = logging.getLogger(__name__)


class RunStateError(MfhqError, RuntimeError):
    """plan.json / run.json / the lock cannot be used; the message names the file and what to do."""


def plan_shards(items, shard_size: int, start: dict[str, int] | None = None, workers: int = 1) -> dict[str, list[str]]:
    """Deterministic shards: sorted by key, grouped per source, `<source>-<n>` ids counted from
    `start[source]` (0 for a new run).

    A source's shard count is rounded up to a multiple of `workers` and its clips are split
    evenly (at most shard_size a shard), so that a small run keeps every worker busy to the
    end: 6 clips of shard_size 2 on 2 workers are 2+2+1+1 clips (3 each), not 2+2+2 (4 on one
    worker, 2 on the other)."""
    by_source: dict[str, set[str]] = {}
    for item in items:
        key = item_key(item)
        by_source.setdefault(key.split("/", 1)[0], set()).add(key)
    plan = {}
    for source, keys in sorted(by_source.items()):
        keys = sorted(keys)
        first = (start or {}).get(source, 0)
        for n, part in enumerate(_even_parts(keys, shard_size, max(1, workers)), start=first):
            plan[f"{source}-{n:05d}"] = part
    return plan


def _even_parts(keys: list[str], shard_size: int, workers: int) -> list[list[str]]:
    count = -(-len(keys) // max(1, shard_size))
    count = min(len(keys), -(-count // workers) * workers)
    small, extra = divmod(len(keys), max(1, count))
    bounds = [0]
    for n in range(count):
        bounds.append(bounds[-1] + small + (n < extra))
    return [keys[begin:end] for begin, end in zip(bounds[:-1], bounds[1:])]


def extend_plan(stored: dict[str, list[str]], items, shard_size: int, workers: int = 1) -> tuple[dict, int]:
    """The stored plan plus new shards for the clips it does not hold; returns (plan, new shards)."""
    planned = {k for keys in stored.values() for k in keys}
    fresh = [i for i in items if item_key(i) not in planned]
    start: dict[str, int] = {}
    for sid in stored:
        source, n = sid.rsplit("-", 1)
        start[source] = max(start.get(source, 0), int(n) + 1)
    added = plan_shards(fresh, shard_size, start, workers)
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


def load_plan(run_dir: Path, items, shard_size: int, workers: int = 1) -> tuple[dict[str, list[str]], int]:
    """plan.json extended by the clips it does not hold yet, written back when it grew."""
    path = run_dir / "plan.json"
    stored = read_state(path, PLAN_REMEDY)
    if stored is None:
        plan = plan_shards(items, shard_size, workers=workers)
        added = len(plan)
    else:
        if not all(isinstance(v, list) for v in stored.values()):
            raise RunStateError(f"{path} is damaged (shard ids must map to lists of clip keys); {PLAN_REMEDY}")
        plan, added = extend_plan(stored, items, shard_size, workers)
        if added:
            log.info("%s: %d new shard(s) for clips added since the last run", path, added)
    if added or stored is None:
        atomic_write_json(path, plan)
    return plan, added


class RunLock(FolderLock):
    """`RUN/lock`: the process working on the run folder (mfhq.manifest.lock: the code is shared
    with the manifest folders' lock)."""

    what = "run folder"
    error = RunStateError
