"""Whether a step folder may be loaded: every file matches the size and SHA-256 its state.json
recorded at save time (`omniid.checkpoint.damage`), the one check of a resume, omniid-eval,
omniid-generate and the Python API (`OmniIDEncoder.from_pretrained`,
`OmniIDAdapter.from_pretrained`, `omniid.flux.load_flow_run`).

`problem_of` hashes a folder's files once per process while they are unchanged, so a run that
loads its encoder, adapter and FLUX from one checkpoint reads each file's bytes once.
`check_intact` raises the message every loader gives for a damaged checkpoint.
"""
from __future__ import annotations

import logging
from pathlib import Path

from omniid.checkpoint import OPTIMIZER_FILE, PRESET_FILE, RNG_FILE, STATE_FILE, CheckpointError, damage, run_of

log = logging.getLogger(__name__)
GENERATION_SKIPS = frozenset({OPTIMIZER_FILE, RNG_FILE})  # in a step folder, read by training alone

# step folders found intact in this process, by their files' (name, size, mtime): the CLI and the
# engine both ask for the resume point, and the files are hashed once (keyed with the files skipped)
_intact: dict[tuple[Path, frozenset], tuple] = {}


def _signature(folder: Path) -> tuple:
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()))


def problem_of(folder: Path, skip: frozenset[str] = frozenset()) -> str | None:
    """`omniid.checkpoint.damage`, hashing a folder's files once per process while they are unchanged."""
    key = (folder.resolve(), skip)
    if folder.is_dir() and _intact.get(key) == _signature(folder):
        return None
    problem = damage(folder, skip)
    if problem is None:
        _intact[key] = _signature(folder)
    return problem


def check_intact(folder: Path, skip: frozenset[str] = GENERATION_SKIPS) -> None:
    """CheckpointError naming the folder and what is wrong, unless every file it loads is as saved
    (the optimizer and RNG state, which only training reads, are skipped by default)."""
    problem = problem_of(Path(folder), skip)
    if problem is not None:
        raise CheckpointError(f"{folder}: a damaged checkpoint ({problem}); give an intact step folder of "
                              f"the run (RUN/checkpoints/step-N)")


def check_if_training_checkpoint(folder: Path) -> None:
    """`check_intact` for a step folder that training saved (one with a state.json, or with the
    optimizer or RNG state only training writes: its state.json is then missing); a folder written
    by `save_pretrained` records no checksums and is loaded as it is."""
    folder = Path(folder)
    if any((folder / name).is_file() for name in (STATE_FILE, OPTIMIZER_FILE, RNG_FILE)):
        check_intact(folder)


# state.json's record of the flow settings a flow or adapter step trained with (`omniid.saving`);
# flux_path is where FLUX lay on that machine (its weights are checked by sha256), not a setting
FLOW_RECORD = "flow"
NOT_SETTINGS = ("flux_path",)


def recorded_flow(folder: Path, state: dict, run_flow: dict) -> dict:
    """The flow settings (guidance, prompt, FLUX's config and dtype) a step trained with: its own
    record in state.json where it has one, else its run's preset.json's `run_flow` (a step saved
    before the record). The two differ for a step folder moved into another run of its preset,
    and for an older step of a run continued since with other flow settings (`--resume`): the
    step's record is what it trained with, so it wins, and the difference is logged naming both.
    Where the weights are (`flux_path`) is the run's: they are checked by their hashes."""
    own = state.get(FLOW_RECORD)
    if not isinstance(own, dict):
        return run_flow
    diffs = [f"flow.{key} {own.get(key)!r} (its run's preset.json: {run_flow.get(key)!r})"
             for key in sorted(set(own) | set(run_flow)) if key not in NOT_SETTINGS and own.get(key) != run_flow.get(key)]
    if diffs:
        log.warning("%s trained with other flow settings than its run's preset.json (%s) gives: %s; using the "
                    "step's own (its state.json)", folder, run_of(folder) / PRESET_FILE, "; ".join(diffs))
    return {**run_flow, **{key: value for key, value in own.items() if key not in NOT_SETTINGS}}
