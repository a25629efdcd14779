"""Generation from a trained flow-stage checkpoint: the representation, the adapter and FLUX.

    gen = OmniIDGenerator.from_checkpoint("runs/flow")          # run folder, checkpoints/latest or a step
    tokens = gen.tokens([["a.jpg", "b.jpg", "c.jpg"]])           # one identity -> [1, N, D]
    images = gen.generate(tokens, seeds=[0], steps=28)           # list of PIL images

Everything goes through the flow stage's own pieces (`omniid.objectives` builds the model exactly
as training did, `omniid.flux.sample` runs diffusers' FluxPipeline on cached prompt embeddings),
so what is evaluated is what was trained. Each image has its own seeded generator: an image
depends on its seed only, not on what else is in the batch.

`ip_adapter_kwargs(tokens)` gives the arguments a user's own `FluxPipeline` /
`FluxControlNetPipeline` call needs once `OmniIDAdapter.from_pretrained(ckpt).attach(pipe)` ran.
"""
from __future__ import annotations

import hashlib
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from omniid.adapter import ADAPTER_CONFIG, ADAPTER_FILE
from omniid.checkpoint import (CheckpointError, read_run_preset, read_state, recorded_prompt_cache, require_files,
                               resolve_checkpoint)
from omniid.encoder import quiet_random_init
from omniid.flux.loading import TEXT_PARTS, require_flux_folder
from omniid.flux.prompt import encode_prompt_with_text_encoders, random_prompt_embeds
from omniid.flux.sampling import sample
from omniid.preprocess import ImageLike, image_to_tensor

log = logging.getLogger(__name__)


def ip_adapter_kwargs(tokens: torch.Tensor) -> dict:
    """tokens [B, N, D] -> the `ip_adapter_image_embeds` (and a zero negative, so that diffusers
    does not look for a CLIP image encoder) of a Flux pipeline call with the adapter attached."""
    embeds = tokens[:, None]  # [B, 1 image, N, D]: one adapter, one image per prompt
    return {"ip_adapter_image_embeds": [embeds], "negative_ip_adapter_image_embeds": [torch.zeros_like(embeds)]}


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [0, 1] -> PIL RGB images."""
    array = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in array]


class OmniIDGenerator:
    def __init__(self, objective, preset, folder: Path, state: dict):
        self.objective, self.preset, self.folder, self.state = objective, preset, folder, state
        self.representation_name = state.get("representation", "omniid")
        self.prompt = preset.flow.prompt

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", flux_path=None, clip_weights=None,
                        prompt_embeds: str | Path | None = None) -> "OmniIDGenerator":
        from omniid.config import get_preset
        from omniid.objectives import build_objective

        folder = resolve_checkpoint(path)
        require_files(folder, (ADAPTER_FILE, ADAPTER_CONFIG), "no trained adapter",
                      "generation needs a flow-stage checkpoint (omniid-train --stage flow --init-from ...)")
        state = read_state(folder)
        if state.get("stage", "flow") != "flow" or "preset" not in state:
            raise CheckpointError(f"{folder}: state.json names no flow-stage preset (stage={state.get('stage')!r})")
        preset = get_preset(state["preset"], stage="flow", **_run_overrides(folder))
        representation = state.get("representation", "omniid")
        prompt_embeds = prompt_embeds or recorded_prompt_cache(folder, state)
        # The trained parts come from the checkpoint. Omni-ID's CLIP is in it; a baseline's frozen
        # CLIP comes from its pretrained weights (the paper preset) as in training.
        torch.manual_seed(preset.seed)  # as omniid-train does: a tiny preset's random FLUX is the trained one's
        with quiet_random_init():
            objective = build_objective("flow", preset, representation=representation, clip_weights=clip_weights,
                                        pretrained_clip=representation != "omniid", flux_path=flux_path,
                                        prompt_embeds=prompt_embeds, device=device)
        objective.load_pretrained(folder)
        objective.eval()
        return cls(objective, preset, folder, state)

    @property
    def image_size(self) -> int:
        return self.preset.flow.image_size

    @property
    def settings(self) -> dict:
        flow = self.preset.flow
        return {"checkpoint": str(self.folder), "step": self.state.get("step"), "preset": self.preset.name,
                "representation": self.representation_name, "prompt": self.prompt, "image_size": flow.image_size,
                "adapter_scale": self.objective.adapter.scale}

    def set_prompt(self, prompt: str, flux_path=None) -> None:
        """Generate with another prompt than the trained one. The paper preset encodes it with
        FLUX's text encoders (T5 + CLIP, from the FLUX folder); a tiny preset has none, so seeded
        random embeddings of the prompt stand in."""
        flow = self.preset.flow
        if prompt == self.prompt:
            return
        if flow.transformer is not None:
            embeds, pooled = random_prompt_embeds(flow, int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16))
        else:
            folder = require_flux_folder(flow, flux_path, TEXT_PARTS)
            embeds, pooled = encode_prompt_with_text_encoders(folder, prompt, flow.max_sequence_length)
        device = self.objective.prompt_embeds.device
        self.objective.prompt_embeds = embeds.to(device, torch.float32)
        self.objective.pooled_prompt_embeds = pooled.to(device, torch.float32)
        self.prompt = prompt

    @torch.no_grad()
    def tokens(self, identities: Sequence[Sequence[ImageLike]]) -> torch.Tensor:
        """Images of each identity (the encoder's preprocessing) -> the representation's [B, N, D]."""
        size = self.preset.model.image_size
        m = max(len(images) for images in identities)
        inputs = torch.zeros(len(identities), m, 3, size, size)
        valid = torch.zeros(len(identities), m, dtype=torch.bool)
        for b, images in enumerate(identities):
            if not images:
                raise ValueError("every identity needs at least one image")
            inputs[b, :len(images)] = torch.stack([image_to_tensor(img, size) for img in images])
            valid[b, :len(images)] = True
        device = self.objective.prompt_embeds.device
        return self.objective.representation({"inputs": inputs.to(device), "input_valid": valid.to(device)})

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, seeds: Sequence[int], steps: int = 28, guidance: float = 3.5,
                 scale: float | None = None, size: int | None = None) -> list[Image.Image]:
        """One image per row of tokens, each from its own seed."""
        if len(seeds) != len(tokens):
            raise ValueError(f"{len(tokens)} token rows but {len(seeds)} seeds")
        size = size or self.image_size
        device = self.objective.prompt_embeds.device
        generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        with _quiet_sampler():
            images = sample(self.objective.parts, self.objective.prompt_embeds, self.objective.pooled_prompt_embeds,
                            tokens, self.objective.adapter, height=size, width=size, steps=steps,
                            guidance=guidance, scale=scale, generator=generators, output_type="pt")
        return to_pil(images)


@contextmanager
def _quiet_sampler():
    """No diffusers progress bar per sampler call (flux.sample builds a pipeline per call, so its
    config cannot be set on an instance): a class-level default, put back on exit."""
    from diffusers import DiffusionPipeline

    missing = object()
    before = DiffusionPipeline.__dict__.get("_progress_bar_config", missing)
    DiffusionPipeline._progress_bar_config = {"disable": True}
    try:
        yield
    finally:
        if before is missing:
            del DiffusionPipeline._progress_bar_config
        else:
            DiffusionPipeline._progress_bar_config = before


def _run_overrides(folder: Path) -> dict:
    """The run's own seed and flow settings (its preset.json: guidance, prompt, FLUX config as
    trained, with any command-line overrides), as get_preset overrides."""
    preset = read_run_preset(folder)
    if preset is None:
        return {}
    return {"seed": preset.get("seed"), **{f"flow.{k}": v for k, v in preset.get("flow", {}).items()}}
