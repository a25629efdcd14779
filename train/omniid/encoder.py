"""The Omni-ID encoder (paper §3.1).

Each input image goes through the CLIP vision tower; the tokens of all M images of an identity
(CLS included) are concatenated and serve as keys/values of `cross_blocks` cross-attention blocks
whose queries are L learnable tokens of width C, followed by `self_blocks` self-attention blocks.
The output ℓ [L, C] is the identity representation. No per-image index is added to the tokens,
so ℓ does not depend on the order of the inputs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from omniid.blocks import BlockStack
from omniid.clip_tower import build_clip_visual, clip_tokens, clip_width, resolve_clip_weights
from omniid.config import ModelConfig
from omniid.preprocess import ImageLike, image_to_tensor

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "encoder.safetensors"


class OmniIDEncoder(nn.Module):
    def __init__(self, config: ModelConfig, clip_weights: str | Path | None = None, pretrained_clip: bool = True):
        """pretrained_clip=False builds the CLIP tower randomly initialised (weights to be loaded after)."""
        super().__init__()
        self.config = config
        weights = resolve_clip_weights(config, clip_weights) if pretrained_clip else None
        self.clip = build_clip_visual(config, weights)
        width = clip_width(self.clip)
        self.proj = nn.Identity() if width == config.width else nn.Linear(width, config.width)
        self.queries = nn.Parameter(torch.randn(config.num_queries, config.width) * 0.02)
        self.blocks = BlockStack(config.width, config.heads, config.mlp_ratio, config.cross_blocks, config.self_blocks)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.clip.set_grad_checkpointing(enable)
        self.blocks.grad_checkpointing = enable

    def forward_encoder(self, inputs: torch.Tensor, input_valid: torch.Tensor | None = None) -> torch.Tensor:
        """inputs: [B, M, 3, S, S]; input_valid: [B, M] bool (False = padding) -> ℓ [B, L, C].

        Only the real images go through CLIP; padded slots get zero tokens that the key padding
        mask hides from attention.
        """
        b, m = inputs.shape[:2]
        if input_valid is None:
            input_valid = torch.ones(b, m, dtype=torch.bool, device=inputs.device)
        if not bool(input_valid.any(dim=1).all()):
            raise ValueError("every identity needs at least one input image")
        tokens = self.proj(clip_tokens(self.clip, inputs[input_valid]))   # [V, T, C]
        t, c = tokens.shape[1:]
        context = tokens.new_zeros(b, m, t, c)
        context[input_valid] = tokens
        context = context.view(b, m * t, c)                                # [B, M*T, C]
        key_valid = input_valid[:, :, None].expand(b, m, t).reshape(b, m * t)
        queries = self.queries.to(context.dtype).expand(b, -1, -1)         # [B, L, C]
        return self.blocks(queries, context, key_valid)

    forward = forward_encoder

    @torch.no_grad()
    def encode(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Images of one identity (paths, PIL images or RGB uint8 arrays) -> ℓ [L, C], with the
        preprocessing used in training."""
        if len(images) == 0:
            raise ValueError("encode needs at least one image")
        param = next(self.parameters())
        batch = torch.stack([image_to_tensor(img, self.config.image_size) for img in images])
        was_training = self.training
        self.eval()
        try:
            out = self.forward_encoder(batch[None].to(param.device, param.dtype))[0]
        finally:
            self.train(was_training)
        return out

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps({"model": self.config.to_dict()}, indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "OmniIDEncoder":
        """Load an encoder saved by `save_pretrained` or by a training checkpoint."""
        folder = Path(folder)
        missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: not an Omni-ID encoder folder, missing {', '.join(missing)}")
        config = ModelConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text())["model"])
        encoder = cls(config, pretrained_clip=False)
        encoder.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        return encoder.to(device).eval()
