"""A tiny diffusers-format FLUX folder and a flow run whose preset loads one, as the paper
preset's FLUX.1-dev folder and runs are, without the gated download."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from omniid.checkpoint import pointed
from omniid.cli import main
from omniid.config import PRESETS


def flux_folder(folder: Path, seed: int) -> Path:
    """A diffusers-format FLUX folder of the tiny configs, its weights drawn from `seed`."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    from omniid.config import TINY_FLUX, TINY_VAE
    from omniid.flux.loading import flow_scheduler

    torch.manual_seed(seed)
    FluxTransformer2DModel(**TINY_FLUX).save_pretrained(folder / "transformer")
    AutoencoderKL(**TINY_VAE).save_pretrained(folder / "vae")
    flow_scheduler(None).save_pretrained(folder / "scheduler")  # FLUX.1-dev's settings, as its folder has them
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    return folder


def flux_run(manifest: Path, tmp_path: Path, monkeypatch) -> tuple[Path, Path, dict]:
    """(a tiny flow run as one trained on the FLUX folder returned leaves it, the folder, its
    state): its preset (registered for the test) loads a FLUX folder, its state records that one."""
    from omniid.config import FlowConfig
    from omniid.flux.loading import flux_identity

    tiny, name = PRESETS["tiny"], "tiny-flux-folder"
    monkeypatch.setitem(PRESETS, name, dataclasses.replace(tiny, name=name, flow=dataclasses.replace(
        tiny.flow, transformer=None, vae=None)))
    out = tmp_path / "run"
    assert main(["--manifest", str(manifest), "--preset", "tiny", "--stage", "flow", "--out", str(out),
                 "--steps", "1", "--batch-size", "1", "--eval-every", "100"]) == 0
    trained = flux_folder(tmp_path / "flux", seed=1)
    preset = json.loads((out / "preset.json").read_text())
    preset["name"] = name
    preset["flow"].update(transformer=None, vae=None)
    (out / "preset.json").write_text(json.dumps(preset))
    saved = pointed(out / "checkpoints") / "state.json"
    recorded = {**json.loads(saved.read_text()), "preset": name, "flow": preset["flow"],  # as trained on it
                **flux_identity(FlowConfig(**preset["flow"]), trained)}
    saved.write_text(json.dumps(recorded))
    return out, trained, recorded
