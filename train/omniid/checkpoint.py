"""The run folder's layout, and training checkpoints: safetensors for tensors, JSON for the rest.

A run folder OUT holds
  preset.json                        the preset as trained (with command-line overrides)
  log.jsonl                          one record per logged step (rank 0)
  prompt_embeds.safetensors          the flow stage's cached prompt (unless --prompt-embeds)
  checkpoints/step-XXXXXXXX/         one folder per saved step
  checkpoints/latest                 names the newest complete step folder
A step folder holds
  config.json, encoder.safetensors   (so `OmniIDEncoder.from_pretrained(folder)` loads it)
  the stage's own weights: decoder.safetensors (mtd) or adapter.safetensors + adapter_config.json
  (flow: `OmniIDAdapter.from_pretrained(folder)` loads it alone), representation.safetensors (a
  baseline's trained projection)
  optimizer.safetensors, rng.safetensors, state.json (step, stage, preset, ..., and `files`: the
  size and SHA-256 of every other file, checked on resume by `omniid.recovery`)
The weights' file names belong to the modules that write them (encoder, objectives.mtd, adapter,
baselines); what the weights are is the objective's business (`save_pretrained` /
`load_pretrained`). A checkpoint is written under a temporary name (`.tmp-step-*`) and renamed
into place, and `latest` is moved last. A step saved again (after a kill between a save's rename
and the move of `latest`, the resume replays to it; a resume from a named older step moves the
newer ones into checkpoints/superseded/ first, `omniid.shelves.supersede`) renames the old folder
aside (`.replaced-step-*`) before the new one comes in and deletes it after: a kill between the
renames leaves both complete, and the next start puts one back
(`omniid.recovery.finish_replacements`). Nothing is pickled, so loading a checkpoint cannot run code.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mfhq.manifest.io import atomic_write_bytes
from omniid.errors import CheckpointError, CheckpointNotFound

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
PRESET_FILE = "preset.json"
LOG_FILE = "log.jsonl"
PROMPT_EMBEDS_FILE = "prompt_embeds.safetensors"
FILES_KEY = "files"  # state.json: each file's size and SHA-256 at save time
TEMP = ".tmp-"          # a step folder being written
REPLACED = ".replaced-"  # a step folder being saved again: the old one, until the new one is in place

__all__ = ["CHECKPOINTS", "FILES_KEY", "LATEST", "LOG_FILE", "OPTIMIZER_FILE", "PRESET_FILE", "PROMPT_EMBEDS_FILE",
           "REPLACED", "RNG_FILE", "STATE_FILE", "TEMP", "CheckpointError", "CheckpointNotFound", "capture_rng",
           "damage", "file_records", "load_checkpoint", "point_latest", "pointed", "read_run_preset", "read_state",
           "recorded_prompt_cache", "require_files", "resolve_checkpoint", "restore_rng", "run_of",
           "save_checkpoint", "step_name", "weight_checksum", "write_run_preset"]


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def run_of(folder: Path) -> Path:
    """The run folder a step folder belongs to: OUT of OUT/checkpoints/step-*, and of a step on
    one of its shelves (OUT/checkpoints/damaged/step-*, .../superseded/from-step-K-<n>/step-*:
    `omniid.shelves`), whose preset and prompt cache are the run's too."""
    folder = Path(folder).absolute()
    for above in folder.parents[:3]:  # the nearest checkpoints/ above it
        if above.name == CHECKPOINTS:
            return above.parent
    return folder.parent.parent


def _optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def capture_rng() -> dict:
    """This process's RNG states: torch tensors plus JSON-able numpy/python states."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {"tensors": tensors, "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": [py_state[0], list(py_state[1]), py_state[2]]}


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["tensors"]["torch"])
    if "cuda" in rng["tensors"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["tensors"]["cuda"])
    kind, keys, *rest = rng["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))


def weight_checksum(model) -> float:
    """The sum of the trainable weights: DDP keeps them identical on every rank, and state.json shows it."""
    return sum(p.detach().double().sum().item() for p in model.parameters() if p.requires_grad)


def save_checkpoint(out: Path, model, optimizer, step: int, state: dict, rngs: list[dict]) -> Path:
    """model: the unwrapped objective; rngs: one `capture_rng()` per rank, in rank order. A save
    that fails or is interrupted removes its temporary folder: a full disk stays no fuller."""
    root = Path(out) / CHECKPOINTS
    final = root / step_name(step)
    tmp, aside = root / f"{TEMP}{final.name}", root / f"{REPLACED}{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        _write_step(tmp, model, optimizer, step, state, rngs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # saved again: never deleted before the new one is in place (a kill would lose the step)
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
    os.replace(tmp, final)
    point_latest(root, final)
    shutil.rmtree(aside, ignore_errors=True)
    return final


def _write_step(tmp: Path, model, optimizer, step: int, state: dict, rngs: list[dict]) -> None:
    model.save_pretrained(tmp)
    tensors, meta = _optimizer_to_tensors(optimizer)
    save_file(tensors, str(tmp / OPTIMIZER_FILE), metadata={"meta": json.dumps(meta)})
    rng_tensors = {f"rank{r}.{k}": v for r, rng in enumerate(rngs) for k, v in rng["tensors"].items()}
    rng_meta = [{k: v for k, v in rng.items() if k != "tensors"} for rng in rngs]
    save_file(rng_tensors, str(tmp / RNG_FILE), metadata={"meta": json.dumps(rng_meta)})
    # every other file's size and SHA-256, checked on resume (`damage`)
    (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state, FILES_KEY: file_records(tmp)}, indent=2))


def point_latest(root: Path, folder: Path | None) -> None:
    """`latest` names `folder` (written aside and renamed: never half a name); None removes it."""
    if folder is None:
        (root / LATEST).unlink(missing_ok=True)
        return
    (root / f".{LATEST}").write_text(folder.name)
    os.replace(root / f".{LATEST}", root / LATEST)


def pointed(root: Path) -> Path | None:
    """The step folder `root/latest` names (whether or not it exists); None without a readable pointer."""
    try:
        name = (root / LATEST).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return root / name if name and "/" not in name else None


def file_records(folder: Path) -> dict[str, dict]:
    """{name: {"bytes", "sha256"}} of every file of a step folder but state.json, which holds them."""
    return {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(Path(folder).iterdir()) if p.is_file() and p.name != STATE_FILE}


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def damage(folder: Path, skip: frozenset[str] = frozenset()) -> str | None:
    """What is wrong with a step folder (a file missing, cut short or changed since it was
    saved), or None when every file matches the size and SHA-256 recorded at save time.
    skip: files the caller never reads (generation reads no optimizer or RNG state), not checked."""
    folder = Path(folder)
    if not folder.is_dir():
        return "does not exist"
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except FileNotFoundError:
        return f"{STATE_FILE} is missing"
    except (OSError, ValueError) as error:
        return f"{STATE_FILE} cannot be read ({error})"
    recorded = state.get(FILES_KEY) if isinstance(state, dict) else None
    if recorded is None:  # saved before checksums were recorded: its files open, at least
        return _unrecorded_damage(folder, skip)
    for name, saved in sorted(recorded.items()):
        if name in skip:
            continue
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != saved["bytes"]:
            return f"{name} has {size} bytes, {saved['bytes']} were saved"
        if _sha256(path) != saved["sha256"]:
            return f"{name} does not match the SHA-256 recorded when it was saved"
    return None


def _unrecorded_damage(folder: Path, skip: frozenset[str]) -> str | None:
    for name in (OPTIMIZER_FILE, RNG_FILE):
        if name not in skip and not (folder / name).is_file():
            return f"{name} is missing"
    for path in sorted(p for p in folder.glob("*.safetensors") if p.name not in skip):
        try:
            with safe_open(str(path), "pt"):
                pass
        except Exception as error:  # safetensors' own error class, for a cut or garbled header
            return f"{path.name} cannot be read ({error})"
    return None


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder (-> its latest checkpoint), a `checkpoints/latest` pointer (-> the folder it
    names), the `checkpoints` folder, or a step folder (returned as is)."""
    path = Path(path)
    for pointer in (path, path / LATEST, path / CHECKPOINTS / LATEST):
        if pointer.is_file() and pointer.name == LATEST:
            folder = pointer.parent / pointer.read_text().strip()
            if not folder.is_dir():
                raise CheckpointNotFound(f"{pointer}: names {folder.name}, which does not exist")
            return folder
    if not path.is_dir():
        raise CheckpointNotFound(f"{path}: no such run folder, checkpoint folder or {CHECKPOINTS}/{LATEST} pointer")
    return path


def require_files(folder: Path, names: tuple[str, ...], problem: str, hint: str) -> None:
    """CheckpointNotFound naming the folder, what is missing and what to do, unless all of `names` exist."""
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise CheckpointNotFound(f"{folder}: {problem} (missing {', '.join(missing)}); {hint}")


def read_state(folder: Path) -> dict:
    state = Path(folder) / STATE_FILE
    return json.loads(state.read_text()) if state.is_file() else {}


def write_run_preset(out: Path, preset: dict) -> None:
    """Written aside and renamed: a kill mid-write leaves the old preset.json, never half of one."""
    atomic_write_bytes(Path(out) / PRESET_FILE, json.dumps(preset, indent=2).encode())


def read_run_preset(folder: Path) -> dict | None:
    """The preset a step folder's run trained with (its preset.json), or None outside a run folder."""
    saved = run_of(folder) / PRESET_FILE
    if not saved.is_file():
        return None
    try:
        return json.loads(saved.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{saved}: cannot be read ({error}); the run's preset is unknown (continuing the run "
                              "with the same command and --resume auto writes it again)") from error


def recorded_prompt_cache(folder: Path, state: dict) -> Path | None:
    """The prompt embeddings the run trained with: state.json's record, or the run folder's file."""
    recorded = state.get("prompt_embeds")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    cache = run_of(folder) / PROMPT_EMBEDS_FILE
    return cache if cache.is_file() else None


def load_checkpoint(folder: Path, model, optimizer, rank: int) -> dict:
    """Restores weights, optimizer and this rank's RNG; returns state.json's content."""
    folder = Path(folder)
    model.load_pretrained(folder)
    with safe_open(str(folder / OPTIMIZER_FILE), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    _optimizer_from_tensors(optimizer, tensors, meta)
    with safe_open(str(folder / RNG_FILE), "pt") as f:
        rng_meta = json.loads(f.metadata()["meta"])
        if rank < len(rng_meta):  # a resume on another world size keeps its fresh RNG
            tensors = {k.split(".", 1)[1]: f.get_tensor(k) for k in f.keys() if k.startswith(f"rank{rank}.")}
            restore_rng({"tensors": tensors, **rng_meta[rank]})
    return json.loads((folder / STATE_FILE).read_text())
