"""Clips -> shards of work, the plan on disk, incremental additions, and the run folder's lock.

A shard id is `<source>-<n>`; its clips are fixed once planned. A later run on the same folder
plans only clips it has not seen into new shards numbered after the existing ones, so finished
shards are never touched. Two processes on one run folder would write the same shards: a lock
file naming its holder keeps the second one out.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from mfhq.errors import MfhqError
from mfhq.manifest.io import atomic_write_json
from mfhq.records import item_key

log = logging.getLogger(__name__)


class RunStateError(MfhqError, RuntimeError):
    """plan.json / run.json / the lock cannot be used; the message names the file and what to do."""


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


def load_plan(run_dir: Path, items, shard_size: int) -> tuple[dict[str, list[str]], int]:
    """plan.json extended by the clips it does not hold yet, written back when it grew."""
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
    if added or stored is None:
        atomic_write_json(path, plan)
    return plan, added


class RunLock:
    """`RUN/lock`: {"pid", "host", "since"} of the process working on the run folder.

    Created with a hard link from a complete temporary file, so the lock either exists whole or
    not at all. A lock left by a dead process on this host is taken over; a lock held by another
    host cannot be checked, so it is refused with its holder named.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "lock"
        self.held = False

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return {}  # vanished or half-made by a process killed while making it

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tmp = self.path.with_name(f".tmp-lock-{os.getpid()}")
        tmp.write_text(json.dumps(me))
        try:
            for _ in range(3):
                try:
                    os.link(tmp, self.path)
                    self.held = True
                    return
                except FileExistsError:
                    holder = self._holder()
                    if holder and not _stale(holder):
                        raise RunStateError(
                            f"{self.path}: the run folder is in use by pid {holder.get('pid')} on host "
                            f"{holder.get('host')} (since {holder.get('since')}); wait for it to finish, or, if "
                            "that process is gone, delete the lock file")
                    log.warning("%s: taking over a stale lock (%s)", self.path, holder or "unreadable")
                    self.path.unlink(missing_ok=True)
            raise RunStateError(f"{self.path}: could not take the lock (another process keeps taking it)")
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _stale(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder.get("pid")), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, TypeError, ValueError):
        return not isinstance(holder.get("pid"), int)
    return False
