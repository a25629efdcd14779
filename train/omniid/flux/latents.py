"""Images <-> FLUX latents, and FLUX's 2x2 token packing, as `FluxPipeline` does them.

    encode_latents(vae, images [B,3,H,W] in [-1,1], generator, latents) -> latents [B, c, h, w] (shifted, scaled)
    pack_latents(latents [B,c,h,w]) -> [B, h/2*w/2, 4c];  unpack_latents(packed, h, w) -> [B,c,h,w]
    latent_image_ids(h, w, device, dtype) -> [h/2*w/2, 3]
"""
from __future__ import annotations

import torch

from omniid.noise import Draws


def vae_scale_factor(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


LATENTS = ("sample", "mean")


def encode_latents(vae, images: torch.Tensor, generator: torch.Generator | Draws | None = None,
                   latents: str = "sample") -> torch.Tensor:
    """images [B, 3, H, W] in [-1, 1] -> latents [B, c, H/f, W/f], shifted and scaled as FLUX expects.

    latents: `sample` draws from the VAE's posterior, as FLUX training does (a trained VAE's
    posterior is narrow); `mean` takes its mean, for a random VAE whose untrained posterior
    variance is about 1 and would bury the image in noise. generator: a torch generator, or each
    item's own draws (`omniid.noise.Draws`)."""
    if latents not in LATENTS:
        raise ValueError(f"latents must be one of {LATENTS}, got {latents!r}")
    posterior = vae.encode(images.to(vae.dtype)).latent_dist
    draws = Draws.wrap(generator)
    if latents == "mean":
        latents = posterior.mean
    elif draws.per_item:  # as the posterior's own sample(), from each item's draws
        latents = posterior.mean + posterior.std * draws.randn(posterior.mean.shape, posterior.mean.device,
                                                               posterior.mean.dtype)
    else:
        latents = posterior.sample(generator=draws.generator)
    shift = vae.config.shift_factor or 0.0
    return (latents - shift) * vae.config.scaling_factor


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """[B, c, h, w] -> [B, (h/2)(w/2), 4c]: FLUX's 2x2 patches, the layout FluxPipeline uses."""
    b, c, h, w = latents.shape
    if h % 2 or w % 2:
        raise ValueError(f"latent side {h}x{w} must be even to pack 2x2")
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(packed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, (h/2)(w/2), 4c] -> [B, c, h, w]; height/width are the latent's (not the image's) sides."""
    b, _, channels = packed.shape
    x = packed.view(b, height // 2, width // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels // 4, height, width)


def latent_image_ids(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[(h/2)(w/2), 3]: (0, row, col) per packed token, for FLUX's rotary embedding."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] = torch.arange(height // 2)[:, None]
    ids[..., 2] = torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)
