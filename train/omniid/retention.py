"""Which step folders a run keeps, and which checkpoints other runs depend on.

A paper MTD run saves every 5000 steps, about 9.5 GB each: kept all, 250K steps fill about
475 GB. After each complete save (the new folder renamed into place and `latest` moved), rank 0
keeps the newest `keep_checkpoints` step folders, every step that is a multiple of
`milestone_every`, the folder `latest` names, and any folder another run started from through
`--init-from`; the rest are deleted. A folder is renamed to `.deleting-step-*` before it is
removed, so a kill during the deletion never leaves half a checkpoint under its step name (the
next start removes the leftover, as it does a killed save's temporary folder).

`--init-from FOLDER` records the new run in `<FOLDER's run>/checkpoints/used-by.json`
({step folder: [run folders]}); such a folder is never pruned, never overwritten by a save of
its own run, never moved away by a resume of its run from an older step (refused,
`omniid.recovery.refuse_abandoning_used`), and `--restart` of its run is refused, while the run
that uses it still exists.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from omniid.checkpoint import CHECKPOINTS, CheckpointError, pointed

log = logging.getLogger(__name__)

USED_BY_FILE = "used-by.json"
DELETING = ".deleting-"


def step_of(folder: Path) -> int | None:
    """The step a step folder's name says (step-00000042: 42); None for any other name."""
    try:
        return int(folder.name.removeprefix("step-")) if folder.name.startswith("step-") else None
    except ValueError:
        return None


def users_of(root: Path) -> dict[str, list[str]]:
    """{step folder name: [run folders that started from it and still exist]}."""
    try:
        recorded = json.loads((Path(root) / USED_BY_FILE).read_text())
    except (OSError, ValueError):
        return {}
    alive = {name: [run for run in runs if Path(run).is_dir()] for name, runs in recorded.items()}
    return {name: runs for name, runs in alive.items() if runs}


def record_use(folder: Path, user: Path) -> None:
    """Notes in `folder`'s run that the run `user` started from it (a warning, not an error, when
    that run folder is read-only: it is then not protected from its own run's pruning)."""
    root = Path(folder).parent  # a step of the run's history: a shelf's step is never pruned, and its
    if root.name != CHECKPOINTS or not root.is_dir() or step_of(Path(folder)) is None:  # name is another's
        return
    try:
        recorded = json.loads((root / USED_BY_FILE).read_text())
    except (OSError, ValueError):
        recorded = {}
    runs = recorded.setdefault(Path(folder).name, [])
    if str(Path(user).resolve()) not in runs:
        runs.append(str(Path(user).resolve()))
    try:
        tmp = root / f".{USED_BY_FILE}.tmp"
        tmp.write_text(json.dumps(recorded, indent=2))
        os.replace(tmp, root / USED_BY_FILE)
    except OSError as error:
        log.warning("cannot record in %s that %s starts from %s (%s): its run may prune or replace it",
                    root, user, folder.name, error.strerror or error)


def refuse_overwrite(root: Path, name: str) -> None:
    """CheckpointError when a save would replace a step folder another run started from."""
    users = users_of(root).get(name)
    if users and (Path(root) / name).is_dir():
        raise CheckpointError(f"{Path(root) / name}: {', '.join(users)} started from this checkpoint (--init-from), "
                              f"so it is not replaced; train into another --out")


def kept(root: Path, keep: int, milestone_every: int) -> set[str]:
    """The step folder names a run keeps (see the module's docstring); keep 0 keeps all."""
    steps = sorted((p for p in Path(root).glob("step-*") if p.is_dir() and step_of(p) is not None),
                   key=step_of, reverse=True)
    if keep <= 0:
        return {p.name for p in steps}
    names = {p.name for p in steps[:keep]}
    names |= {p.name for p in steps if milestone_every > 0 and step_of(p) % milestone_every == 0}
    latest = pointed(Path(root))
    names |= {latest.name} if latest is not None else set()
    return names | set(users_of(root))


def prune(root: Path, keep: int, milestone_every: int) -> list[str]:
    """Deletes the step folders `kept` leaves out; returns their names."""
    root = Path(root)
    keep_names = kept(root, keep, milestone_every)
    removed = []
    for folder in sorted(root.glob("step-*")):
        if folder.is_dir() and step_of(folder) is not None and folder.name not in keep_names:
            doomed = root / f"{DELETING}{folder.name}"
            os.replace(folder, doomed)
            _remove(doomed)
            removed.append(folder.name)
    return removed


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def remove_leftovers(root: Path) -> None:
    """Deletions a kill interrupted."""
    for leftover in Path(root).glob(f"{DELETING}step-*"):
        shutil.rmtree(leftover, ignore_errors=True)
