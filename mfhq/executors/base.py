"""The Executor contract and its registry.

An executor only schedules `run_shard` calls: whoever runs a shard owns it end to end (crops,
Parquet, marker), and only a small ShardStats comes back to the driver. So a new engine is one
small file: a class with `run(shards, on_stats)` and `close()`, registered by name.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable, Iterable, Protocol

from mfhq.config_rules import EXECUTORS

if TYPE_CHECKING:
    from mfhq.config import PipelineConfig
    from mfhq.plan import Shard
    from mfhq.shard import ShardStats


class ExecutorError(RuntimeError):
    """The run cannot go on (a worker cannot load its models, a missing extra); the message says why."""


class DiskFull(RuntimeError):
    """The disk of the run folder is full: the run stops, the shard in flight stays pending."""


class Executor(Protocol):
    def __init__(self, cfg: "PipelineConfig", run_dir: str, models_dir: str | None = None) -> None: ...

    def run(self, shards: Iterable["Shard"], on_stats: Callable[["ShardStats"], None]) -> None:
        """Run every shard (each exactly once to completion; a shard whose runner was lost is run
        again). on_stats is called in the driver as each shard finishes."""

    def close(self) -> None:
        """Stop the workers (also after an interrupt); must not raise."""


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC / EDQUOT, also from pyarrow, whose IO errors carry the text but not the errno."""
    if not isinstance(exc, OSError):
        return False
    return exc.errno in (errno.ENOSPC, errno.EDQUOT) or any(
        text in str(exc) for text in ("No space left on device", "Disk quota exceeded"))


# The table of names -> "module:Class" is mfhq.config_rules.EXECUTORS (presets are checked against it).
_REGISTRY = EXECUTORS


def register_executor(name: str, target: str) -> None:
    _REGISTRY[name] = target


def executor_names() -> list[str]:
    return sorted(_REGISTRY)


def get_executor(name: str) -> type:
    if name not in _REGISTRY:
        raise ExecutorError(f"unknown executor {name!r}; available: {', '.join(executor_names())}")
    import importlib

    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
