"""Training checkpoints: safetensors for weights, optimizer state and RNG state; JSON for the rest.

A checkpoint folder `OUT/checkpoints/step-XXXXXXXX/` holds
  config.json, encoder.safetensors   (so `OmniIDEncoder.from_pretrained(folder)` loads it)
  decoder.safetensors, optimizer.safetensors, rng.safetensors, state.json
It is written under a temporary name and renamed into place; `OUT/checkpoints/latest` names the
newest complete one. Nothing is pickled, so loading a checkpoint cannot run code.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

LATEST = "latest"


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


def save_checkpoint(out: Path, model, optimizer, step: int, state: dict, rngs: list[dict]) -> Path:
    """model: the unwrapped OmniIDMTD; rngs: one `capture_rng()` per rank, in rank order."""
    root = Path(out) / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.encoder.save_pretrained(tmp)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.decoder.state_dict().items()},
              str(tmp / "decoder.safetensors"))
    tensors, meta = _optimizer_to_tensors(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"), metadata={"meta": json.dumps(meta)})
    rng_tensors = {f"rank{r}.{k}": v for r, rng in enumerate(rngs) for k, v in rng["tensors"].items()}
    rng_meta = [{k: v for k, v in rng.items() if k != "tensors"} for rng in rngs]
    save_file(rng_tensors, str(tmp / "rng.safetensors"), metadata={"meta": json.dumps(rng_meta)})
    (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    (root / f".{LATEST}").write_text(final.name)
    os.replace(root / f".{LATEST}", root / LATEST)
    return final


def find_checkpoint(out: Path, resume: str) -> Path | None:
    """`auto`: the latest checkpoint under OUT if any; else the given folder, which must exist."""
    if resume == "auto":
        pointer = Path(out) / "checkpoints" / LATEST
        return pointer.parent / pointer.read_text().strip() if pointer.is_file() else None
    folder = Path(resume)
    if not (folder / "state.json").is_file():
        raise FileNotFoundError(f"{folder}: not a checkpoint folder (no state.json)")
    return folder


def load_checkpoint(folder: Path, model, optimizer, rank: int) -> dict:
    """Restores weights, optimizer and this rank's RNG; returns state.json's content."""
    folder = Path(folder)
    model.encoder.load_state_dict(load_file(str(folder / "encoder.safetensors")))
    model.decoder.load_state_dict(load_file(str(folder / "decoder.safetensors")))
    with safe_open(str(folder / "optimizer.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    _optimizer_from_tensors(optimizer, tensors, meta)
    with safe_open(str(folder / "rng.safetensors"), "pt") as f:
        rng_meta = json.loads(f.metadata()["meta"])
        if rank < len(rng_meta):  # a resume on another world size keeps its fresh RNG
            tensors = {k.split(".", 1)[1]: f.get_tensor(k) for k in f.keys() if k.startswith(f"rank{rank}.")}
            restore_rng({"tensors": tensors, **rng_meta[rank]})
    return json.loads((folder / "state.json").read_text())
