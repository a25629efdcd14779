"""Generation through diffusers' own `FluxPipeline`, with the text encoders set to None.

    sample(parts, prompt_embeds, pooled_prompt_embeds, tokens=None, adapter=None, *, height, width,
           guidance, steps=28, scale=None, generator=None, output_type="pt") -> images
        The cached embeddings are passed in, and `tokens` [B, N, D] (any representation's output)
        go to the attached `OmniIDAdapter` as `ip_adapter_image_embeds`. Returns [B, 3, H, W] in [0, 1].
        `guidance` has no default: it is the run's flow.guidance (`FlowRun.flow.guidance`).
    build_pipeline(parts, prompts=None, guidance=None) -> a FluxPipeline without text encoders that
        takes a text prompt through `prompts` (a run's: `FlowRun.pipeline()`), or refuses it clearly.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch

from omniid.errors import PromptCacheMissing
from omniid.flux.loading import FluxParts

PromptBook = Callable[[str], tuple[torch.Tensor, torch.Tensor]]  # prompt -> ([1, S, J], [1, P])


@lru_cache(maxsize=None)  # one class, defined once diffusers is imported
def _pipeline_class():
    from diffusers import FluxPipeline

    class CachedPromptFluxPipeline(FluxPipeline):
        """diffusers' FluxPipeline whose text prompts come from `prompts` instead of text encoders
        (it has none), and whose guidance defaults to the run's instead of diffusers' 3.5."""

        prompts: PromptBook | None = None
        run_guidance: float | None = None

        def __call__(self, *args, **kwargs):
            if self.run_guidance is not None:
                kwargs.setdefault("guidance_scale", self.run_guidance)
            return super().__call__(*args, **kwargs)

        def encode_prompt(self, prompt, prompt_2=None, device=None, num_images_per_prompt: int = 1,
                          prompt_embeds=None, pooled_prompt_embeds=None, max_sequence_length: int = 512,
                          lora_scale=None):
            if prompt_embeds is None and self.text_encoder is None:
                prompt_embeds, pooled_prompt_embeds = self._looked_up(prompt, num_images_per_prompt, device)
                prompt = prompt_2 = None
            return super().encode_prompt(prompt, prompt_2, device, num_images_per_prompt, prompt_embeds,
                                         pooled_prompt_embeds, max_sequence_length, lora_scale)

        def _looked_up(self, prompt, repeat: int, device):
            prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
            if self.prompts is None:
                raise PromptCacheMissing(
                    f"this FluxPipeline has no text encoders (omniid builds it over cached prompt embeddings), so "
                    f"it cannot encode {prompts[0] if prompts else None!r}: build it with "
                    f"omniid.flux.load_flow_run(RUN).pipeline(), or pass prompt_embeds= and pooled_prompt_embeds= "
                    f"(omniid.flux.prompt_embeddings(run.flow, prompt))")
            found = [self.prompts(p) for p in prompts]
            device = device or self._execution_device
            dtype = self.transformer.dtype
            embeds = torch.cat([e for e, _ in found]).repeat_interleave(repeat, 0).to(device, dtype)
            pooled = torch.cat([p for _, p in found]).repeat_interleave(repeat, 0).to(device, dtype)
            return embeds, pooled

    return CachedPromptFluxPipeline


def build_pipeline(parts: FluxParts, prompts: PromptBook | None = None, guidance: float | None = None):
    """diffusers' FluxPipeline over our transformer + VAE, with no text encoders. A text prompt is
    looked up in `prompts` (prompt -> embeddings; a flow run's: `FlowRun.pipeline()`), or refused
    with a message saying how; `guidance` (a run's flow.guidance) is the default guidance_scale."""
    pipe = _pipeline_class()(scheduler=parts.scheduler, vae=parts.vae, text_encoder=None, tokenizer=None,
                             text_encoder_2=None, tokenizer_2=None, transformer=parts.transformer)
    pipe.prompts, pipe.run_guidance = prompts, guidance
    return pipe


@torch.no_grad()
def sample(parts: FluxParts, prompt_embeds: torch.Tensor, pooled_prompt_embeds: torch.Tensor,
           tokens: torch.Tensor | None = None, adapter=None, *, height: int, width: int, guidance: float,
           steps: int = 28, scale: float | None = None, generator=None, output_type: str = "pt"):
    """Generate one image per row of `tokens` ([B, N, D]; or `batch` images unconditioned when None).

    `adapter` (an `OmniIDAdapter`) is attached for the call and detached after, so `parts` is left
    as it was. prompt embeddings: [1, S, J] / [1, P], as cached.
    """
    pipe = build_pipeline(parts)
    pipe.set_progress_bar_config(disable=True)
    device, dtype = parts.transformer.device, parts.transformer.dtype
    batch = 1 if tokens is None else tokens.shape[0]
    kwargs, trained_scale = {}, None
    if adapter is not None and tokens is not None:
        adapter.attach(parts.transformer)
        if scale is not None:  # for this call only: the adapter keeps (and saves) its trained scale
            trained_scale = adapter.scale
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
        if trained_scale is not None:
            adapter.set_scale(trained_scale)
        if kwargs:
            adapter.detach()
    images = out.images
    return images.float() if torch.is_tensor(images) else images

