"""The flow-matching decoder (paper §3.3, eq. 6-7): a frozen FLUX conditioned on a representation.

Per target face x (448 px in [-1, 1]): z = VAE latents, packed 2x2 as FLUX packs them;
t ~ U(0, 1) per sample (or logit-normal); z_t = (1 - t) z + t ε; the transformer, given the
cached prompt "photo of a person." and the representation's tokens through the IP-Adapter,
predicts v; loss = MSE(v, ε - z). Trained: the representation (for Omni-ID, CLIP included), the
adapter's projection and its IP layers. The FLUX transformer and the VAE stay frozen.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from omniid.adapter import OmniIDAdapter
from omniid.errors import FlagError
from omniid.flux.latents import encode_latents, latent_image_ids, pack_latents
from omniid.flux.loading import FluxParts, flux_dtype, load_flux, require_flux_folder
from omniid.flux.prompt import ensure_prompt_embeds, load_prompt_embeds, random_prompt_embeds
from omniid.noise import Draws
from omniid.objectives.base import ObjectiveOutput
from omniid.representations import build_representation


def sample_timesteps(n: int, flow, generator: torch.Generator | Draws | None, device) -> torch.Tensor:
    """[n] in (0, 1): uniform, or logit-normal (sigmoid of N(logit_mean, logit_std))."""
    draws = Draws.wrap(generator)
    if flow.timesteps == "uniform":
        return draws.rand((n,), device)
    if flow.timesteps == "logit_normal":
        normal = draws.randn((n,), device)
        return torch.sigmoid(flow.logit_mean + flow.logit_std * normal)
    raise ValueError(f"unknown timestep sampling {flow.timesteps!r} (uniform, logit_normal)")


def loader_options(flow) -> dict:
    """What the flow stage's batches need of `build_loader`: targets at the VAE's side in [-1, 1],
    no face masks (the loss does not read them, so they are not decoded), targets never inputs."""
    return {"target_size": flow.image_size, "target_pixels": "signed", "masks": False, "disjoint": True}


def stage_loader_options(flow, representation_options: dict) -> dict:
    """The flow stage's loader options joined by its representation's (`loader_options`: the
    `arcface` baselines' 112 px reads): the one join of the trainer and the benchmarks."""
    return {**loader_options(flow), **representation_options}


class FlowObjective(nn.Module):
    stage = "flow"

    def __init__(self, representation: nn.Module, parts: FluxParts, adapter: OmniIDAdapter,
                 prompt_embeds: torch.Tensor, pooled_prompt_embeds: torch.Tensor, flow):
        super().__init__()
        # registration order matters: shared modules are named after their first owner, so the
        # adapter's layers are `adapter.*` even though the transformer also holds them once attached
        self.representation = representation
        self.adapter = adapter
        self.transformer = parts.transformer
        self.vae = parts.vae
        self.scheduler = parts.scheduler
        self.flow = flow
        self.register_buffer("prompt_embeds", prompt_embeds, persistent=False)          # [1, S, J]
        self.register_buffer("pooled_prompt_embeds", pooled_prompt_embeds, persistent=False)  # [1, P]
        # a representation's own needs of the batches (the `arcface` baselines' 112 px reads) join the stage's
        self.loader_options = stage_loader_options(flow, getattr(representation, "loader_options", {}))
        adapter.attach(self.transformer)

    @property
    def parts(self) -> FluxParts:
        return FluxParts(self.transformer, self.vae, self.scheduler)

    def train(self, mode: bool = True) -> "FlowObjective":
        super().train(mode)
        self.transformer.eval()  # frozen: no train-mode behaviour, whatever the engine asks
        self.vae.eval()
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if hasattr(self.representation, "set_grad_checkpointing"):
            self.representation.set_grad_checkpointing(enable)
        if enable:
            self.transformer.enable_gradient_checkpointing()
        else:
            self.transformer.disable_gradient_checkpointing()

    def velocity(self, latents: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor | None,
                 height: int, width: int) -> torch.Tensor:
        """latents [n, (h/2)(w/2), 4c] at time t [n]; tokens [n, N, D] or None -> v, same shape."""
        transformer, n = self.transformer, latents.shape[0]
        dtype, device = transformer.dtype, latents.device
        guidance = (torch.full((n,), self.flow.guidance, device=device)
                    if transformer.config.guidance_embeds else None)
        kwargs = {"ip_adapter_image_embeds": [tokens[:, None]]} if tokens is not None else None
        # a bf16 FLUX: compute in bf16, with the adapter's fp32 weights cast per op
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            return transformer(
                hidden_states=latents.to(dtype), timestep=t.to(dtype), guidance=guidance,
                encoder_hidden_states=self.prompt_embeds.to(dtype).expand(n, -1, -1),
                pooled_projections=self.pooled_prompt_embeds.to(dtype).expand(n, -1),
                txt_ids=torch.zeros(self.prompt_embeds.shape[1], 3, device=device, dtype=dtype),
                img_ids=latent_image_ids(height, width, device, dtype),
                joint_attention_kwargs=kwargs, return_dict=False,
            )[0]

    @property
    def representation_module(self) -> nn.Module:
        return self.representation

    def represent(self, batch: dict) -> torch.Tensor:
        """The representation's tokens [B, N, D] of the batch's inputs."""
        return self.representation(batch)

    def forward(self, batch: dict, generator: torch.Generator | None = None,
                tokens: torch.Tensor | None = None) -> ObjectiveOutput:
        """batch: inputs [B, M, 3, S, S], input_valid [B, M], targets [B, R, 3, T, T] in [-1, 1]
        -> loss, pred v [B*R, tokens, 4c], aux {t [B*R], target ε - z}. tokens: [B, N, D] to
        condition on instead of `represent(batch)`; latents, t and noise are drawn the same. Drawn
        from each item's own key where the batch has them (`omniid.noise`), else from `generator`."""
        if tokens is None:
            tokens = self.representation(batch)                              # [B, N, D]
        targets = batch["targets"]
        b, r = targets.shape[:2]
        draws = Draws.of(batch, r, generator)
        with torch.no_grad():
            latents = encode_latents(self.vae, targets.flatten(0, 1), draws,
                                     self.flow.latents).float()              # [B*R, c, h, w]
        h, w = latents.shape[-2:]
        z = pack_latents(latents)
        n, device = z.shape[0], z.device
        t = sample_timesteps(n, self.flow, draws, device)
        noise = draws.randn(z.shape, device)
        z_t = (1 - t[:, None, None]) * z + t[:, None, None] * noise
        target = noise - z
        v = self.velocity(z_t, t, tokens.repeat_interleave(r, dim=0), h, w)
        loss = F.mse_loss(v.float(), target)
        return ObjectiveOutput(loss, v, {"t": t, "target": target})

    def save_pretrained(self, folder: str | Path) -> None:
        if hasattr(self.representation, "save_pretrained"):
            self.representation.save_pretrained(folder)
        self.adapter.save_pretrained(folder)

    def load_pretrained(self, folder: str | Path) -> None:
        if hasattr(self.representation, "load_pretrained"):
            self.representation.load_pretrained(folder)
        self.adapter.load_weights(folder)

    def init_from(self, folder: str | Path) -> None:
        if not hasattr(self.representation, "load_pretrained"):
            raise FlagError(f"this representation has no trained weights to take from {folder}")
        self.representation.load_pretrained(folder)


def build(preset, representation: str = "omniid", clip_weights=None, pretrained_clip: bool = True,
          flux_path=None, prompt_embeds: str | Path | None = None, device="cpu", flux: FluxParts | None = None,
          models_dir=None, **_) -> FlowObjective:
    """prompt_embeds: the cache file (written first if absent); None keeps a tiny config's in memory.
    flux: FLUX's parts already loaded for this flow config (omniid-eval lends one to several rows).
    models_dir: mfhq's weights folder, where a baseline's identity model is found."""
    flow, device = preset.flow, torch.device(device)
    if flow.transformer is None:  # fail on missing FLUX files before building anything large
        require_flux_folder(flow, flux_path)
    if prompt_embeds is None and flow.transformer is None:
        raise ValueError("the paper preset needs a prompt embeddings cache file (prompt_embeds=PATH)")
    if prompt_embeds is not None:
        embeds, pooled, _ = load_prompt_embeds(ensure_prompt_embeds(flow, Path(prompt_embeds), flux_path))
    else:
        embeds, pooled = random_prompt_embeds(flow, 0)
    rep = build_representation(representation, preset, clip_weights=clip_weights,
                               pretrained_clip=pretrained_clip, device=device, models_dir=models_dir).to(device)
    parts = flux if flux is not None else load_flux(flow, device, flux_dtype(flow, device), flux_path)
    adapter = OmniIDAdapter.for_transformer(parts.transformer, rep.num_tokens, rep.dim, flow.adapter_dim,
                                            flow.adapter_scale).to(device)
    return FlowObjective(rep, parts, adapter, embeds.to(device), pooled.to(device), flow)
