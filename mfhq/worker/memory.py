"""A worker that runs out of memory loading its models: told apart from other failures, and said
in words a user can act on (which model, how much memory, fewer workers).

How native libraries say it is told in `mfhq.errors.is_out_of_memory`.
"""
from __future__ import annotations

from pathlib import Path


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def _read_kib(path: str, key: str) -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_limit_kib() -> int | None:
    """The container's memory limit (cgroup v2, then v1), when there is one."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < 1 << 60:
            return int(value) // 1024
    return None


def memory_state(own_peak: bool = True) -> str:
    """What this process (the worker) held at its peak and what the machine had, as far as it
    can be read; own_peak=False when the worker is another process, already gone."""
    parts = []
    peak = _read_kib("/proc/self/status", "VmHWM") if own_peak else None
    if peak is not None:
        parts.append(f"this worker held {_mib(peak)} at its peak")
    available, total = _read_kib("/proc/meminfo", "MemAvailable"), _read_kib("/proc/meminfo", "MemTotal")
    if available is not None and total is not None:
        parts.append(f"the machine had {_mib(available)} available of {_mib(total)}")
    limit = _cgroup_limit_kib()
    if limit is not None:
        parts.append(f"the container's limit is {_mib(limit)}")
    return "; ".join(parts) or "memory use unknown on this system"


def out_of_memory_message(model: str | None, exc: BaseException, run) -> str:
    """run: the preset's RunConfig (workers, executor, address)."""
    what = f"the {model}" if model else "its models"
    detail = " ".join(str(exc).split())[:300]
    if run.executor == "ray" and run.address:
        fewer = ("Each Ray actor loads its own copy of the models: give each a larger share of a node "
                 "(run.num_cpus), so that fewer share its memory")
    else:
        fewer = (f"Each worker loads its own copy of the models, {run.workers} at once here: run fewer at once "
                 f"(--workers {max(1, run.workers // 2)})")
    state = memory_state()
    return (f"out of memory: a worker could not load {what}: {type(exc).__name__}: {detail}. "
            f"{state[0].upper()}{state[1:]}. {fewer}, or free memory; then re-run the same command to resume")
