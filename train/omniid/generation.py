"""Generation from a trained flow-stage checkpoint: the representation, the adapter and FLUX.

    gen = OmniIDGenerator.from_checkpoint("runs/flow")          # run folder, checkpoints/latest or a step
    tokens = gen.tokens([["a.jpg", "b.jpg", "c.jpg"]])           # one identity -> [1, N, D]
    images = gen.generate(tokens, seeds=[0], steps=28)           # list of PIL images
    gen.preprocessing                                            # how each image of the last tokens() call was prepared

Everything goes through the flow stage's own pieces (`omniid.objectives` builds the model exactly
as training did, `omniid.flux.sample` runs diffusers' FluxPipeline on cached prompt embeddings),
so what is evaluated is what was trained: input photos take training's preprocessing
(`omniid.face_inputs`: detected and aligned unless already aligned crops), the encoder runs under
the run's autocast, and guidance, adapter scale and FLUX's dtype are the run's own unless given.
Each image has its own seeded generator: an image depends on its seed only, not on what else is
in the batch.

`ip_adapter_kwargs(tokens)` gives the arguments a user's own `FluxPipeline` /
`FluxControlNetPipeline` call needs once `OmniIDAdapter.from_pretrained(ckpt).attach(pipe)` ran.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from omniid.adapter import ADAPTER_CONFIG, ADAPTER_FILE
from omniid.checkpoint import (PRESET_FILE, CheckpointError, read_run_preset, read_state, recorded_prompt_cache,
                               require_files, resolve_checkpoint, run_of)
from omniid.checkpoint_trust import GENERATION_SKIPS, check_intact, recorded_flow
from omniid.encoder import quiet_random_init
from omniid.face_inputs import InputAligner, default_pipeline, identity_batch, training_autocast
from omniid.flux.latents import vae_scale_factor
from omniid.flux.loading import flux_dtype
from omniid.flux.prompt import prompt_embeddings
from omniid.flux.shared import FluxShare
from omniid.flux.sampling import sample
from omniid.preprocess import ImageLike

log = logging.getLogger(__name__)


def ip_adapter_kwargs(tokens: torch.Tensor) -> dict:
    """tokens [identities, N, D] (or one identity's [N, D], as `OmniIDEncoder.encode` gives it) ->
    the `ip_adapter_image_embeds` (and a zero negative, so that diffusers does not look for a CLIP
    image encoder; true CFG's negative pass gets it) of a Flux pipeline call with the adapter
    attached. 1 identity: every image; one per prompt: each prompt's num_images_per_prompt images;
    one per image (prompts x num_images_per_prompt): its own (`omniid.adapter.fit_ip_batch`);
    another count is refused when the pipeline runs."""
    if tokens.dim() == 2:
        tokens = tokens[None]
    if tokens.dim() != 3:
        raise ValueError(f"ip_adapter_kwargs takes tokens [identities, N, D] or one identity's [N, D]; got shape "
                         f"{list(tokens.shape)}")
    embeds = tokens[:, None]  # [identities, 1 image, N, D]: one adapter, one image embed per identity
    return {"ip_adapter_image_embeds": [embeds], "negative_ip_adapter_image_embeds": [torch.zeros_like(embeds)]}


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [0, 1] -> PIL RGB images."""
    array = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in array]


# where a checkpoint of each stage goes (said when one is given where another stage's belongs)
TAKEN_AS = {"flow": " (omniid-eval and omniid-generate take it as --checkpoint)",
            "adapter": " (Table 1's ControlNet setting: omniid-eval takes it as --controlnet)"}


class OmniIDGenerator:
    def __init__(self, objective, preset, folder: Path, state: dict):
        self.objective, self.preset, self.folder, self.state = objective, preset, folder, state
        self.representation_name = state.get("representation", "omniid")
        self.prompt = preset.flow.prompt
        self.aligner = InputAligner(default_pipeline(preset.name))  # input photos: from_checkpoint sets its pipeline
        self.preprocessing: list[list[dict]] = []                    # how tokens() prepared each image, last call
        self.frozen: dict = {}  # the frozen weights loaded (`frozen_facts`): from_checkpoint sets them

    stage = "flow"  # the checkpoints this class generates from, and what they must hold
    required = ((ADAPTER_FILE, ADAPTER_CONFIG), "no trained adapter",
                "generation needs a flow-stage checkpoint (omniid-train --stage flow --init-from ...)")

    @classmethod
    def read(cls, path: str | Path) -> tuple[Path, dict, object]:
        """(step folder, state, preset as the run trained it) of a checkpoint, checked; nothing built."""
        from omniid.config import get_preset

        folder = resolve_checkpoint(path)
        require_files(folder, *cls.required)
        # every file it loads as saved (a file cut short or changed would load, or fail mid-run, as
        # if it were the trained weights); the optimizer and RNG state are training's alone
        check_intact(folder, GENERATION_SKIPS)
        state = read_state(folder)
        stage = state.get("stage", "flow")
        if stage != cls.stage:
            raise CheckpointError(f"{folder}: a checkpoint of the {stage} stage, not of the {cls.stage} stage this "
                                  f"reads{TAKEN_AS.get(stage, '')}")
        if "preset" not in state:
            raise CheckpointError(f"{folder}: its state.json names no preset, so the run's model cannot be built")
        return folder, state, get_preset(state["preset"], stage=cls.stage, **_run_overrides(folder, state))

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", flux_path=None, clip_weights=None,
                        prompt_embeds: str | Path | None = None, pipeline: str | Path | None = None,
                        models_dir: str | Path | None = None, flux: FluxShare | None = None) -> "OmniIDGenerator":
        """pipeline / models_dir: the mfhq preset whose detector aligns input photos (default: `paper`
        for a paper run, `sample` otherwise) and mfhq's weights folder (that detector's and a
        baseline's identity model's). flux: a FluxShare lending one
        frozen FLUX to every generator of the same base model (omniid-eval); None: its own."""
        folder, state, preset = cls.read(path)
        objective, frozen = _trained_objective(cls.stage, folder, state, preset, device, flux_path, clip_weights,
                                               prompt_embeds, flux, models_dir)
        generator = cls(objective, preset, folder, state)
        generator.frozen = frozen
        generator.aligner = InputAligner(pipeline or default_pipeline(preset.name), models_dir)
        return generator

    @property
    def image_size(self) -> int:
        return self.preset.flow.image_size

    @property
    def side_multiple(self) -> int:
        """What an image side must be a multiple of: FLUX packs 2x2 latents of the VAE's scale (16 on
        FLUX.1-dev); diffusers would round another side down and the image would not be the size asked."""
        return 2 * vae_scale_factor(self.objective.parts.vae)

    @property
    def settings(self) -> dict:
        flow = self.preset.flow
        return {"checkpoint": str(self.folder), "step": self.state.get("step"), "preset": self.preset.name,
                "representation": self.representation_name, "prompt": self.prompt, "image_size": flow.image_size,
                "trained_scale": self.objective.adapter.scale, "trained_guidance": flow.guidance,
                "flux_dtype": str(self.objective.parts.transformer.dtype).removeprefix("torch."),
                "encoder_bf16_autocast": self.preset.optim.bf16 and self.objective.prompt_embeds.device.type == "cuda",
                "input_detector": self.aligner.pipeline,
                # what was loaded beside what training recorded (None: nothing of that kind, or a
                # checkpoint saved before the record), as omniid-train and the check compare them
                "frozen_weights": {"loaded": self.frozen, "trained_with": {k: self.state.get(k) for k in self.frozen}}}

    def settings_used(self, guidance: float | None = None, scale: float | None = None) -> dict:
        """`settings` with what `generate(guidance=, scale=)` ran at beside the trained values, so
        that an override is never recorded as the checkpoint's own."""
        settings = self.settings
        return {**settings, "guidance_used": settings["trained_guidance"] if guidance is None else float(guidance),
                "scale_used": settings["trained_scale"] if scale is None else float(scale)}

    def set_prompt(self, prompt: str, flux_path=None) -> None:
        """Generate with another prompt than the trained one. The paper preset encodes it with
        FLUX's text encoders (T5 + CLIP, from the FLUX folder); a tiny preset has none, so seeded
        random embeddings of the prompt stand in."""
        if prompt == self.prompt:
            return
        embeds, pooled = prompt_embeddings(self.preset.flow, prompt, flux_path)
        device = self.objective.prompt_embeds.device
        self.objective.prompt_embeds = embeds.to(device, torch.float32)
        self.objective.pooled_prompt_embeds = pooled.to(device, torch.float32)
        self.prompt = prompt

    @torch.no_grad()
    def tokens(self, identities: Sequence[Sequence[ImageLike]], aligned: bool | None = None) -> torch.Tensor:
        """Images of each identity -> the representation's [B, N, D] (float32), through training's
        preprocessing: `aligned=None` detects and aligns photos (NoFace for one without a face),
        `aligned=True` takes aligned crops as they are (a manifest's)."""
        representation = self.objective.representation
        # the `arcface` baselines' identity model reads each crop at its own 112 px, as their loaders did
        side = getattr(representation, "loader_options", {}).get("identity_side")
        batch, self.preprocessing = identity_batch(identities, self.preset.model.image_size,
                                                   None if aligned else self.aligner, side)
        device = self.objective.prompt_embeds.device
        with training_autocast(device, self.preset.optim.bf16):
            tokens = representation({k: v.to(device) for k, v in batch.items()})
        return tokens.float()

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, seeds: Sequence[int], steps: int = 28, guidance: float | None = None,
                 scale: float | None = None, size: int | None = None) -> list[Image.Image]:
        """One image per row of tokens, each from its own seed; guidance None: the run's
        flow.guidance; scale None: the adapter's trained scale (a scale given holds for this call only)."""
        if len(seeds) != len(tokens):
            raise ValueError(f"{len(tokens)} token rows but {len(seeds)} seeds")
        size = size or self.image_size
        guidance = self.preset.flow.guidance if guidance is None else guidance
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


def _trained_objective(stage: str, folder: Path, state: dict, preset, device, flux_path, clip_weights, prompt_embeds,
                       flux: FluxShare | None, models_dir=None):
    """(the stage's objective built as training built it, with the checkpoint's weights, in eval mode;
    the frozen weights it loaded, `frozen_facts`). The trained parts come from the checkpoint;
    Omni-ID's CLIP is in it, a baseline's frozen CLIP comes from its pretrained weights (the paper
    preset) as in training, and those and FLUX's files must be the ones the run recorded (checked
    before anything loads)."""
    from omniid.command_facts import check_frozen_weights, frozen_facts
    from omniid.objectives import build_objective

    representation = state.get("representation", "omniid")
    frozen = frozen_facts(preset, representation, True, clip_weights, flux_path, models_dir)
    check_frozen_weights(folder, state, frozen)
    parts = flux.parts(preset.flow, device, flux_dtype(preset.flow, device), flux_path) if flux is not None else None
    torch.manual_seed(preset.seed)  # as omniid-train does: a tiny baseline's random frozen parts are the trained ones
    with quiet_random_init():
        objective = build_objective(stage, preset, representation=representation, clip_weights=clip_weights,
                                    pretrained_clip=representation != "omniid", flux_path=flux_path,
                                    prompt_embeds=prompt_embeds or recorded_prompt_cache(folder, state),
                                    device=device, flux=parts, models_dir=models_dir)
    objective.load_pretrained(folder)
    objective.eval()
    objective.adapter.detach()  # FLUX may be lent to other rows: each sampling call attaches its adapter
    return objective, frozen


def _run_overrides(folder: Path, state: dict) -> dict:
    """The run's own seed, flow settings (its preset.json: guidance, prompt, FLUX config and dtype
    as trained, with any command-line overrides) and autocast, as get_preset overrides. A step
    folder away from its run's preset.json is refused: the preset's defaults in their place would
    generate with other settings than training's and record them as the trained ones."""
    from omniid.config import PRESETS

    preset, saved = read_run_preset(folder), run_of(Path(folder).absolute()) / PRESET_FILE
    if preset is None:
        raise CheckpointError(f"{folder}: not inside its run folder (no {saved}), so the settings it was trained "
                              "with (guidance, prompt, FLUX's config and precision) are unknown; give it where "
                              "omniid-train wrote it, RUN/checkpoints/step-N beside RUN/preset.json")
    if preset.get("name") != state["preset"]:
        raise CheckpointError(f"{folder}: state.json names preset {state['preset']!r} but {saved} names "
                              f"{preset.get('name')!r}; the step folder is not in the run folder that trained it")
    if state["preset"] not in PRESETS:
        raise CheckpointError(f"{folder}: trained with preset {state['preset']!r}, which this omniid does not have "
                              f"(it has {', '.join(sorted(PRESETS))})")
    flow = recorded_flow(folder, state, preset.get("flow", {}))
    return {"seed": preset.get("seed"), "optim.bf16": preset.get("optim", {}).get("bf16"),
            **{f"flow.{k}": v for k, v in flow.items()}}
