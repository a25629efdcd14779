"""Generation from an adapter-stage checkpoint (Table 1's setting): the frozen representation,
the adapter and the ControlNet, fed each target's landmark image.

    gen = ControlNetGenerator.from_checkpoint("runs/adapter")     # run folder, checkpoints/latest or a step
    gen.bind_targets("manifests/test.parquet", [target_a, target_b])
    images = gen.generate(tokens.expand(2, -1, -1), seeds=[0, 1000])  # row j: target j's landmarks

The objective is built exactly as training built it (`omniid.objectives`, stage `adapter`), the
landmark images are drawn by the function training used (`omniid.landmarks.landmark_tensor`),
and sampling is diffusers' `FluxControlNetPipeline` (`omniid.flux.controlnet.sample_controlled`).
`controlnet_generators` is what `omniid-eval --controlnet RUN...` loads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from omniid.adapter import ADAPTER_CONFIG, ADAPTER_FILE
from omniid.checkpoint import CheckpointError, read_state, recorded_prompt_cache, require_files, resolve_checkpoint
from omniid.encoder import quiet_random_init
from omniid.eval_setting import CONTROLNET
from omniid.flux.controlnet import CONTROLNET_CONFIG, CONTROLNET_FILE, sample_controlled
from omniid.generation import OmniIDGenerator, _quiet_sampler, _run_overrides, to_pil
from omniid.landmarks import landmark_tensor, landmarks_by_crop

STAGE = "adapter"


class ControlNetGenerator(OmniIDGenerator):
    setting = CONTROLNET

    def __init__(self, objective, preset, folder: Path, state: dict):
        super().__init__(objective, preset, folder, state)
        self.targets: list | None = None                       # the bound targets' landmarks [10] each
        self._landmarks: dict[str, dict] = {}                   # manifest -> {crop path: landmarks}

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", flux_path=None, clip_weights=None,
                        prompt_embeds: str | Path | None = None) -> "ControlNetGenerator":
        from omniid.config import get_preset
        from omniid.objectives import build_objective

        folder = resolve_checkpoint(path)
        require_files(folder, (ADAPTER_FILE, ADAPTER_CONFIG, CONTROLNET_FILE, CONTROLNET_CONFIG),
                      "no trained ControlNet and adapter",
                      "--controlnet takes an adapter-stage run (omniid-train --stage adapter)")
        state = read_state(folder)
        if state.get("stage") != STAGE or "preset" not in state:
            raise CheckpointError(f"{folder}: state.json names no adapter-stage preset (stage={state.get('stage')!r})")
        preset = get_preset(state["preset"], stage=STAGE, **_run_overrides(folder))
        representation = state.get("representation", "omniid")
        torch.manual_seed(preset.seed)  # as omniid-train does: a tiny preset's random FLUX is the trained one's
        with quiet_random_init():
            objective = build_objective(STAGE, preset, representation=representation, clip_weights=clip_weights,
                                        pretrained_clip=representation != "omniid", flux_path=flux_path,
                                        prompt_embeds=prompt_embeds or recorded_prompt_cache(folder, state),
                                        device=device)
        objective.load_pretrained(folder)
        objective.eval()
        return cls(objective, preset, folder, state)

    @property
    def settings(self) -> dict:
        net = self.objective.controlnet.config
        return {**super().settings, "setting": self.setting,
                "controlnet": {"layers": net.num_layers, "single_layers": net.num_single_layers,
                               "control": "landmark images (omniid.landmarks)"}}

    def bind_targets(self, manifest: str | Path, targets: Sequence[Path]) -> None:
        """The targets the next `generate` calls draw their landmark images from, in order."""
        key = str(manifest)
        if key not in self._landmarks:
            self._landmarks[key] = landmarks_by_crop(manifest)
        self.targets = [self._landmarks[key][str(t)] for t in targets]

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, seeds: Sequence[int], steps: int = 28, guidance: float | None = None,
                 scale: float | None = None, size: int | None = None) -> list[Image.Image]:
        """One image per row of tokens, each from its own seed; rows are the bound targets in
        order, each repeated len(seeds) / len(targets) times (omniid-eval's samples per target).
        guidance None: the run's flow.guidance, as trained."""
        guidance = self.preset.flow.guidance if guidance is None else guidance
        if not self.targets or len(seeds) % len(self.targets) or len(seeds) != len(tokens):
            raise ValueError(f"{len(tokens)} token rows and {len(seeds)} seeds for "
                             f"{len(self.targets or [])} bound targets (bind_targets first)")
        size = size or self.image_size
        per = len(seeds) // len(self.targets)
        device = self.objective.prompt_embeds.device
        control = torch.stack([landmark_tensor(self.targets[i // per], size) for i in range(len(seeds))])
        generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        objective = self.objective
        with _quiet_sampler():
            images = sample_controlled(objective.parts, objective.controlnet, objective.prompt_embeds,
                                       objective.pooled_prompt_embeds, tokens, objective.adapter, control,
                                       steps=steps, guidance=guidance, scale=scale, generator=generators)
        return to_pil(images)


def controlnet_generators(paths: Sequence[str], taken: dict, device: str = "cpu", flux_path=None,
                          clip_weights=None) -> dict[str, ControlNetGenerator]:
    """{table row label: generator} of adapter-stage runs; labels unique beside `taken`'s."""
    out: dict[str, ControlNetGenerator] = {}
    for path in paths:
        gen = ControlNetGenerator.from_checkpoint(path, device, flux_path, clip_weights)
        label = gen.representation_name
        candidates = (label, f"{label} (ControlNet)", f"{label} (ControlNet, {Path(path).name})")
        label = next((c for c in candidates if c not in taken and c not in out), f"{label} (ControlNet, {path})")
        out[label] = gen
    return out
