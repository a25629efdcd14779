"""The shelves of OUT/checkpoints: step folders set aside, never the run's history, never deleted.

  damaged/step-N                   failed its size/SHA-256 check (`omniid.recovery.newest_intact`)
  non-finite/step-N                gave a non-finite loss at the next step, as it will whatever the lr
  superseded/from-step-K-<n>/      the steps newer than K that going back to step K abandoned, and
                                   log.jsonl: the run's records of them when they were set aside

A damaged or non-finite step is never trained from: `--resume` naming one is refused in one line
(`refuse_shelved`). A superseded step is a history the run may go back to: `--resume
OUT/checkpoints/superseded/from-step-K-<n>/step-M --out OUT` abandons the run's steps newer than K
in turn (into a new from-step-K-<n'>), moves the shelf's steps K < s <= M back into checkpoints/,
puts the shelf's records of them back after log.jsonl's step K and points `latest` at step M. The
same folder given with another --out starts a new run from it and moves nothing.

Every such move (`supersede`) is written down first, in checkpoints/.moves.json, and carried out by
`carry_out`, which a start finds and finishes after a kill (`finish_moves`): it is resumable, and a
shelf folder is filled under a dot name (.from-step-K-<n>) and renamed into place whole, so a
reader sees all the steps one resume abandoned in one folder or none of them.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from omniid.checkpoint import CHECKPOINTS, LOG_FILE, CheckpointError, point_latest, read_state, run_of, step_name
from omniid.checkpoint_trust import problem_of
from omniid.retention import step_of

log = logging.getLogger(__name__)

DAMAGED = "damaged"
NON_FINITE = "non-finite"
SUPERSEDED = "superseded"
MOVES = ".moves.json"  # in checkpoints/: the moves a resume from an older or superseded step is making

# superseded step folders this process moved back into their run, and where they are now: the CLI,
# its checks and the engine each ask for the resume point, and the folder --resume names is gone
_moved_back: dict[Path, Path] = {}


def moved_back(folder: Path) -> Path:
    """Where a superseded step folder this process moved back into its run is now (else `folder`)."""
    return Path(folder) if Path(folder).exists() else _moved_back.get(Path(folder).absolute(), Path(folder))


def step_folders(root: Path) -> list[Path]:
    """The step folders directly in `root`, newest first (their names sort by step)."""
    if not Path(root).is_dir():
        return []
    return sorted((p for p in Path(root).glob("step-*") if p.is_dir()), reverse=True)


def set_aside(folder: Path, into: str) -> Path:
    """Moves a step folder into checkpoints/`into`/ (a new name if one is there already)."""
    shelf = folder.parent / into
    shelf.mkdir(parents=True, exist_ok=True)
    target, n = shelf / folder.name, 1
    while target.exists():
        n += 1
        target = shelf / f"{folder.name}.{n}"
    os.replace(folder, target)
    return target


def shelf_of(folder: Path) -> str | None:
    """DAMAGED, NON_FINITE or SUPERSEDED for a step folder on that shelf of a run, else None."""
    parents = [p.name for p in Path(folder).absolute().parents][:3]
    if parents[1:2] == [CHECKPOINTS] and parents[0] in (DAMAGED, NON_FINITE):
        return parents[0]
    if parents[1:3] == [SUPERSEDED, CHECKPOINTS] and parents[0].lstrip(".").startswith("from-"):
        return SUPERSEDED
    return None


def branch_step(shelf: Path) -> int | None:
    """K of a shelf folder from-step-K-<n>: the step its steps are newer than."""
    return step_of(Path(Path(shelf).name.lstrip(".").removeprefix("from-").rpartition("-")[0]))


def refuse_shelved(folder: Path) -> None:
    """CheckpointError, one line, for a step folder a run set aside as damaged or non-finite."""
    shelf = shelf_of(folder)
    if shelf == DAMAGED:
        problem = problem_of(Path(folder))
        why = f"its check fails: {problem}" if problem else "its check failed when it was set aside"
        raise CheckpointError(f"{folder}: a damaged checkpoint, set aside by its run ({why}); it is never trained "
                              f"from: --resume auto takes the run's newest intact step, or name an intact "
                              f"RUN/{CHECKPOINTS}/step-N")
    if shelf == NON_FINITE:
        raise CheckpointError(f"{folder}: set aside by its run because its weights gave a non-finite loss at the "
                              "next step, as they will whatever the lr; it is never trained from: resume from an older "
                              "step (--resume auto takes the run's newest intact one) with a lower --lr")
    if shelf == SUPERSEDED and branch_step(Path(folder).parent) is None:
        raise CheckpointError(f"{folder}: on a shelf whose name does not say the step it branched from "
                              f"(from-step-K-<n>); give a step folder of {CHECKPOINTS}/ or of such a shelf")


def going_back(out: Path, folder: Path) -> bool:
    """Whether `folder` is a superseded step of the run in `out` (its history to go back to)."""
    return shelf_of(folder) == SUPERSEDED and run_of(folder).resolve() == Path(out).resolve()


def abandoned_by(out: Path, folder: Path) -> list[Path]:
    """The step folders of OUT/checkpoints that a resume from `folder` moves away, newest first:
    those past its step, or past K for a step of the run's superseded/from-step-K-<n>/; [] for a
    folder of another run."""
    root = Path(out) / CHECKPOINTS
    if going_back(out, folder):
        step = branch_step(Path(folder).parent)
    elif root.is_dir() and Path(folder).resolve().parent == root.resolve():
        step = read_state(folder).get("step", step_of(Path(folder)))
    else:
        return []
    return [f for f in step_folders(root) if step is not None and (step_of(f) or -1) > step]


def supersede(out: Path, folder: Path) -> Path:
    """Makes `folder`'s history the run's (see the module's docstring) and returns where the step
    now is: the moves are written down (MOVES), then carried out (`carry_out`)."""
    out, folder = Path(out), Path(folder)
    root, back, newer = out / CHECKPOINTS, going_back(out, folder), abandoned_by(out, folder)
    if not newer and not back:
        return folder
    until = read_state(folder).get("step", step_of(folder))
    step = branch_step(folder.parent) if back else until
    restore = sorted(p.name for p in step_folders(folder.parent) if back and step < (step_of(p) or -1) <= until)
    n = 1
    while newer and any((root / SUPERSEDED / f"{dot}from-{step_name(step)}-{n}").exists() for dot in ("", ".")):
        n += 1
    plan = {"step": step, "until": until, "latest": folder.name, "abandon": [f.name for f in newer],
            "shelf": f"from-{step_name(step)}-{n}" if newer else None, "source": folder.parent.name if back else None,
            "restore": restore}
    (root / f"{MOVES}.tmp").write_text(json.dumps(plan, indent=2))
    os.replace(root / f"{MOVES}.tmp", root / MOVES)
    carry_out(out, plan)
    return root / folder.name


def carry_out(out: Path, plan: dict) -> None:
    """The moves `supersede` planned, each done at most once (a kill part way and `finish_moves`
    go on where it stopped): `latest` back to step K and log.jsonl cut to it, the abandoned steps
    into the staging shelf (with their records), the shelf renamed into place, the restored steps
    and their records back, `latest` at the step resumed, MOVES removed."""
    root, step = Path(out) / CHECKPOINTS, plan["step"]
    shelf = root / SUPERSEDED / plan["shelf"] if plan["shelf"] else None
    if shelf is not None and not shelf.exists():
        staging = shelf.with_name(f".{shelf.name}")
        staging.mkdir(parents=True, exist_ok=True)
        if not (staging / LOG_FILE).exists():  # before the cut below; a kill after it finds them here
            write_lines(staging / LOG_FILE, [line for line in log_lines(out) if step < _logged_step(line) < math.inf])
        point_latest(root, next((f for f in step_folders(root) if (step_of(f) or math.inf) <= step), None))
        keep_log_until(Path(out) / LOG_FILE, step)
        for name in plan["abandon"]:
            if (root / name).is_dir():
                os.replace(root / name, staging / name)
        os.replace(staging, shelf)  # the shelf appears whole
    source = root / SUPERSEDED / plan["source"] if plan["source"] else None
    for name in plan["restore"]:
        if (source / name).is_dir() and not (root / name).exists():
            os.replace(source / name, root / name)
    restored = [line for line in log_lines(source) if step < _logged_step(line) <= plan["until"]] if source else []
    if (Path(out) / LOG_FILE).is_file() or restored:
        write_lines(Path(out) / LOG_FILE, [line for line in log_lines(out) if _logged_step(line) <= step] + restored)
    point_latest(root, root / plan["latest"])
    if source is not None:
        _moved_back[(source / plan["latest"]).absolute()] = root / plan["latest"]
    (root / MOVES).unlink()
    _say_moved(root, plan, shelf, source)


def _say_moved(root: Path, plan: dict, shelf: Path | None, source: Path | None) -> None:
    newer, s = plan["abandon"], "s" if len(plan["abandon"]) > 1 else ""
    which = f"the run's {len(newer)} step folder{s} newer than {step_name(plan['step'])}" if source else \
        f"{len(newer)} newer step folder{s}"
    moved = f"moved {which} ({', '.join(reversed(newer))}) to {shelf} (kept there, never deleted)" if newer else ""
    if source is None:
        log.info("resuming from %s, older than the run's newest step: %s; latest names %s", plan["latest"], moved,
                 plan["latest"])
    else:
        log.info("resuming from %s, a superseded step of this run: %s%s back from %s, with their records in %s; "
                 "latest names %s", plan["latest"], f"{moved} and " if moved else "moved ", ", ".join(plan["restore"]),
                 source, LOG_FILE, plan["latest"])


def finish_moves(out: Path) -> None:
    """Finishes the moves of a resume a kill interrupted (MOVES is there), saying so: the same
    command again then goes on from the step it named (`moved_back`)."""
    moves = Path(out) / CHECKPOINTS / MOVES
    if moves.is_file():
        plan = json.loads(moves.read_text())
        log.warning("%s: a resume's moves were interrupted; finishing them (latest to name %s)", moves, plan["latest"])
        carry_out(Path(out), plan)


def log_lines(run: Path | None) -> list[str]:
    """The lines of `run`/log.jsonl (a run folder or a shelf), [] without one."""
    path = Path(run) / LOG_FILE if run is not None else None
    return path.read_text().splitlines(keepends=True) if path is not None and path.is_file() else []


def write_lines(path: Path, lines: list[str]) -> None:
    """Written aside and renamed: a kill never leaves half a log."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, path)


def keep_log_until(path: Path, step: int) -> None:
    """Drops log.jsonl's records past `step` (and a last line cut short by a kill): a resumed run
    logs the steps it replays again, so each step is in the log once."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _logged_step(line) <= step]
    if kept != lines:
        write_lines(path, kept)


def _logged_step(line: str) -> float:
    try:
        return json.loads(line).get("step", 0) if line.endswith("\n") else math.inf
    except (ValueError, AttributeError):
        return math.inf
