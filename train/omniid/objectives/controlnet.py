"""The adapter stage (Table 1's setting): a frozen representation and a frozen FLUX, with a
ControlNet fed the target's landmark image trained together with the IP-Adapter.

The flow stage's objective (eq. 6-7) with one more input: per target x (its face and landmark
image, `omniid.landmarks`), z = VAE latents of the face, c = the landmark image encoded as
`FluxControlNetPipeline` encodes a control image (`omniid.flux.controlnet.encode_control`);
t, ε and z_t as in the flow stage; the ControlNet reads (z_t, t, prompt, c) and adds its block
residuals to the transformer, which also gets the representation's tokens through the adapter;
loss = MSE(v, ε - z). Trained: the ControlNet and the adapter (projection and IP layers).

Frozen: FLUX, the VAE, and whatever of the representation was trained before this stage: the
Omni-ID encoder entire (from `--init-from`, required), the baselines' CLIP and identity models
(frozen in every stage). A baseline's projection into tokens is new here, so it trains with the
adapter, as IP-Adapter's own projection does (ours: the paper says the representations are frozen).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from omniid.flux.controlnet import build_controlnet, encode_control, load_controlnet_weights, save_controlnet
from omniid.flux.latents import encode_latents, latent_image_ids, pack_latents
from omniid.landmarks import LandmarkTargets
from omniid.objectives.base import ObjectiveOutput
from omniid.noise import Draws
from omniid.objectives.flow import FlowObjective, sample_timesteps
from omniid.objectives.flow import build as build_flow

FROZEN_REPRESENTATIONS = ("omniid",)  # trained before this stage: frozen entire


class ControlNetObjective(FlowObjective):
    stage = "adapter"

    def __init__(self, flow: FlowObjective, controlnet: nn.Module, freeze_representation: bool):
        super().__init__(flow.representation, flow.parts, flow.adapter, flow.prompt_embeds,
                         flow.pooled_prompt_embeds, flow.flow)
        self.controlnet = controlnet
        self.representation_frozen = freeze_representation
        if freeze_representation:
            self.representation.requires_grad_(False)
        # targets [6, T, T]: the face in [-1, 1], then its landmark image
        self.loader_options = {**self.loader_options, "target_reader": LandmarkTargets.for_manifest}

    def train(self, mode: bool = True) -> "ControlNetObjective":
        super().train(mode)
        if self.representation_frozen:
            self.representation.eval()
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        super().set_grad_checkpointing(enable)
        if enable:
            self.controlnet.enable_gradient_checkpointing()
        else:
            self.controlnet.disable_gradient_checkpointing()

    def represent(self, batch: dict) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.representation_frozen):
            return self.representation(batch)

    def controlled_velocity(self, latents: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor,
                            control: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """latents [n, L, 4c] at t [n], tokens [n, N, D], control [n, L, 4c] (packed) -> v [n, L, 4c]."""
        transformer, n = self.transformer, latents.shape[0]
        dtype, device = transformer.dtype, latents.device
        guidance = (torch.full((n,), self.flow.guidance, device=device)
                    if transformer.config.guidance_embeds else None)
        common = {"hidden_states": latents.to(dtype), "timestep": t.to(dtype), "guidance": guidance,
                  "encoder_hidden_states": self.prompt_embeds.to(dtype).expand(n, -1, -1),
                  "pooled_projections": self.pooled_prompt_embeds.to(dtype).expand(n, -1),
                  "txt_ids": torch.zeros(self.prompt_embeds.shape[1], 3, device=device, dtype=dtype),
                  "img_ids": latent_image_ids(height, width, device, dtype), "return_dict": False}
        # a bf16 FLUX: compute in bf16, with the ControlNet's and adapter's fp32 weights cast per op
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            blocks, singles = self.controlnet(controlnet_cond=control.to(dtype), **common)
            return transformer(controlnet_block_samples=blocks, controlnet_single_block_samples=singles,
                               joint_attention_kwargs={"ip_adapter_image_embeds": [tokens[:, None]]}, **common)[0]

    def forward(self, batch: dict, generator: torch.Generator | None = None,
                tokens: torch.Tensor | None = None) -> ObjectiveOutput:
        """batch: inputs [B, M, 3, S, S], input_valid [B, M], targets [B, R, 6, T, T] (face, then
        landmark image, in [-1, 1]) -> loss, pred v [B*R, L, 4c], aux {t, target ε - z}. tokens:
        [B, N, D] to condition on instead of `represent(batch)`; latents, t and noise drawn the same."""
        if tokens is None:
            tokens = self.represent(batch)                                   # [B, N, D]
        targets = batch["targets"]
        r = targets.shape[1]
        flat = targets.flatten(0, 1)                                         # [B*R, 6, T, T]
        draws = Draws.of(batch, r, generator)                                # each item's own, where it has a key
        with torch.no_grad():
            latents = encode_latents(self.vae, flat[:, :3], draws, self.flow.latents).float()
            control = encode_control(self.vae, flat[:, 3:], draws)           # [B*R, L, 4c]
        h, w = latents.shape[-2:]
        z = pack_latents(latents)
        t = sample_timesteps(z.shape[0], self.flow, draws, z.device)
        noise = draws.randn(z.shape, z.device)
        z_t = (1 - t[:, None, None]) * z + t[:, None, None] * noise
        target = noise - z
        v = self.controlled_velocity(z_t, t, tokens.repeat_interleave(r, dim=0), control, h, w)
        return ObjectiveOutput(F.mse_loss(v.float(), target), v, {"t": t, "target": target})

    def save_pretrained(self, folder: str | Path) -> None:
        super().save_pretrained(folder)  # the representation (a frozen encoder too: eval needs it) and the adapter
        save_controlnet(self.controlnet, folder)

    def load_pretrained(self, folder: str | Path) -> None:
        super().load_pretrained(folder)
        load_controlnet_weights(self.controlnet, folder)


def build(preset, representation: str = "omniid", device="cpu", **options) -> ControlNetObjective:
    """The flow stage's parts (representation, FLUX, prompt cache, adapter) plus the ControlNet."""
    flow = build_flow(preset, representation=representation, device=device, **options)
    controlnet = build_controlnet(flow.transformer, preset.flow.controlnet_layers, preset.flow.controlnet_single_layers)
    return ControlNetObjective(flow, controlnet.to(device), representation in FROZEN_REPRESENTATIONS)
