"""A run folder's state, as every command that reads a run must say it.

`mfhq extract` records `state` in run.json (running, complete, interrupted, failed...,
stopped: disk full) and a marker per finished shard in done/. A run that stopped part-way
still has readable shards, so a reader that only counts rows would present a partial run as a
whole one: `summary`, `stats` and the report put this state at the top, `cluster-sample`
refuses a run that is not complete (unless told otherwise), and a manifest records the state
of each run it was built from (`snapshot`), so `stats` can tell when the run has changed since.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from mfhq.errors import MfhqError
from mfhq.manifest.io import ShardMarkers
from mfhq.manifest.lock import holder_alive, read_holder

COMPLETE = "complete"
# an extract that ran every shard it could, leaving those whose clips' videos it no longer found
PENDING = "finished with shards left pending"


def pending_state(shards: int) -> str:
    """run.json's state after such an extract."""
    return (f"{PENDING} ({shards} whose clips' videos are no longer in the source, or outside "
            "--limit/--clips)")


log = logging.getLogger(__name__)


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return content if isinstance(content, dict) else {}


def _holder_alive(run_dir: Path) -> bool:
    return holder_alive(read_holder(run_dir))


@dataclass(frozen=True)
class RunState:
    run_dir: Path
    state: str           # run.json's state; "running" only while its extract still holds the lock
    error: str | None    # what stopped a failed run
    shards_total: int
    shards_done: int
    clips_planned: int
    clips_done: int      # clips of the finished shards
    configs: tuple = ()  # (config fingerprint, finished shards made with it), oldest config first

    @property
    def mixed_configs(self) -> str | None:
        """A line saying the finished shards come from more than one config, or None."""
        if len(self.configs) < 2:
            return None
        made = ", ".join(f"{n} with {fp}" for fp, n in self.configs)
        return (f"run {self.run_dir} mixes configs: its finished shards were made with {len(self.configs)} "
                f"pipeline configs ({made}; `extract --force` resumed it with another one); for rows of one "
                "config, extract into a new --out")

    @property
    def complete(self) -> bool:
        return self.state == COMPLETE and self.shards_done >= self.shards_total

    @property
    def never_processed(self) -> int:
        return max(self.clips_planned - self.clips_done, 0)

    def headline(self) -> str:
        """The line at the top of `summary`, `stats` and the report."""
        return self.line() if self.complete else f"WARNING: {self.line()}. Every count below covers only that part."

    def line(self) -> str:
        done = f"{self.shards_done} of {self.shards_total} shards done"
        if self.complete:
            return f"run {self.run_dir}: complete ({self.clips_done} clips, {done})"
        state = {"running": "running now (another `mfhq extract` is at work)",
                 # run.json says so, its shards do not: a shard and its marker deleted for a redo
                 COMPLETE: ("not complete (run.json says complete; shards without a done/ marker: "
                            f"{self.shards_total - self.shards_done})")}.get(self.state, self.state)
        what = f"{state}: {done}, {self.never_processed} of {self.clips_planned} clips never processed"
        if self.error:
            what += f" (error: {self.error.splitlines()[0]})"
        if self.state.startswith(PENDING):  # the same command would leave them pending again
            what += "; put their videos back (or widen --limit/--clips) and re-run `mfhq extract` to finish it"
        elif self.state != "running":
            what += "; re-run the same `mfhq extract` to finish it"
        return f"run {self.run_dir}: {what}"


def read_run_state(run_dir: Path) -> RunState:
    run_dir = Path(run_dir)
    meta = _read_json(run_dir / "run.json")
    plan = _read_json(run_dir / "plan.json")
    state = str(meta.get("state") or "unknown (run.json names none)")
    if state == "running" and not _holder_alive(run_dir):
        state = "stopped without a word (the process was killed)"
    markers = ShardMarkers(run_dir)
    clips_done = shards_done = 0
    configs: dict[str, int] = {}
    same = _same_rows(meta)
    for shard_id in sorted(markers.done_ids() & set(plan)):
        content = markers.read(shard_id)
        shards_done += 1
        clips_done += int(content.get("clips") or 0)
        made_with = same(content.get("config_fingerprint") or _unrecorded(meta))
        configs[made_with] = configs.get(made_with, 0) + 1
    planned = sum(len(keys) for keys in plan.values() if isinstance(keys, list))
    history = [same(c.get("fingerprint")) for c in meta.get("configs") or [] if isinstance(c, dict)]
    order: dict = {}
    for fp in history:  # the run's order; unrecorded ones last
        order.setdefault(fp, len(order))
    return RunState(run_dir, state, meta.get("error"), len(plan), shards_done, planned, clips_done,
                    tuple(sorted(configs.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))))


def _same_rows(meta: dict):
    """fingerprint -> the newest fingerprint run.json's `configs` say makes the same rows
    (`same_rows_as`: an earlier mfhq also fingerprinted options that change no row)."""
    later = {c["same_rows_as"]: c.get("fingerprint") for c in meta.get("configs") or []
             if isinstance(c, dict) and c.get("same_rows_as")}

    def same(fingerprint):
        seen = set()
        while fingerprint in later and fingerprint not in seen:
            seen.add(fingerprint)
            fingerprint = later[fingerprint]
        return fingerprint
    return same


def _unrecorded(meta: dict) -> str:
    """The config of a marker written before markers named theirs: the run's first config, which
    is the only one while the run never changed config."""
    history = [c for c in meta.get("configs") or [] if not (isinstance(c, dict) and c.get("same_rows_as"))]
    if len(history) <= 1:
        first = (history[0] if history else {}).get("fingerprint") or meta.get("config_fingerprint")
        if first:
            return str(first)
    return "a config not recorded (an older mfhq)"


def snapshot(run_dir: Path) -> dict:
    """What a manifest records of each run it was built from: the state, a digest of the
    completion markers (a shard finished or redone since changes it) and run.json's `run_id`: a
    run deleted and extracted again at the same path has the same markers for the same inputs,
    and only its id tells it apart. Runs from before run ids add no `run_id`."""
    run_dir = Path(run_dir)
    found = read_run_state(run_dir)
    run_id = _read_json(run_dir / "run.json").get("run_id")
    return {"state": found.state, "shards_done": found.shards_done, "clips": found.clips_done,
            "markers_sha256": ShardMarkers(run_dir).digest(), **({"run_id": run_id} if run_id else {})}


def changed_since(recorded: dict | None, run_dir: Path, recorded_at: float | None = None) -> str | None:
    """How the run differs from what a manifest recorded of it, or None when it does not.

    A run extracted anew (another run_id) has changed whatever its markers say. Manifests written
    before snapshots existed are compared by time: a shard finished after the manifest's sidecar
    was written means the run has grown since."""
    run_dir = Path(run_dir)
    now = snapshot(run_dir)
    if recorded and recorded.get("run_id") and recorded["run_id"] != now.get("run_id"):
        return (f"run {run_dir} was deleted and extracted again at the same path since it was built (run.json's "
                f"run_id is {now.get('run_id') or 'absent'}, the manifest recorded {recorded['run_id']})")
    if recorded and recorded.get("markers_sha256"):
        return _markers_change(recorded, now, run_dir)
    markers = ShardMarkers(run_dir)
    finished = [markers.path(sid).stat().st_mtime for sid in markers.done_ids()]
    if recorded_at is not None and finished and max(finished) > recorded_at:
        return f"run {run_dir} has shards finished after it was built"
    return None


def rows_changed_since(recorded: dict | None, run_dir: Path) -> str | None:
    """How the run's finished shards, and so its rows, differ from what a manifest recorded of
    them (changed_since's words), or None. Unlike changed_since, a run extracted again with the
    same rows (another run_id, the same markers) has not changed: its rows still describe it.
    Manifests that recorded no markers digest (older ones) are not compared: None."""
    if not recorded or not recorded.get("markers_sha256"):
        return None
    return _markers_change(recorded, snapshot(run_dir), Path(run_dir))


def _markers_change(recorded: dict, now: dict, run_dir: Path) -> str | None:
    if recorded["markers_sha256"] == now["markers_sha256"]:
        return None
    if (recorded.get("clips"), recorded.get("shards_done")) == (now["clips"], now["shards_done"]):
        return f"shards of run {run_dir} were finished again since it was built (by --retry, or a redo)"
    return (f"it was built when run {run_dir} had {recorded.get('clips')} clips in {recorded.get('shards_done')} "
            f"finished shards; the run has {now['clips']} in {now['shards_done']} now")


class PartialRun(MfhqError, RuntimeError):
    """A command that needs a complete run was given one that is not."""


def require_complete(run_dirs: list[Path], allow_partial: bool) -> list[RunState]:
    """Each run's state; raise PartialRun naming every run that is not complete, unless allowed
    (then each is logged as a warning, and the caller records the choice)."""
    states = [read_run_state(r) for r in run_dirs]
    partial = [s for s in states if not s.complete]
    if partial and not allow_partial:
        raise PartialRun("; ".join(s.line() for s in partial) + ". Finish the run first, or pass --allow-partial "
                         "to sample what it holds (the manifest's sidecar then says so)")
    for s in partial:
        log.warning("--allow-partial: %s", s.line())
    return states
