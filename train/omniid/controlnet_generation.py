"""Generation from an adapter-stage checkpoint (Table 1's setting): the frozen representation,
the adapter and the ControlNet, fed each target's landmark image.

    gen = ControlNetGenerator.from_checkpoint("runs/adapter")     # run folder, checkpoints/latest or a step
    gen.bind_targets("manifests/test.parquet", [target_a, target_b])
    images = gen.generate(tokens.expand(2, -1, -1), seeds=[0, 1000])  # row j: target j's landmarks

The objective is built exactly as training built it (`omniid.objectives`, stage `adapter`), the
landmark images are drawn by the function training used (`omniid.landmarks.landmark_tensor`),
and sampling is diffusers' `FluxControlNetPipeline` (`omniid.flux.controlnet.sample_controlled`).
`omniid-eval --controlnet RUN...` loads them through `omniid.eval_rows`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from omniid.adapter import ADAPTER_CONFIG, ADAPTER_FILE
from omniid.eval_setting import CONTROLNET
from omniid.flux.controlnet import CONTROLNET_CONFIG, CONTROLNET_FILE, sample_controlled
from omniid.generation import OmniIDGenerator, _quiet_sampler, to_pil
from omniid.landmarks import landmark_tensor, landmarks_by_crop

STAGE = "adapter"


class ControlNetGenerator(OmniIDGenerator):
    setting = CONTROLNET
    stage = STAGE
    required = ((ADAPTER_FILE, ADAPTER_CONFIG, CONTROLNET_FILE, CONTROLNET_CONFIG), "no trained ControlNet and adapter",
                "--controlnet takes an adapter-stage run (omniid-train --stage adapter)")

    def __init__(self, objective, preset, folder: Path, state: dict):
        super().__init__(objective, preset, folder, state)
        self.targets: list | None = None                       # the bound targets' landmarks [10] each
        self._landmarks: dict[str, dict] = {}                   # manifest -> {crop path: landmarks}

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
