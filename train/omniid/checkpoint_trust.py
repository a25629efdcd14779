"""Whether a step folder may be loaded: every file matches the size and SHA-256 its state.json
recorded at save time (`omniid.checkpoint.damage`), the one check of a resume, omniid-eval,
omniid-generate and the Python API (`OmniIDEncoder.from_pretrained`,
`OmniIDAdapter.from_pretrained`, `omniid.flux.load_flow_run`).

`problem_of` hashes a folder's files once per process while they are unchanged, so a run that
loads its encoder, adapter and FLUX from one checkpoint reads each file's bytes once.
`check_intact` raises the message every loader gives for a damaged checkpoint.
"""
from __future__ import annotations

from pathlib import Path

from omniid.checkpoint import OPTIMIZER_FILE, PRESET_FILE, RNG_FILE, STATE_FILE, CheckpointError, damage, run_of

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
    """The flow settings (guidance, prompt, FLUX's config and dtype) a step trained with: its
    run's preset.json's `run_flow` once the step's own record in state.json agrees, so a step
    folder moved into another run of the same preset is refused, naming both values, rather than
    generating with that run's settings. A step saved before the record: `run_flow` as given."""
    own = state.get(FLOW_RECORD)
    if not isinstance(own, dict):
        return run_flow
    diffs = [f"flow.{key} {own.get(key)!r} (its run's preset.json: {run_flow.get(key)!r})"
             for key in sorted(set(own) | set(run_flow)) if key not in NOT_SETTINGS and own.get(key) != run_flow.get(key)]
    if diffs:
        raise CheckpointError(f"{folder} was trained with other flow settings than its run's preset.json "
                              f"({run_of(folder) / PRESET_FILE}) gives: {'; '.join(diffs)}; the step folder is not "
                              "in the run folder that trained it (give it where omniid-train wrote it), or the run "
                              "was continued with other flow settings since (--resume)")
    return run_flow  # the same settings as the step's own record
