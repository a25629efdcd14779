"""The adapter stage's ControlNet (Table 1's setting): diffusers' own `FluxControlNetModel`.

    build_controlnet(transformer, layers, single_layers) -> FluxControlNetModel
        Built by diffusers' `FluxControlNetModel.from_transformer`: its blocks start as copies of
        the transformer's first ones, and its control input and output layers start at zero, so
        at step 0 the transformer's output is the base model's. Block counts are clamped to the
        transformer's.
    encode_control(vae, images [B, 3, T, T] in [-1, 1], generator) -> [B, tokens, 4c]
        A landmark image as `FluxControlNetPipeline` encodes a control image: a VAE posterior
        sample, shifted and scaled, packed 2x2. Training calls this; sampling goes through the
        pipeline, which does the same.
    save_controlnet(controlnet, folder) / load_controlnet_weights(controlnet, folder)
        controlnet.safetensors + controlnet_config.json in a step folder (flat files, so that
        state.json's checksums cover them).
    sample_controlled(parts, controlnet, prompt_embeds, pooled, tokens, adapter, control, ...)
        Generation through diffusers' `FluxControlNetPipeline` with cached prompt embeddings, the
        attached `OmniIDAdapter` fed `tokens`, and one control (landmark) image per row.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from omniid.checkpoint import require_files
from omniid.errors import CheckpointError
from omniid.flux.latents import encode_latents, pack_latents
from omniid.flux.loading import FluxParts

CONTROLNET_FILE = "controlnet.safetensors"
CONTROLNET_CONFIG = "controlnet_config.json"


def build_controlnet(transformer, layers: int, single_layers: int):
    """A trainable fp32 FluxControlNetModel initialised from `transformer` (see the module docstring)."""
    from diffusers import FluxControlNetModel

    cfg = transformer.config
    controlnet = FluxControlNetModel.from_transformer(
        transformer, num_layers=min(layers, cfg.num_layers), num_single_layers=min(single_layers, cfg.num_single_layers),
        attention_head_dim=cfg.attention_head_dim, num_attention_heads=cfg.num_attention_heads,
        load_weights_from_transformer=True)
    return controlnet.float().to(transformer.device).requires_grad_(True)


def encode_control(vae, images: torch.Tensor, generator=None) -> torch.Tensor:
    """images [B, 3, T, T] in [-1, 1] -> packed latents [B, (T/2f)^2, 4c], as FluxControlNetPipeline."""
    return pack_latents(encode_latents(vae, images, generator, "sample").float())


def save_controlnet(controlnet, folder: str | Path) -> None:
    folder = Path(folder)
    save_file({k: v.detach().contiguous().cpu() for k, v in controlnet.state_dict().items()},
              str(folder / CONTROLNET_FILE))
    (folder / CONTROLNET_CONFIG).write_text(controlnet.to_json_string())


def load_controlnet_weights(controlnet, folder: str | Path) -> None:
    """The weights of a step folder's ControlNet into `controlnet` (built with the same config)."""
    folder = Path(folder)
    require_files(folder, (CONTROLNET_FILE, CONTROLNET_CONFIG), "no ControlNet",
                  "only adapter-stage checkpoints hold one (omniid-train --stage adapter)")
    saved = json.loads((folder / CONTROLNET_CONFIG).read_text())
    ours = dict(controlnet.config)
    differs = [k for k in ("num_layers", "num_single_layers", "num_attention_heads", "attention_head_dim")
               if saved.get(k) != ours.get(k)]
    if differs:
        raise CheckpointError(f"{folder / CONTROLNET_CONFIG}: a ControlNet with other {', '.join(differs)} "
                              f"than this preset builds")
    controlnet.load_state_dict(load_file(str(folder / CONTROLNET_FILE)))


def build_controlnet_pipeline(parts: FluxParts, controlnet):
    """diffusers' FluxControlNetPipeline over our transformer, VAE and ControlNet, no text encoders."""
    from diffusers import FluxControlNetPipeline

    return FluxControlNetPipeline(scheduler=parts.scheduler, vae=parts.vae, text_encoder=None, tokenizer=None,
                                  text_encoder_2=None, tokenizer_2=None, transformer=parts.transformer,
                                  controlnet=controlnet)


@torch.no_grad()
def sample_controlled(parts: FluxParts, controlnet, prompt_embeds: torch.Tensor, pooled_prompt_embeds: torch.Tensor,
                      tokens: torch.Tensor, adapter, control: torch.Tensor, *, guidance: float, steps: int = 28,
                      scale: float | None = None, conditioning_scale: float = 1.0,
                      generator=None) -> torch.Tensor:
    """One image per row of tokens [B, N, D] and control [B, 3, T, T] (landmark images in [-1, 1]);
    -> [B, 3, T, T] in [0, 1]. The adapter is attached for the call and detached after."""
    pipe = build_controlnet_pipeline(parts, controlnet)
    pipe.set_progress_bar_config(disable=True)
    device, dtype = parts.transformer.device, parts.transformer.dtype
    batch = tokens.shape[0]
    adapter.attach(parts.transformer)
    trained_scale = adapter.scale
    if scale is not None:  # for this call only: the adapter keeps (and saves) its trained scale
        adapter.set_scale(scale)
    embeds = [tokens.to(device, dtype)[:, None]]           # [B, 1 image, N, D] per adapter
    try:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = pipe(prompt_embeds=prompt_embeds.to(device, dtype).expand(batch, -1, -1),
                       pooled_prompt_embeds=pooled_prompt_embeds.to(device, dtype).expand(batch, -1),
                       control_image=control.to(device, parts.vae.dtype), controlnet_conditioning_scale=conditioning_scale,
                       num_inference_steps=steps, guidance_scale=guidance, generator=generator, output_type="pt",
                       ip_adapter_image_embeds=embeds, negative_ip_adapter_image_embeds=[torch.zeros_like(embeds[0])])
    finally:
        adapter.set_scale(trained_scale)
        adapter.detach()
    return out.images.float()
