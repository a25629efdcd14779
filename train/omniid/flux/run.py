"""Everything `sample` needs from a flow-stage run folder.

    load_flow_run(path, device, flux_path=None) -> FlowRun(parts, prompt_embeds, pooled_prompt_embeds,
                                                           adapter, flow, checkpoint, flux_path)
        path: a run folder, `checkpoints/latest` or a step folder; its encoder:
        `OmniIDEncoder.from_pretrained(run.checkpoint)`.
    run.pipeline()            diffusers' FluxPipeline over the run's FLUX: `pipe("a prompt", ...)` works,
                              the run's guidance is its default (the prompt: `run.embeddings`)
    run.embeddings(prompt)    (prompt_embeds, pooled): the run's cache for its trained prompt, else
                              omniid.flux.prompt_embeddings (FLUX's text encoders; seeded random on tiny)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from omniid.adapter import OmniIDAdapter
from omniid.checkpoint import (PRESET_FILE, PROMPT_EMBEDS_FILE, CheckpointNotFound, read_run_preset, read_state,
                               recorded_prompt_cache, resolve_checkpoint, run_of)
from omniid.checkpoint_trust import check_intact, recorded_flow
from omniid.config import FlowConfig
from omniid.command_facts import check_frozen_weights
from omniid.flux.loading import FluxParts, flux_identity, load_flux
from omniid.flux.prompt import load_prompt_embeds, prompt_embeddings
from omniid.flux.sampling import build_pipeline


@dataclass
class FlowRun:
    parts: FluxParts
    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor
    adapter: torch.nn.Module
    flow: FlowConfig
    checkpoint: Path
    flux_path: str | Path | None = None

    def embeddings(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt_embeds [1, S, J], pooled [1, P]) of a prompt, on the run's device."""
        if prompt == self.flow.prompt:
            return self.prompt_embeds, self.pooled_prompt_embeds
        embeds, pooled = prompt_embeddings(self.flow, prompt, self.flux_path)
        return embeds.to(self.prompt_embeds.device), pooled.to(self.prompt_embeds.device)

    def pipeline(self):
        """diffusers' FluxPipeline over this run's FLUX, taking text prompts through `embeddings`,
        with the run's flow.guidance as its default guidance_scale."""
        return build_pipeline(self.parts, prompts=self.embeddings, guidance=self.flow.guidance)


def load_flow_run(path: str | Path, device="cpu", flux_path=None) -> FlowRun:
    """FLUX (bf16 on CUDA, fp32 on CPU), the run's prompt cache and adapter, from a flow-stage run.
    FLUX must be the folder the run trained with (`flux_sha256` in state.json, checked as omniid-eval
    checks it: other weights are refused before any loads); the checkpoint's files must be as saved
    (CheckpointError naming the file otherwise, before FLUX loads)."""
    folder = resolve_checkpoint(path)
    check_intact(folder)
    preset = read_run_preset(folder)
    if preset is None:
        raise CheckpointNotFound(f"{folder}: not inside a run folder (no {run_of(folder) / PRESET_FILE})")
    state = read_state(folder)
    flow = FlowConfig(**recorded_flow(folder, state, preset["flow"]))  # the step's own record first
    # the FLUX the run trained with, or a refusal naming both (a warning for a checkpoint older than the record)
    check_frozen_weights(folder, state, flux_identity(flow, flux_path))
    cache = recorded_prompt_cache(folder, state) or run_of(folder) / PROMPT_EMBEDS_FILE
    prompt_embeds, pooled, _ = load_prompt_embeds(cache)
    device = torch.device(device)
    dtype = getattr(torch, flow.dtype) if device.type == "cuda" else torch.float32
    parts = load_flux(flow, device, dtype, flux_path)
    adapter = OmniIDAdapter.from_pretrained(folder, device=device)
    return FlowRun(parts, prompt_embeds.to(device), pooled.to(device), adapter, flow, folder, flux_path)
