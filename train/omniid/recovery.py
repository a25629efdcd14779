"""Which checkpoint a run resumes from, and what becomes of one that cannot be trusted.

Each step folder's state.json records the size and SHA-256 of its other files at save time
(`omniid.checkpoint.damage` checks them). A resume (the same command again, or `--resume auto`) takes the step folder `latest` names if
it is intact; a damaged or incomplete one (a file cut short, changed or missing, or `latest`
naming a folder that is gone) is named in a warning, moved into `checkpoints/damaged/` (never
deleted), and the run resumes from the newest intact step folder, pointing `latest` at it.
A step whose save again was killed between its renames is put back first (`finish_replacements`).

`--resume OUT/checkpoints/step-K` while OUT holds newer steps (going on from before a divergence,
say) abandons them: before training, `latest` names step K, log.jsonl is cut to it and every newer
step folder is moved into `checkpoints/superseded/from-step-K-<n>/` (one per such resume, never
deleted), so the folder holds one history; a step of such a shelf named by `--resume` brings its
history back the same way (`omniid.shelves`, which also says what a kill part way leaves: the
next start finishes the moves, `finish_interrupted`). A step on the damaged or non-finite shelf
is refused. A newer step another run started from (`omniid.retention.users_of`) refuses that
resume instead (`refuse_abandoning_used`). The fallback and pruning look at `checkpoints/step-*`
only, never into the shelves.

A checkpoint whose weights gave a non-finite loss at the very next step gives it again on every
resume, whatever the lr: the loss of step N+1 depends only on the weights after step N and on
batch N+1, which is fixed by the seed. Such a checkpoint is moved into `checkpoints/non-finite/`
and `latest` goes back to the newest intact one.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from safetensors import SafetensorError

from mfhq.manifest.io import is_disk_full
from omniid.checks import disk_full
from omniid.checkpoint import (CHECKPOINTS, LATEST, PRESET_FILE, REPLACED, STATE_FILE, TEMP, CheckpointError,
                               point_latest, pointed, step_name)
from omniid.checkpoint_trust import problem_of
from omniid.distributed import gather
from omniid.errors import Interrupted, NonFiniteLoss, OmniIDError
from omniid.retention import users_of
from omniid.shelves import (DAMAGED, NON_FINITE, abandoned_by, branch_step, finish_moves, going_back, moved_back,
                            refuse_shelved, set_aside, step_folders)

log = logging.getLogger(__name__)

def newest_intact(out: Path) -> Path | None:
    """The step folder `latest` names if intact, else the newest intact one (then `latest` names
    it); damaged ones on the way are moved aside, each named in a warning."""
    root = Path(out) / CHECKPOINTS
    finish_interrupted(root)  # before `latest` is read: a kill may have left it to be moved
    named = pointed(root)
    candidates = ([named] if named is not None else []) + [f for f in step_folders(root) if f != named]
    for folder in candidates:
        problem = problem_of(folder)
        if problem is None:
            if folder != named:
                log.warning("resuming from %s, the newest intact checkpoint", folder)
                point_latest(root, folder)
            return folder
        if folder.is_dir():
            log.warning("checkpoint %s is damaged (%s): moved to %s", folder, problem, set_aside(folder, DAMAGED))
        else:
            log.warning("%s names %s, which %s", root / LATEST, folder.name, problem)
    if (root / LATEST).exists():
        log.warning("no intact checkpoint is left in %s: training starts from step 0", root)
        point_latest(root, None)
    return None


def finish_replacements(root: Path) -> None:
    """Puts back the step a killed re-save left without its folder (`omniid.checkpoint.save_checkpoint`
    renames the old one to `.replaced-step-*` before the new one comes in). With the step's own
    folder missing, the new one (`.tmp-step-*`) goes in if complete, else the old one comes back: the
    new one is what the run's log.jsonl now records (a resume cuts the log to its step and logs the
    replayed steps again) and what a kill a moment later would have left. The old one is then deleted."""
    for aside in sorted(Path(root).glob(f"{REPLACED}step-*")):
        final = aside.parent / aside.name.removeprefix(REPLACED)
        new = aside.parent / f"{TEMP}{final.name}"
        if not final.exists():
            complete = new.is_dir() and problem_of(new) is None
            os.replace(new if complete else aside, final)
            log.warning("%s: a save of this step again was interrupted; %s", final,
                        "the new one, complete, is in place" if complete else "the one it was to replace is back")
        shutil.rmtree(aside, ignore_errors=True)


def finish_interrupted(root: Path) -> None:
    """What a kill left half done: a step's save again (`finish_replacements`), then a resume's
    moves of step folders to and from the shelves (`omniid.shelves.finish_moves`)."""
    finish_replacements(root)
    finish_moves(Path(root).parent)


def resume_point(out: Path, resume: str | Path | None) -> Path | None:
    """The checkpoint `--resume` names, checked: `auto` is the newest intact one under OUT (None
    if there is none); a folder given by name must be intact (there is no other to fall back to)."""
    if not resume:
        return None
    if str(resume) == "auto":
        return newest_intact(Path(out))
    finish_interrupted(Path(out) / CHECKPOINTS)  # the folder named may be a step whose re-save was killed
    folder = moved_back(Path(resume))  # a superseded step the moves just finished put back
    refuse_shelved(folder)
    if not (folder / STATE_FILE).is_file():
        raise CheckpointError(f"{folder}: not a checkpoint folder (no {STATE_FILE})")
    problem = problem_of(folder)
    if problem is not None:
        raise CheckpointError(f"{folder}: a damaged checkpoint ({problem}); give another step folder, or "
                              f"--resume auto to take the newest intact one")
    refuse_abandoning_used(Path(out), folder)
    return folder


def refuse_abandoning_used(out: Path, folder: Path) -> None:
    """CheckpointError when a resume from `folder` would set aside a newer step another run started
    from (--init-from): that run recorded the step where it is, and a save at that step is refused."""
    users = users_of(Path(out) / CHECKPOINTS)
    used = [f for f in abandoned_by(out, folder) if f.name in users]
    name = Path(folder).name
    what, since = ((f"the superseded {name}", step_name(branch_step(Path(folder).parent))) if going_back(out, folder)
                   else (f"the older {name}", name))
    if used:
        raise CheckpointError(f"{used[0]}: {', '.join(users[used[0].name])} started from this checkpoint "
                              f"(--init-from), so a resume from {what}, which would set it "
                              f"aside with the run's other steps after {since}, is refused: resume from "
                              f"{used[0].name} or a newer step to go on with this run, or go on from "
                              f"{Path(folder).name} in another run folder: --resume {folder} --out NEW_FOLDER")


def resume_hint(out: Path) -> str:
    """How to go on from what OUT holds now."""
    named = pointed(Path(out) / CHECKPOINTS)
    if named is None or not named.is_dir():
        return "no checkpoint was saved: re-run the same command to start again"
    return f"{out}/{CHECKPOINTS}/{LATEST} names {named.name}: run the same command to continue from it"


def after_non_finite(out: Path, step: int, saved: int | None) -> str:
    """What a non-finite loss at `step` did to the checkpoints (a clause of the error message).
    saved: the step of the checkpoint this run saved or resumed from last."""
    root = Path(out) / CHECKPOINTS
    named = pointed(root)
    if saved is None or saved != step - 1 or named is None or named.name != step_name(saved):
        return resume_hint(out)
    moved = set_aside(named, NON_FINITE)
    intact = next((f for f in step_folders(root) if problem_of(f) is None), None)
    point_latest(root, intact)
    return (f"{named.name} gives this loss again whatever the lr, so it was moved to {moved}; "
            + (f"{CHECKPOINTS}/{LATEST} names {intact.name}: resume with --resume auto and a lower --lr" if intact
               else "no other checkpoint is left: start again with a lower --lr"))


def remove_stale_temps(out: Path) -> None:
    """Temporary step folders (and preset.json copies) a killed save left behind (a live save
    removes its own), once a killed re-save's new folder has had its chance (`finish_replacements`)."""
    finish_interrupted(Path(out) / CHECKPOINTS)
    for tmp in (Path(out) / CHECKPOINTS).glob(f"{TEMP}step-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for tmp in Path(out).glob(f".tmp-{PRESET_FILE}-*"):  # atomic_write_bytes' temporary name
        tmp.unlink(missing_ok=True)


def resume_from(out: Path, resume, rank: int, world: int) -> Path | None:
    """The checkpoint to resume from (`resume_point`): rank 0 checks it and moves damaged ones
    aside, and every rank gets its answer (or its error)."""
    found = problem = None
    if rank == 0 and resume:
        try:
            found = resume_point(out, resume)
        except OmniIDError as error:
            problem = error
    found, problem = gather((found, problem), world)[0]
    if problem is not None:
        raise problem
    return found


@contextlib.contextmanager
def stopping_cleanly(run):
    """Ctrl-C, a non-finite loss and a full disk as one OmniIDError each, whose message says what
    `latest` names and how to go on (after the progress bar, so it is the last line). run: the
    engine's run (out, step, end, saved, main, bar)."""
    try:
        yield
    except BaseException as error:
        if run.bar is not None:
            run.bar.close()
        stop = _stop(run, error)
        if stop is None:
            raise
        raise stop from None


def _stop(run, error: BaseException) -> OmniIDError | None:
    if isinstance(error, KeyboardInterrupt):  # the step in flight is abandoned; `latest` was moved last, if at all
        return Interrupted(f"interrupted {_where(run)}; {resume_hint(run.out)}")
    if isinstance(error, NonFiniteLoss) and run.main:
        return NonFiniteLoss(f"{error}; {after_non_finite(run.out, run.step + 1, run.saved)}")
    if isinstance(error, (OSError, SafetensorError)) and is_disk_full(error):
        return disk_full(run.out, error, f"Training stopped after step {run.step}; {resume_hint(run.out)} "
                         "once there is space.")
    return None


def _where(run) -> str:
    """Where a stop came, out of the run's total steps; this invocation's own end where
    --stop-after (or the convergence rule) set another."""
    if not run.end:
        return "before the first step"
    total = run.preset.optim.total_steps
    until = f"; this invocation was to stop at step {run.end}" if run.end != total else ""
    return f"after step {run.step} of the run's {total}{until}"
