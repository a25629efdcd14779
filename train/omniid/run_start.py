"""Where a training run starts: its own checkpoint resumed, or step 0 with `--init-from`'s encoder."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from omniid.checkpoint import (LOG_FILE, STATE_FILE, CheckpointError, load_checkpoint, read_state, require_files,
                               resolve_checkpoint)
from mfhq.manifest.io import placed
from omniid.command_facts import init_from_fact
from omniid.config import Preset
from omniid.errors import FlagError
from omniid.encoder import CONFIG_FILE, WEIGHTS_FILE
from omniid.distributed import gather
from omniid.recovery import problem_of, resume_from
from omniid.resume_record import CONTINUED_WITH, RESUMED_WITH, continued_with
from omniid.retention import record_use
from omniid.run_progress import JsonlLog
from omniid.shelves import refuse_shelved, supersede

log = logging.getLogger("omniid.engine")

ENCODER_FIELDS = ("clip_model", "image_size", "num_queries", "width", "heads", "cross_blocks", "self_blocks",
                  "mlp_ratio")


def check_init_from_apart(init_from: str | Path | None, out: Path) -> None:
    """--init-from must not name the run --out holds: it would start from its own checkpoint,
    which --restart (the advice of the refusal its record gets) deletes before reading it."""
    if init_from is None:
        return
    for named in (init_from, init_from_fact(init_from)):  # as given, and the step folder it resolves to
        if placed(named, out):
            raise FlagError(f"--init-from {init_from} is a checkpoint of --out {out}, the run this command trains: a "
                            "run cannot start from its own checkpoint (--restart would delete it first). To continue "
                            "that run leave out --init-from; to start a new run from it give another --out")


def check_init_from(path: str | Path, preset: Preset) -> Path:
    """The checkpoint folder `--init-from` names, checked to hold an encoder of this preset."""
    folder = resolve_checkpoint(path)
    refuse_shelved(folder)  # set aside as damaged or non-finite: never trained from, by a new run either
    require_files(folder, (CONFIG_FILE, WEIGHTS_FILE), "not an Omni-ID checkpoint",
                  "--init-from takes a run folder, its checkpoints/latest or a step folder")
    state = read_state(folder)
    saved = json.loads((folder / CONFIG_FILE).read_text()).get("model", {})
    ours = preset.model.to_dict()
    # what shapes the encoder; MTD-only settings (mask ratio, decoder patch) may differ
    differs = [k for k in ENCODER_FIELDS if saved.get(k) != ours[k]]
    theirs = state.get("preset")
    if (theirs and theirs != preset.name) or differs:
        why = (f"encoder settings differ: {', '.join(differs)}" if differs else
               "another preset, with the same encoder shape")
        raise CheckpointError(f"{folder}: a checkpoint of preset {theirs or '?'} ({why}); this run uses preset "
                              f"{preset.name}: --init-from takes a checkpoint of the same preset")
    problem = problem_of(folder) if (folder / STATE_FILE).is_file() else None
    if problem is not None:
        raise CheckpointError(f"{folder}: a damaged checkpoint ({problem}); --init-from takes an intact one")
    return folder


def _superseding(run, checkpoint: Path) -> Path:
    """Where `checkpoint` is once rank 0 has made its history the run's (`omniid.shelves.supersede`:
    a superseded step moves back into checkpoints/), on every rank, or rank 0's error."""
    moved = problem = None
    if run.main:
        try:
            moved = supersede(run.out, checkpoint)
        except OSError as error:  # every rank stops, not rank 0 alone
            problem = error
    moved, problem = gather((moved, problem), run.world)[0]
    if problem is not None:
        raise problem
    return moved


def start(run, model, optimizer, resume, init_from, record) -> tuple[int, int, dict]:
    """(step, samples, state.json record) to start from: a resumed checkpoint's, or step 0 with
    --init-from's encoder. run: the engine's run (out, rank, world, stage, preset, main);
    its `saved` is set to a resumed step."""
    step, samples = 0, 0
    checkpoint = resume_from(run.out, resume, run.rank, run.world)
    record = dict(record or {})
    differed = record.pop(RESUMED_WITH, None)  # what an explicit --resume continues despite (omniid.continuation)
    if checkpoint is not None:
        theirs = read_state(checkpoint).get("stage", "mtd")
        if theirs != run.stage:
            raise CheckpointError(f"{checkpoint}: a {theirs} checkpoint; the {run.stage} stage resumes only its own "
                                  f"(start it from this one with --init-from and a new --out)")
        if str(resume) != "auto":  # a step folder named: the run's newer steps are abandoned
            checkpoint = _superseding(run, checkpoint)
        state = load_checkpoint(checkpoint, model, optimizer, run.rank)
        step, samples = state["step"], state["samples"]
        run.saved = step
        record.update({k: record.get(k, state.get(k)) for k in ("init_from", "convergence")})
        record.update(continued_with(state, checkpoint, differed))  # kept in every later checkpoint
        if differed:
            JsonlLog(run.out / LOG_FILE, run.main).write({"step": step, CONTINUED_WITH: differed})
        log.info("resumed from %s at step %d", checkpoint, step)
    elif init_from is not None:
        folder = check_init_from(init_from, run.preset)
        model.init_from(folder)
        record["init_from"] = str(folder.resolve())  # compared on a re-run from any working folder
        if run.main:  # so that its own run never prunes, replaces or restarts it away
            record_use(folder, run.out)
        log.info("encoder from %s (its decoder, if any, is dropped)", folder)
    return step, samples, record
