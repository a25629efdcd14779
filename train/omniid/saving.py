"""One checkpoint save of a training run: checked, written by rank 0, then older ones pruned.

The new step folder is complete (written aside, renamed into place, `latest` moved) before any
older one is deleted (`omniid.retention`), so a kill at any point leaves the newest complete
checkpoint in place.
"""
from __future__ import annotations

import dataclasses
import logging

import torch

from omniid.checkpoint import CHECKPOINTS, capture_rng, save_checkpoint, step_name, weight_checksum
from omniid.checkpoint_trust import FLOW_RECORD
from omniid.distributed import barrier, gather
from omniid.errors import NonFiniteLoss
from omniid.retention import prune, refuse_overwrite

log = logging.getLogger("omniid.engine")


def save_step(run, model, optimizer, step: int, samples: int, record: dict) -> None:
    """run: the engine's run (preset, out, rank, world, main); record: state.json's extra facts."""
    bad = [name for name, p in model.named_parameters() if p.requires_grad and not bool(torch.isfinite(p).all())]
    if bad:  # never written: `latest` keeps naming weights that train
        raise NonFiniteLoss(f"the weights are not finite after step {step} ({', '.join(bad[:3])}"
                            f"{', ...' if len(bad) > 3 else ''}); not saved (lower the lr or check the data)")
    # each rank's RNG state, so that every rank resumes exactly; a checksum of the weights per
    # rank: DDP keeps them identical, and the record shows it
    rngs = gather(capture_rng(), run.world)
    checksums = gather(weight_checksum(model), run.world)
    if run.main:
        if len(set(checksums)) > 1:
            log.warning("ranks hold different weights at step %d: %s", step, checksums)
        root = run.out / CHECKPOINTS
        refuse_overwrite(root, step_name(step))
        # a flow or adapter step records the flow settings it trained with: generation uses them,
        # whatever its run's preset.json says later (`omniid.checkpoint_trust.recorded_flow`)
        flow = {FLOW_RECORD: dataclasses.asdict(run.preset.flow)} if record.get("stage", "mtd") != "mtd" else {}
        path = save_checkpoint(run.out, model, optimizer, step, {"samples": samples, "world": run.world,
                                                                 "preset": run.preset.name, **flow,
                                                                 "weight_checksums": checksums, **record}, rngs)
        log.info("saved %s", path)
        removed = prune(root, run.preset.keep_checkpoints, run.preset.milestone_every)
        if removed:
            log.info("removed %s (%s)", ", ".join(removed), _what_is_kept(run.preset))
    barrier(run.world)
    run.saved = step


def _what_is_kept(preset) -> str:
    """What `omniid.retention.kept` keeps, in words: --milestone-every 0 keeps no milestone."""
    milestones = f", every step that is a multiple of {preset.milestone_every}" if preset.milestone_every > 0 else ""
    return (f"keeping the newest {preset.keep_checkpoints}{milestones}, the one `latest` names and any that another "
            "run started from")
