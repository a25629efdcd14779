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
import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from omniid.checkpoint import CheckpointError, read_state, require_files, resolve_checkpoint
from omniid.encoder import quiet_random_init
from omniid.preprocess import ImageLike, image_to_tensor

log = logging.getLogger(__name__)


def ip_adapter_kwargs(tokens: torch.Tensor) -> dict:
    """tokens [B, N, D] -> the `ip_adapter_image_embeds` (and a zero negative, so that diffusers
    does not look for a CLIP image encoder) of a Flux pipeline call with the adapter attached."""
    embeds = tokens[:, None]  # [B, 1 image, N, D]: one adapter, one image per prompt
    return {"ip_adapter_image_embeds": [embeds], "negative_ip_adapter_image_embeds": [torch.zeros_like(embeds)]}


def check_flux_target(target) -> None:
    """The adapter's IP layers are trained on FLUX's double-stream blocks: only a pipeline holding
    a FluxTransformer2DModel (FluxPipeline, FluxControlNetPipeline, ...) or the model itself takes them."""
    from diffusers import FluxTransformer2DModel

    transformer = getattr(target, "transformer", None) or target
    if not isinstance(transformer, FluxTransformer2DModel):
        raise TypeError(
            f"the Omni-ID adapter attaches to a FLUX pipeline (FluxPipeline, FluxControlNetPipeline) or a "
            f"FluxTransformer2DModel, not a {type(target).__name__}: its IP layers were trained against FLUX's "
            f"double-stream blocks (a UNet pipeline would need an adapter trained on that UNet)"
        )


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
        from omniid.adapter import ADAPTER_CONFIG, ADAPTER_FILE
        from omniid.baselines import register_baselines
        from omniid.config import get_preset
        from omniid.objectives import build_objective

        folder = resolve_checkpoint(path)
        require_files(folder, (ADAPTER_FILE, ADAPTER_CONFIG), "no trained adapter",
                      "generation needs a flow-stage checkpoint (omniid-train --stage flow --init-from ...)")
        state = read_state(folder)
        register_baselines()  # a baseline's checkpoint names it
        if state.get("stage", "flow") != "flow" or "preset" not in state:
            raise CheckpointError(f"{folder}: state.json names no flow-stage preset (stage={state.get('stage')!r})")
        preset = get_preset(state["preset"], stage="flow", **_run_overrides(folder))
        representation = state.get("representation", "omniid")
        prompt_embeds = prompt_embeds or _prompt_cache(folder, state)
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
        from omniid.flux import TEXT_PARTS, encode_prompt_with_text_encoders, require_flux_folder

        flow = self.preset.flow
        if prompt == self.prompt:
            return
        if flow.transformer is not None:
            g = torch.Generator().manual_seed(int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16))
            embeds = torch.randn(1, flow.max_sequence_length, flow.transformer["joint_attention_dim"], generator=g)
            pooled = torch.randn(1, flow.transformer["pooled_projection_dim"], generator=g)
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
        from omniid.flux import sample

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
    saved = folder.parent.parent / "preset.json"  # run/checkpoints/step-*
    if not saved.is_file():
        return {}
    preset = json.loads(saved.read_text())
    return {"seed": preset.get("seed"), **{f"flow.{k}": v for k, v in preset.get("flow", {}).items()}}


def _prompt_cache(folder: Path, state: dict) -> Path | None:
    """The prompt embeddings the run trained with: state.json's record, or the run folder's file."""
    from omniid.flux import PROMPT_EMBEDS_FILE

    recorded = state.get("prompt_embeds")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    run = folder.parent.parent  # run/checkpoints/step-*
    return run / PROMPT_EMBEDS_FILE if (run / PROMPT_EMBEDS_FILE).is_file() else None
