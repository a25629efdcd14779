"""Which omniid-train flag sets which preset field: the one table that both builds a command's
preset (`omniid.train_args.preset_from_args`) and names the flag in a re-run's refusal or an
explicit resume's warning (`omniid.continuation`), so a flag added here is named there too.

No torch import: `omniid-train --help` reads it.
"""
from __future__ import annotations

from omniid.config import FEW_TO_MANY


def _off(given: bool):
    """A --no-X switch: False when given, else the preset's value."""
    return False if given else None


def _few_to_many(side: int):
    return lambda given: FEW_TO_MANY[given][side] if given else None


# (preset field, the flag that sets it, its value from the flag's: None for as given; a flag's
# value of None leaves the preset's). --preset, --stage and --representation choose the preset
# itself (`CHOICE_FLAGS`).
PRESET_FLAGS = (
    ("optim.total_steps", "--steps", None), ("optim.grad_accum", "--grad-accum", None),
    ("optim.lr", "--lr", None), ("optim.warmup_steps", "--warmup-steps", None),
    ("optim.optimizer", "--optimizer", None), ("optim.bf16", "--no-bf16", _off),
    ("optim.grad_checkpointing", "--no-grad-checkpointing", _off),
    ("optim.representation_lr_scale", "--representation-lr-scale", None),
    ("data.num_inputs", "--few-to-many", _few_to_many(0)), ("data.num_targets", "--few-to-many", _few_to_many(1)),
    ("data.num_inputs_min", "--num-inputs-min", None), ("data.batch_size", "--batch-size", None),
    ("data.workers", "--workers", None), ("data.holdout_faces", "--holdout-faces", None),
    ("model.mask_ratio", "--mask-ratio", None),
    ("flow.flux_path", "--flux-path", None), ("flow.timesteps", "--timesteps", None),
    ("flow.guidance", "--guidance", None), ("flow.latents", "--latents", None),
    ("swap_warmup_steps", "--swap-warmup-steps", None), ("swap_min_gap", "--swap-min-gap", None),
    ("keep_checkpoints", "--keep-checkpoints", None), ("milestone_every", "--milestone-every", None),
    ("seed", "--seed", None), ("log_every", "--log-every", None), ("eval_every", "--eval-every", None),
    ("save_every", "--save-every", None), ("convergence.patience", "--patience", None),
)
# preset.json's fields that record the preset chosen rather than a field's override
CHOICE_FLAGS = {"name": "--preset", "stage": "--stage"}


def dest(flag: str) -> str:
    """argparse's attribute for a flag: --grad-accum -> grad_accum."""
    return flag.removeprefix("--").replace("-", "_")


def preset_overrides(args) -> dict:
    """get_preset's `section.field` overrides from parsed flags (None: the preset's value)."""
    return {field: (convert or (lambda given: given))(getattr(args, dest(flag)))
            for field, flag, convert in PRESET_FLAGS}


def flag_of(field: str) -> str | None:
    """The flag that sets a preset field (preset.json's dotted name), or None for one no flag sets."""
    return CHOICE_FLAGS.get(field) or next((flag for name, flag, _ in PRESET_FLAGS if name == field), None)
