"""run_shard: whoever runs a shard owns it end to end.

Skip a shard whose marker exists -> process its clips in a watched worker -> write the crops,
masks, `faces/<shard>.parquet` and `clips/<shard>.parquet` atomically -> write the marker last.
Only a small ShardStats goes back to the driver, so the driver never holds face rows, and a lost
runner costs one shard, which runs again from the start (a shard without a marker has no rows
that any reader counts). A retry (`shard.only`) takes the marker away before it replaces the
shard's files, so a stop between its renames leaves the shard pending, redone in full.
Before its Parquet files and again before its marker, a shard checks that the run's lock still
carries its driver's token (`owner`): a runner that outlived its driver (a Ray actor after the
driver was killed) never writes a shard that a resumed run, now holding the lock, runs too.
"""
from __future__ import annotations

import atexit
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from mfhq.config import PipelineConfig
from mfhq.manifest.clip_means import fill_clip_rows
from mfhq.manifest.io import DiskFull, ShardMarkers, atomic_write_arrow, atomic_write_table, is_disk_full, read_table
from mfhq.manifest.lock import NotOwner, check_owner
from mfhq.records import CLIP_SCHEMA, FACE_SCHEMA, TRANSIENT_STATUSES, Clip, ClipRow, Shard, item_key
from mfhq.worker.watchdog import Watchdog

log = logging.getLogger(__name__)


@dataclass
class ShardStats:
    shard_id: str
    skipped: bool = False
    clips: int = 0                 # clips (re)run now
    faces_kept: int = 0
    faces_dropped: int = 0
    status_counts: dict = field(default_factory=dict)
    frames_detect_skipped: int = 0
    retried: int = 0               # transient failures run a second time inside this shard
    provenance: str = "none"


# One watchdog (and so one worker process) per runner process: the models load once per runner,
# not once per shard.
_WATCHDOGS: dict = {}


def _watchdog(cfg: PipelineConfig, run_dir: Path, models_dir) -> Watchdog:
    key = (str(run_dir), repr(cfg), str(models_dir))
    if key not in _WATCHDOGS:
        for old in _WATCHDOGS.values():  # another run in this process: stop its worker
            old.close()
        _WATCHDOGS.clear()
        _WATCHDOGS[key] = Watchdog(cfg, str(run_dir), str(models_dir) if models_dir else None)
    return _WATCHDOGS[key]


@atexit.register
def close_watchdogs() -> None:
    """Stop this runner's worker process (a runner that stops, an actor closed)."""
    for watchdog in _WATCHDOGS.values():
        watchdog.close()
    _WATCHDOGS.clear()


def run_shard(shard: Shard, run_dir: Path, cfg: PipelineConfig, models_dir=None, owner: str | None = None) -> ShardStats:
    """owner: the token of the driver's run lock (None: not checked)."""
    run_dir = Path(run_dir)
    markers = ShardMarkers(run_dir)
    done = markers.is_done(shard.id)
    if done and shard.only is None:
        return ShardStats(shard.id, skipped=True)
    rerun = shard.only if done else None
    stats = ShardStats(shard.id)
    watchdog = _watchdog(cfg, run_dir, models_dir)
    outcomes: dict[str, tuple[list, dict]] = {}
    try:
        todo = []
        for item in shard.items:
            key = item_key(item)
            if rerun is not None and key not in rerun:
                continue
            if isinstance(item, Clip):
                todo.append(item)
            else:  # a source entry that never became a clip: its status row needs no worker
                outcomes[key] = ([], ClipRow.problem(item))
        _run_clips(watchdog, todo, outcomes)
        transient = [c for c in todo if outcomes[c.key][1]["status"] in TRANSIENT_STATUSES]
        if transient:  # a passing failure (a killed worker process, a file still arriving): once more
            log.info("%s: %d clip(s) failed for a passing reason; running them once more", shard.id, len(transient))
            _run_clips(watchdog, transient, outcomes)
            stats.retried = len(transient)
        stats.provenance = watchdog.provenance
        _count(stats, outcomes)
        faces, clips = _merge(run_dir, shard, outcomes) if rerun is not None else _rows(shard, outcomes)
        check_owner(run_dir, owner, f"shard {shard.id}")
        face_table = pa.Table.from_pylist(faces, schema=FACE_SCHEMA)
        fill_clip_rows(face_table, clips)  # each clip's embedding sum, from these very face rows
        if rerun is not None:  # the old marker must not vouch for new faces beside old clip rows
            markers.unmark(shard.id)
        atomic_write_arrow(run_dir / "faces" / f"{shard.id}.parquet", face_table)
        atomic_write_table(run_dir / "clips" / f"{shard.id}.parquet", clips, CLIP_SCHEMA)
        check_owner(run_dir, owner, f"shard {shard.id}")
        keep_named_files(run_dir, shard, faces, cfg)  # whatever each clip's outcome: the files agree with the rows
        markers.mark_done(shard.id, {"clips": len(clips), "faces": len(faces), "kept": sum(f["kept"] for f in faces),
                                     "provenance": stats.provenance, "config_fingerprint": cfg.fingerprint()})
    except NotOwner:
        raise  # the temporary files may be the new owner's now: not ours to remove
    except OSError as exc:
        remove_temp_files(run_dir, shard)
        if is_disk_full(exc):
            raise DiskFull(f"{exc.filename or run_dir}: {exc.strerror or exc}") from None
        raise
    except BaseException:
        remove_temp_files(run_dir, shard)
        raise
    return stats


def _run_clips(watchdog: Watchdog, clips: list[Clip], outcomes: dict) -> None:
    if clips:
        watchdog.run(clips, lambda clip, faces, row: outcomes.__setitem__(clip.key, (faces, row)))


def _count(stats: ShardStats, outcomes: dict) -> None:
    for faces, row in outcomes.values():
        kept = sum(f["kept"] for f in faces)
        stats.clips += 1
        stats.faces_kept += kept
        stats.faces_dropped += len(faces) - kept
        stats.status_counts[row["status"]] = stats.status_counts.get(row["status"], 0) + 1
        stats.frames_detect_skipped += row.get("n_frames_detect_skipped") or 0


def _rows(shard: Shard, outcomes: dict) -> tuple[list, list]:
    keys = shard.keys
    return [f for k in keys for f in outcomes[k][0]], [outcomes[k][1] for k in keys]


def _merge(run_dir: Path, shard: Shard, outcomes: dict) -> tuple[list, list]:
    """A retried shard: the re-run clips' new rows in place of their old ones, the rest as they
    were, in plan order, so the files equal those of a run where the clips worked first time."""
    old_faces: dict[str, list] = {}
    for row in read_table(run_dir / "faces" / f"{shard.id}.parquet").to_pylist():
        old_faces.setdefault(f"{row['source']}/{row['clip_id']}", []).append(row)
    old_clips = {f"{r['source']}/{r['clip_id']}": r for r in read_table(run_dir / "clips" / f"{shard.id}.parquet").to_pylist()}
    # A shard written before clip rows had person_key is rewritten in this version: its rows get
    # theirs from the source's records, as a first-time run would have written them.
    people = {item_key(item): getattr(item, "person_key", None) for item in shard.items}
    for key, row in old_clips.items():
        row.setdefault("person_key", people.get(key))
    merged = {k: outcomes.get(k) or (old_faces.get(k, []), old_clips[k]) for k in shard.keys}
    return _rows(shard, merged)


def keep_named_files(run_dir: Path, shard: Shard, faces: list[dict], cfg: PipelineConfig) -> int:
    """Remove every file in the crop and mask folders of the shard's clips that no kept face row
    of `faces` (the shard's rows, as written) names; returns how many went. The one owner of "the
    files and the rows agree": a clip that ended in an error, a timeout or a crash (its rows thrown
    away after some chunks' files were written), a retry that keeps fewer faces than the attempt
    before, a clip cut short by its decoder, a run made before this check. Only files directly in
    `<kind>/<source>/<clip id>/` go (never a folder: a clip id may hold a `/`, its files are then
    another clip's). With align.crops: materialize extract writes no image, so every file there
    is `mfhq materialize`'s: left alone."""
    if cfg.align.crops == "materialize":
        return 0
    named = {row[c] for row in faces if row["kept"] for c in ("crop_path", "mask_path") if row[c]}
    removed = 0
    for key in shard.keys:
        for kind in ("crops", "masks"):
            folder = run_dir / kind / key
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if f"{kind}/{key}/{path.name}" not in named and not path.is_dir():
                    path.unlink(missing_ok=True)
                    removed += 1
            if not any(folder.iterdir()):
                folder.rmdir()  # a clip with no kept face has no folder, as if none had been written
    if removed:
        log.info("shard %s: removed %d crop/mask file(s) that no face row names", shard.id, removed)
    return removed


def remove_temp_files(run_dir: Path, shard: Shard) -> None:
    """The temporary files a stopped shard left (a killed process cannot clean up after itself)."""
    folders = [run_dir / "faces", run_dir / "clips", run_dir / "done"]
    for item in shard.items:
        if isinstance(item, Clip):
            folders += [run_dir / "crops" / item.source / item.clip_id, run_dir / "masks" / item.source / item.clip_id]
    for folder in folders:
        if folder.is_dir():
            for tmp in folder.glob(".tmp-*"):
                if folder.name in ("faces", "clips", "done") and not tmp.name.startswith(f".tmp-{shard.id}."):
                    continue  # another shard's file in flight
                tmp.unlink(missing_ok=True)
