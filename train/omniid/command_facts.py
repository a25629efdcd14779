"""The facts a run is started with besides its preset, as each checkpoint's state.json records them.

The representation, the manifest and test manifest (resolved path and sha256, so a manifest
rebuilt at the same path is caught), `--init-from` (the step folder it resolves to) and the number
of processes (it sets the global batch and the sampler's draws); and the frozen weights a run loads
from outside its checkpoints (`frozen_facts`: a baseline's CLIP weights file and identity model,
the FLUX folder), by sha256 only: their files may lie elsewhere on another machine, so their paths
are recorded for provenance and not compared. `omniid.continuation` compares them on a re-run of
omniid-train; omniid-eval checks the frozen weights (`check_frozen_weights`).
"""
from __future__ import annotations

import logging
from pathlib import Path

from mfhq.manifest.io import sha256_of
from omniid.checkpoint import resolve_checkpoint
from omniid.errors import CheckpointError, CheckpointNotFound, check_weights

log = logging.getLogger(__name__)

# the facts compared besides the preset, as the refusal names them
FACTS = {"representation": "--representation", "manifest": "--manifest", "manifest_sha256": "--manifest's sha256",
         "test_manifest": "--test-manifest", "test_manifest_sha256": "--test-manifest's sha256",
         "init_from": "--init-from", "world": "number of processes",
         "clip_weights_sha256": "frozen CLIP weights (--clip-weights)", "flux_sha256": "FLUX folder (--flux-path)",
         "identity_model_sha256": "frozen identity model (the mfhq pipeline's)"}
# each frozen weight's sha256 fact -> its path fact, which is recorded and never compared
FROZEN = {"clip_weights_sha256": "clip_weights", "flux_sha256": "flux", "identity_model_sha256": "identity_model"}


def manifest_facts(manifest: Path, test_manifest: Path | None) -> dict:
    """The data a run trains and evaluates on: each file's resolved path and sha256 (the same
    sha256 a manifest folder's manifest.json lists, which `read_manifest` checks against the file;
    hashed here so a Parquet file without a sidecar is covered too). manifest: a file or a folder
    (its train.parquet, as `omniid.data` reads it); test_manifest: None or a missing file for none."""
    train = manifest / "train.parquet" if manifest.is_dir() else manifest
    test = test_manifest if test_manifest is not None and test_manifest.is_file() else None
    return {"manifest": str(train.resolve()), "manifest_sha256": sha256_of(train),
            "test_manifest": str(test.resolve()) if test else None,
            "test_manifest_sha256": sha256_of(test) if test else None}


def init_from_fact(init_from: str | Path | None) -> str | None:
    """The step folder --init-from resolves to, as the engine records it (None without one)."""
    if init_from is None:
        return None
    try:
        return str(resolve_checkpoint(init_from).resolve())
    except CheckpointNotFound:  # the fresh start names the problem; here it only has to differ
        return str(Path(init_from).resolve())


def frozen_facts(preset, representation: str, flux: bool, clip_weights=None, flux_path=None, models_dir=None,
                 prompt_cache: Path | None = None) -> dict:
    """The frozen weights a run loads from outside its checkpoints, as state.json records them:
    when the stage trains on FLUX (flux), the FLUX folder (`omniid.flux.loading.flux_identity`;
    with prompt_cache, omniid-train's check of every FLUX file it needs, text encoders included
    while that cache is missing), then the CLIP weights file of a baseline's frozen tower and its
    mfhq identity model (`omniid.baselines`; its weights in models_dir, else where mfhq looks: the
    folder the model loads from). None for what it does not load (a random tower or FLUX config is
    in the preset or the checkpoint). Every missing or damaged one is reported at once."""
    from omniid.baselines import frozen_clip_identity, frozen_identity_model
    from omniid.flux.loading import check_flux_files, flux_identity

    def flux_facts() -> dict:
        if not flux:
            return {"flux": None, "flux_sha256": None}
        if prompt_cache is not None:
            check_flux_files(preset.flow, flux_path, prompt_cache)
        return flux_identity(preset.flow, flux_path)

    facts = check_weights(flux_facts, lambda: frozen_clip_identity(representation, preset.model, clip_weights),
                          lambda: frozen_identity_model(representation, preset, models_dir))
    return {key: value for part in facts for key, value in part.items()}


def _weights(sha256: str | None, path: str | None) -> str:
    return f"{path} (sha256 {sha256[:12]}...)" if sha256 else "none"


def frozen_differences(recorded: dict, facts: dict) -> list[str]:
    """'what: recorded file (this command: its file)' for each frozen weight that recorded holds
    and facts gives another sha256 for (facts may name some only: `omniid.flux.run` loads FLUX alone)."""
    return [f"{FACTS[key]} {_weights(recorded[key], recorded.get(where))} (this command: "
            f"{_weights(facts.get(key), facts.get(where))})"
            for key, where in FROZEN.items() if key in recorded and key in facts and recorded[key] != facts[key]]


def unrecorded_weights(recorded: dict, facts: dict) -> list[str]:
    """The frozen weights this command loads that recorded (an older state.json) does not name."""
    return [FACTS[key] for key in FROZEN if facts.get(key) is not None and key not in recorded]


def check_frozen_weights(folder: Path, state: dict, facts: dict) -> None:
    """omniid-eval's (and `load_flow_run`'s) check that a checkpoint is used with the frozen weights
    it was trained with: other weights are refused; a checkpoint saved before they were recorded,
    a warning. facts: `frozen_facts`, or the part of it a loader loads."""
    diffs = frozen_differences(state, facts)
    if diffs:
        raise CheckpointError(f"{folder} was trained with other frozen weights than this command loads: "
                              f"{'; '.join(diffs)}. Give the run's own (--clip-weights FILE, --flux-path DIR; the "
                              "identity model's weights: --models-dir DIR or MFHQ_MODELS_DIR) to evaluate it as it was trained")
    unrecorded = unrecorded_weights(state, facts)
    if unrecorded:
        log.warning("%s: saved before omniid-train recorded the frozen weights a run loads, so its %s cannot be "
                    "verified to be the ones it was trained with", folder, " and ".join(unrecorded))


def recorded_differences(recorded: dict, facts: dict) -> list[str]:
    """'what: recorded value (this command: its value)' for each fact of `facts` that the
    checkpoint's record gives otherwise (frozen weights by sha256 only)."""
    diffs = frozen_differences(recorded, facts)
    for key, value in sorted(facts.items()):
        if key in FROZEN or key in FROZEN.values():  # compared above, by sha256 only
            continue
        theirs = recorded.get(key)  # init_from: absent when the run had none
        if key == "init_from" and theirs is not None:  # older runs recorded it as given: maybe relative
            theirs = str(Path(theirs).resolve())
        if theirs == value:
            continue
        path_key = key.removesuffix("_sha256")
        if path_key == key:
            diffs.append(f"{FACTS.get(key, key)} {theirs!r} (this command: {value!r})")
        elif recorded.get(path_key) == facts.get(path_key):  # another path is named above already
            diffs.append(f"{FACTS[key]} {str(theirs)[:12]}... (this command: {str(value)[:12]}...: the file was "
                         "rebuilt or changed since the run started)")
    return diffs
