"""`mfhq materialize --manifest DIR`: the crops and masks of the faces a manifest samples, for runs
made with align.crops: materialize (ours), which record every candidate's row but no image.

Folder layout (beside the manifests):
  DIR/materialize/plan.json           shard id -> clip keys, and the digest of what the plan makes
  DIR/materialize/done/<shard>.json   completion markers, written after every file of the shard
The files go where the manifest rows say, into each run's folder (crops/..., masks/...), under
the run's lock; the manifest folder's lock keeps a second materialize out. Shards run like
extract's: a watched worker process per runner (a hang or a crash costs one clip), a marker per
shard written last, so a killed materialize loses at most the shards in flight and a re-run does
only the shards without a marker. The sidecar says `crops: pending` until every shard is done
(readers refuse the folder until then), then `materialized`, recording each run's run id; a re-run
after that does nothing unless a run was deleted and extracted again at the same path since (its
run id differs: readers refuse the folder, and the crops are made again).
Before any of that, a manifest whose runs finished shards anew since cluster-sample built it (their
markers differ from the sidecar's snapshot: --retry, --force under another config) is refused: its
faces were sampled from rows that no longer describe the runs. A run extracted again with the same
rows (only its run id differs) is not refused: its crops are made again as above.
If cluster-sample rewrote the folder with other faces, or a run was extracted anew, the plan's
digest differs and the old markers are set aside: the files they vouched for may not be there.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import shutil
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from mfhq import __version__
from mfhq.errors import MfhqError
from mfhq.manifest.folder import MATERIALIZE, ManifestFolder, ManifestLock, mark_materialized
from mfhq.manifest.io import DiskFull, ShardMarkers, atomic_write_json, is_disk_full
from mfhq.materialize_plan import (RunWork, WorkShard, check_runs_unchanged, plan_digest, plan_work, shards_of,
                                   with_faces)
from mfhq.plan import RunLock, read_state
from mfhq.records import Status
from mfhq.signals import sigterm_as_interrupt
from mfhq.worker.watchdog import Watchdog

log = logging.getLogger(__name__)
PROGRESS = MATERIALIZE  # the folder is named where the manifest folder's entries are


class MaterializeInterrupted(MfhqError, RuntimeError):
    """Ctrl-C or SIGTERM: materialize stopped cleanly; the message says how to resume."""


@dataclass
class MaterializeSummary:
    state: str = "pending"      # the folder's crops state at the end (mfhq.manifest.folder.CROPS_STATES)
    faces: int = 0              # sampled faces whose crops and masks runs left to materialize
    written: int = 0            # faces made now: one parsing call each
    differ: int = 0             # of those, crops whose pixels differ from the ones extract measured
    shards_total: int = 0
    shards_skipped: int = 0     # done by an earlier materialize
    failed: list = field(default_factory=list)  # (shard id, reason) of shards left pending
    seconds: float = 0.0


def materialize(manifest: Path, models_dir=None, workers: int = 1, device: str | None = None,
                on_shard=None) -> MaterializeSummary:
    """on_shard(shard id): called as each shard's marker is written (progress)."""
    folder = Path(manifest)
    opened = ManifestFolder.open(folder, pending_ok=True)  # not a manifest folder: said before the lock
    if opened.crops == "pending" or (opened.crops == "materialized" and opened.remade_runs()):
        check_runs_unchanged(opened)  # so is a manifest older than its runs, before any lock or work
    try:
        with ManifestLock(folder, "mfhq materialize"), sigterm_as_interrupt():
            return _materialize(folder, models_dir, max(1, workers), device, on_shard)
    except KeyboardInterrupt:
        raise MaterializeInterrupted(f"interrupted before any shard of {folder} was done; re-run the same "
                                     "command to start") from None
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFull(f"the disk is full ({exc.filename}: {exc.strerror}); free some space and re-run the same "
                       "command: finished shards are kept") from None


def _materialize(folder: Path, models_dir, workers: int, device: str | None, on_shard) -> MaterializeSummary:
    started = time.perf_counter()
    opened = ManifestFolder.open(folder, pending_ok=True)
    remade = opened.remade_runs() if opened.crops == "materialized" else []
    if remade:  # their crops went with the old folders; readers refuse the folder until they are made again
        log.warning("%s: run(s) %s were deleted and extracted again since their crops were made; making them again",
                    folder, ", ".join(remade))
    elif opened.crops != "pending":
        return MaterializeSummary(state=opened.crops)
    work, table = plan_work(opened)
    if device is not None:
        work = [dataclasses.replace(w, cfg=w.cfg.replace(run={"device": device})) for w in work]
    shards = shards_of(work)
    markers = _progress(folder / PROGRESS, plan_digest(shards, table, work), shards)
    done = markers.done_ids()
    todo = [s for s in shards if s.id not in done]
    summary = MaterializeSummary(faces=sum(s.n_faces for s in shards), shards_total=len(shards),
                                 shards_skipped=len(shards) - len(todo))
    log.info("%d sampled faces in %d shards, %d done, %d to run", summary.faces, len(shards),
             summary.shards_skipped, len(todo))
    with ExitStack() as locks:
        for run in work:  # one writer per run folder: extract, or this
            locks.enter_context(RunLock(run.run_dir, "mfhq materialize"))
        check_runs_unchanged(opened)  # again, now that no extract can change them: the rows just read are theirs
        _remove_temp_files(todo, {w.name: w for w in work})
        provenance = _run(todo, _Runs({w.name: w for w in work}, table, models_dir), workers, markers, summary,
                          on_shard)
    if not summary.failed:
        mark_materialized(folder, {"faces": summary.faces, "provenance": provenance or markers.provenance(),
                                   "code_version": __version__, "differ": _differ(markers),
                                   "run_ids": {w.name: w.run_id for w in work if w.run_id}})
        summary.state = "materialized"
    summary.seconds = time.perf_counter() - started
    return summary


def _progress(root: Path, digest: str, shards: list[WorkShard]) -> ShardMarkers:
    """plan.json for this manifest's faces; markers of another plan (the folder rewritten) set aside."""
    stored = read_state(root / "plan.json", f"delete {root} and re-run (the shards are then all redone)")
    if stored is not None and stored.get("digest") != digest:
        log.warning("%s: the manifest's faces or runs changed since materialize last ran (cluster-sample wrote the "
                    "folder again, or a run was extracted anew): its shards are planned anew", root)
        shutil.rmtree(root / "done", ignore_errors=True)
    if stored is None or stored.get("digest") != digest:
        atomic_write_json(root / "plan.json", {"digest": digest, "shards": {s.id: [c.key for c in s.clips] for s in shards}})
    return ShardMarkers(root)


@dataclass
class _Runs:
    """What a runner thread needs: each run's work, the plan's face table, the weights folder."""

    work: dict[str, RunWork]
    table: object
    models_dir: object


def _run(todo: list[WorkShard], runs: _Runs, workers: int, markers: ShardMarkers, summary: MaterializeSummary,
         on_shard) -> str | None:
    """Runner threads, each with its watched worker process, take the shards; this thread writes
    the markers. Returns the parsing model's provenance (None when nothing ran)."""
    pending: queue.Queue = queue.Queue()
    for shard in todo:
        pending.put(shard)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    threads = [threading.Thread(target=_runner, args=(pending, results, stop, runs), daemon=True,
                                name=f"mfhq-materialize-{n}") for n in range(min(workers, len(todo)))]
    for thread in threads:
        thread.start()
    provenance, running = None, len(threads)
    try:
        while running:
            try:
                item = results.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                provenance = _record(*item, markers, summary) or provenance
                if on_shard is not None:
                    on_shard(item[0].id)
    except KeyboardInterrupt:
        _stop(stop, threads)
        finished = len(markers.done_ids())
        raise MaterializeInterrupted(f"interrupted: {finished} of {summary.shards_total} shards of "
                                     f"{markers.folder.parent.parent} are done; re-run the same command to resume") from None
    except BaseException:
        _stop(stop, threads)
        raise
    return provenance


def _stop(stop: threading.Event, threads: list[threading.Thread]) -> None:
    """Runners stop after the clip in hand (its files are whole; its shard gets no marker)."""
    stop.set()
    for thread in threads:
        thread.join()


def _runner(pending: queue.Queue, results: queue.Queue, stop: threading.Event, runs: _Runs) -> None:
    watchdog, run = None, None
    try:
        while not stop.is_set():
            try:
                shard = pending.get_nowait()
            except queue.Empty:
                return
            if shard.run != run:
                if watchdog is not None:
                    watchdog.close()
                run = shard.run
                watchdog = Watchdog(runs.work[run].cfg, str(runs.work[run].run_dir), runs.models_dir, kind="materialize")
            outcomes: dict[str, tuple[list, dict]] = {}
            for clip in shard.clips:  # one at a time: a stop waits for one clip at most
                if stop.is_set():
                    return
                watchdog.run([with_faces(clip, runs.table)], lambda c, faces, row: outcomes.__setitem__(c.key, (faces, row)))
            results.put((shard, outcomes, watchdog.provenance))
    except BaseException as exc:  # a model that cannot load, a full disk: the driver stops
        results.put(exc)
    finally:
        if watchdog is not None:
            watchdog.close()
        results.put(None)


def _record(shard: WorkShard, outcomes: dict, provenance: str, markers: ShardMarkers,
            summary: MaterializeSummary) -> str:
    failed = [row for _, row in outcomes.values() if row["status"] != Status.OK]
    if failed:
        summary.failed.append((shard.id, f"{failed[0]['status']}: {failed[0]['reason']}"))
        log.warning("shard %s: %d clip(s) failed (%s: %s); it stays pending", shard.id, len(failed),
                    failed[0]["status"], failed[0]["reason"])
        return provenance
    made = [face for faces, _ in outcomes.values() for face in faces]
    differ = sum(not face["identical"] for face in made)
    if differ:
        log.warning("shard %s: %d crop(s) differ from the pixels extract measured (a video that decodes "
                    "differently when read in part)", shard.id, differ)
    markers.mark_done(shard.id, {"faces": len(made), "differ": differ, "provenance": provenance})
    summary.written += len(made)
    summary.differ += differ
    return provenance


def _differ(markers: ShardMarkers) -> int:
    return sum(int(markers.read(sid).get("differ") or 0) for sid in markers.done_ids())


def _remove_temp_files(todo: list[WorkShard], work: dict[str, RunWork]) -> None:
    """Temporary image files a killed materialize left in the folders of the shards to redo."""
    for shard in todo:
        for clip in shard.clips:
            for kind in ("crops", "masks"):
                folder = work[shard.run].run_dir / kind / clip.source / clip.clip_id
                if folder.is_dir():
                    for tmp in folder.glob(".tmp-*"):
                        tmp.unlink(missing_ok=True)
