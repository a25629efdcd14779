"""The Executor contract, its registry, and the scheduling every engine shares.

An executor only schedules `run_shard` calls (mfhq.worker): whoever runs a shard owns it end to
end (crops, Parquet, marker), and only a small ShardStats comes back to the driver. What every
engine does alike lives here once, in ShardScheduler: the queue of shards; a shard whose runner
was lost has its temporary files removed and runs again, at most MAX_ATTEMPTS times; the shards
in flight at close lose their temporary files and stay pending. An engine (local.py, ray.py)
says only how to start its runners, hand one a shard, watch them and stop them, so a new engine
is one small file, registered by name.
"""
from __future__ import annotations

import importlib
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol

from mfhq.config_rules import EXECUTORS
from mfhq.errors import MfhqError
from mfhq.manifest.lock import read_holder
from mfhq.records import Shard
from mfhq.worker.shard import ShardStats, remove_temp_files

if TYPE_CHECKING:
    from mfhq.config import PipelineConfig

MAX_ATTEMPTS = 3  # a shard whose runner is lost this often is not a passing problem


class ExecutorError(MfhqError, RuntimeError):
    """The run cannot go on (a worker cannot load its models, a missing extra); the message says why."""


class Executor(Protocol):
    def __init__(self, cfg: "PipelineConfig", run_dir: str, models_dir: str | None = None) -> None: ...

    def run(self, shards: Iterable[Shard], on_stats: Callable[[ShardStats], None]) -> None:
        """Run every shard (each exactly once to completion; a shard whose runner was lost is run
        again). on_stats is called in the driver as each shard finishes."""

    def close(self) -> None:
        """Stop the runners (also after an interrupt); must not raise."""


@dataclass(frozen=True)
class Lost:
    """A runner lost with its shard, in the engine's words: what happened ("its runner died"),
    the detail the warning adds, and what the error after MAX_ATTEMPTS puts in brackets."""

    what: str
    detail: str = ""
    last: str = ""


class ShardScheduler:
    """An Executor whose engine fills in five hooks: _start_runners, _submit, _wait, _restart
    and _stop_runners. Runners are known by their slot, 0 .. n-1."""

    def __init__(self, cfg: "PipelineConfig", run_dir: str, models_dir: str | None = None):
        self.cfg, self.run_dir = cfg, str(run_dir)
        self.models_dir = str(models_dir) if models_dir else None
        self.busy: dict[int, Shard] = {}  # runner slot -> its shard in flight
        # The run lock's token (the driver holds the lock when it makes its executor): every
        # shard checks it before writing, so a runner that outlives its driver writes nothing.
        self.owner: str | None = read_holder(Path(run_dir)).get("token")
        self.log = logging.getLogger(type(self).__module__)

    def run(self, shards: Iterable[Shard], on_stats: Callable[[ShardStats], None]) -> None:
        queue = deque(shards)
        if not queue:
            return
        idle = list(range(self._start_runners(len(queue))))
        attempts: dict[str, int] = {}
        while queue or self.busy:
            while idle and queue:
                slot = idle.pop(0)
                self.busy[slot] = queue.popleft()
                self._submit(slot, self.busy[slot])
            for slot, outcome in self._wait(1.0):
                shard = self.busy.pop(slot)
                if isinstance(outcome, Lost):
                    self._requeue(queue, attempts, shard, outcome)
                    self._restart(slot)
                else:
                    on_stats(outcome)
                idle.append(slot)

    def _requeue(self, queue: deque, attempts: dict[str, int], shard: Shard, lost: Lost) -> None:
        """The shard had no marker, so nothing of it counts: its temporary files go, and it runs
        again first, unless its runners were lost too often."""
        remove_temp_files(Path(self.run_dir), shard)
        attempts[shard.id] = attempts.get(shard.id, 0) + 1
        if attempts[shard.id] >= MAX_ATTEMPTS:
            raise ExecutorError(f"shard {shard.id}: {lost.what} {MAX_ATTEMPTS} times ({lost.last})")
        self.log.warning("shard %s: %s%s; running the shard again", shard.id, lost.what, lost.detail)
        queue.appendleft(shard)

    def close(self) -> None:
        """Stop the runners; shards in flight stay pending (no marker) and lose their temp files."""
        self._stop_runners()
        for shard in self.busy.values():
            remove_temp_files(Path(self.run_dir), shard)
        self.busy = {}

    def _start_runners(self, n_shards: int) -> int:
        """Start the runners for n_shards shards; returns how many."""
        raise NotImplementedError

    def _submit(self, slot: int, shard: Shard) -> None:
        """Hand an idle runner a shard."""
        raise NotImplementedError

    def _wait(self, timeout: float) -> Iterator[tuple[int, ShardStats | Lost]]:
        """Wait up to timeout for busy runners: yield (slot, its shard's stats) for each shard
        done and (slot, Lost) for each runner lost with its shard; raise DiskFull or
        ExecutorError for a shard that stops the run. `self.busy` is current at each step."""
        raise NotImplementedError

    def _restart(self, slot: int) -> None:
        """A fresh runner in the place of a lost one."""
        raise NotImplementedError

    def _stop_runners(self) -> None:
        """Stop every runner, a busy one at once; must not raise."""
        raise NotImplementedError


# The table of names -> "module:Class" is mfhq.config_rules.EXECUTORS (presets are checked against it).
_REGISTRY = EXECUTORS


def register_executor(name: str, target: str) -> None:
    _REGISTRY[name] = target


def executor_names() -> list[str]:
    return sorted(_REGISTRY)


def get_executor(name: str) -> type:
    if name not in _REGISTRY:
        raise ExecutorError(f"unknown executor {name!r}; available: {', '.join(executor_names())}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
