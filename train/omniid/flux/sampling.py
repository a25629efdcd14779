"""Generation through diffusers' own `FluxPipeline`, with the text encoders set to None.

    sample(parts, prompt_embeds, pooled_prompt_embeds, tokens=None, adapter=None, *, height, width,
           steps=28, guidance=3.5, scale=None, generator=None, output_type="pt") -> images
        The cached embeddings are passed in, and `tokens` [B, N, D] (any representation's output)
        go to the attached `OmniIDAdapter` as `ip_adapter_image_embeds`. Returns [B, 3, H, W] in [0, 1].
"""
from __future__ import annotations

import torch

from omniid.flux.loading import FluxParts


def build_pipeline(parts: FluxParts):
    """diffusers' FluxPipeline over our transformer + VAE, with no text encoders (cached prompts)."""
    from diffusers import FluxPipeline

    return FluxPipeline(scheduler=parts.scheduler, vae=parts.vae, text_encoder=None, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None, transformer=parts.transformer)


@torch.no_grad()
def sample(parts: FluxParts, prompt_embeds: torch.Tensor, pooled_prompt_embeds: torch.Tensor,
           tokens: torch.Tensor | None = None, adapter=None, *, height: int, width: int, steps: int = 28,
           guidance: float = 3.5, scale: float | None = None, generator=None, output_type: str = "pt"):
    """Generate one image per row of `tokens` ([B, N, D]; or `batch` images unconditioned when None).

    `adapter` (an `OmniIDAdapter`) is attached for the call and detached after, so `parts` is left
    as it was. prompt embeddings: [1, S, J] / [1, P], as cached.
    """
    pipe = build_pipeline(parts)
    pipe.set_progress_bar_config(disable=True)
    device, dtype = parts.transformer.device, parts.transformer.dtype
    batch = 1 if tokens is None else tokens.shape[0]
    kwargs = {}
    if adapter is not None and tokens is not None:
        adapter.attach(parts.transformer)
        if scale is not None:
            adapter.set_scale(scale)
        embeds = [tokens.to(device, dtype)[:, None]]        # [B, 1 image, N, D] per adapter
        # without negative embeds FluxPipeline would try its image encoder (None) for a blank image
        kwargs = {"ip_adapter_image_embeds": embeds, "negative_ip_adapter_image_embeds": [torch.zeros_like(embeds[0])]}
    try:
        # a bf16 FLUX with an fp32 adapter (as trained): autocast casts per op, as in training
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = pipe(prompt_embeds=prompt_embeds.to(device, dtype).expand(batch, -1, -1),
                       pooled_prompt_embeds=pooled_prompt_embeds.to(device, dtype).expand(batch, -1),
                       height=height, width=width, num_inference_steps=steps, guidance_scale=guidance,
                       generator=generator, output_type=output_type, **kwargs)
    finally:
        if kwargs:
            adapter.detach()
    images = out.images
    return images.float() if torch.is_tensor(images) else images

