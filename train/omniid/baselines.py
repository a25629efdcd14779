"""The paper's baseline representations (Tables 1-2), trained and evaluated like Omni-ID.

Each is an `nn.Module` with `forward(batch) -> tokens [B, N, D]`, `num_tokens` (N) and `dim` (D),
the representation contract of `omniid.representations` (whose table imports the builders here by
name), so the flow stage trains only the adapter on top of it (and the small projection of
`arcface`) and the table compares representations and nothing else.

- `clip`: the frozen CLIP tower's tokens (CLS + patches, after the final LayerNorm): 257 x 1280
  for ViT-H/14 at 224 px. With several input images the tokens are averaged position by position
  over the valid images, so N stays fixed and the result does not depend on the input order.
- `arcface`: the pipeline's identity model (ArcFace in the paper profile, SFace offline; through
  `mfhq.faces`) on each input, the embeddings averaged and re-normalised, then projected to
  `ARCFACE_TOKENS` tokens of the CLIP width by diffusers' `ImageProjection` (Linear + LayerNorm,
  IP-Adapter's), trainable.
  The identity model is frozen and runs outside autograd. Its 112 px input is the encoder's
  input resized: manifest crops are ArcFace-template aligned, so no detection is needed.
- `arcface+clip`: both, concatenated along the tokens ([B, 257 + 4, 1280]).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from omniid.clip_tower import build_clip_visual, clip_tokens, clip_width, resolve_clip_weights
from omniid.errors import CheckpointError, CheckpointNotFound
from omniid.preprocess import CLIP_MEAN, CLIP_STD

ARCFACE_TOKENS = 4  # IP-Adapter's number of tokens for one pooled image embedding
BASELINE_FILE = "representation.safetensors"


def _valid(batch: dict) -> torch.Tensor:
    inputs = batch["inputs"]
    valid = batch.get("input_valid")
    return torch.ones(inputs.shape[:2], dtype=torch.bool, device=inputs.device) if valid is None else valid


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """values [B, M, ...], valid [B, M] -> [B, ...], the mean over the valid images."""
    weights = valid.to(values.dtype).view(*valid.shape, *([1] * (values.ndim - 2)))
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1)


class ClipTokens(nn.Module):
    """The frozen CLIP tower's tokens, averaged over the input images: [B, 1 + (S/p)^2, W]."""

    def __init__(self, model_config, clip_weights=None, pretrained_clip: bool = True):
        super().__init__()
        weights = resolve_clip_weights(model_config, clip_weights) if pretrained_clip else None
        self.clip = build_clip_visual(model_config, weights).eval()
        self.clip.requires_grad_(False)
        # a randomly initialised tower (the tiny preset) exists nowhere else: checkpoints keep it
        self.saved_with_checkpoint = weights is None
        side = model_config.image_size
        patch = self.clip.conv1.kernel_size[0]
        self.num_tokens = 1 + (side // patch) ** 2
        self.dim = clip_width(self.clip)

    def train(self, mode: bool = True) -> "ClipTokens":
        super().train(mode)
        self.clip.eval()  # frozen: always in eval mode
        return self

    def forward(self, batch: dict) -> torch.Tensor:
        inputs, valid = batch["inputs"], _valid(batch)
        with torch.no_grad():
            tokens = clip_tokens(self.clip, inputs[valid])            # [V, T, W]
        full = tokens.new_zeros(*valid.shape, *tokens.shape[1:])
        full[valid] = tokens
        return _masked_mean(full, valid)


class IdentityEmbedding:
    """The mfhq identity model on batches of CLIP-normalised, ArcFace-aligned tensors."""

    def __init__(self, pipeline, models_dir=None):
        from mfhq.faces import Faces

        self.faces = Faces.from_preset(pipeline, models_dir, tasks=("embed",))
        self.name = self.faces.models["identity_model"]
        self.dim = int(self.embed(torch.zeros(1, 3, 112, 112)).shape[1])

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, S, S] CLIP-normalised RGB -> [N, D] unit vectors (float32, on images' device)."""
        mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
        rgb = (images.detach().float() * std + mean).clamp(0, 1)
        rgb = F.interpolate(rgb, size=(112, 112), mode="bilinear", align_corners=False, antialias=True)
        pixels = (rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = self.faces.embed(pixels)
        return torch.from_numpy(np.asarray(out, np.float32)).to(images.device)


class ArcFaceTokens(nn.Module):
    """The identity model's embedding, averaged over inputs, projected to [B, N, dim] (trainable)."""

    def __init__(self, identity: IdentityEmbedding, dim: int, num_tokens: int = ARCFACE_TOKENS):
        super().__init__()
        from diffusers.models.embeddings import ImageProjection

        self.identity = identity  # not a module: frozen, outside autograd, not in the state dict
        self.projection = ImageProjection(image_embed_dim=identity.dim, cross_attention_dim=dim,
                                          num_image_text_embeds=num_tokens)
        self.num_tokens, self.dim = num_tokens, dim

    def forward(self, batch: dict) -> torch.Tensor:
        inputs, valid = batch["inputs"], _valid(batch)
        embeddings = self.identity.embed(inputs[valid])               # [V, D_id]
        full = embeddings.new_zeros(*valid.shape, embeddings.shape[1])
        full[valid] = embeddings
        pooled = F.normalize(_masked_mean(full, valid), dim=-1)      # [B, D_id]
        return self.projection(pooled.to(self.projection.image_embeds.weight.dtype))


class _Saved(nn.Module):
    """save_pretrained / load_pretrained of the trained projection, and of a frozen CLIP tower only
    when it is random (tiny preset); pretrained CLIP weights are reloaded from their file."""

    def trainable_state(self) -> dict[str, torch.Tensor]:
        keep = {k for k, v in self.named_parameters() if v.requires_grad}
        for name, module in self.named_modules():
            if getattr(module, "saved_with_checkpoint", False):
                keep |= {f"{name}.{k}" for k in module.state_dict()}
        return {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if k in keep}

    def save_pretrained(self, folder: str | Path) -> None:
        state = self.trainable_state()
        if state:
            Path(folder).mkdir(parents=True, exist_ok=True)
            save_file(state, str(Path(folder) / BASELINE_FILE))

    def load_pretrained(self, folder: str | Path) -> None:
        path = Path(folder) / BASELINE_FILE
        if not self.trainable_state():
            return
        if not path.is_file():
            raise CheckpointNotFound(f"{folder}: no {BASELINE_FILE} (the baseline's trained projection)")
        missing, unexpected = self.load_state_dict(load_file(str(path)), strict=False)
        bad = [k for k in missing if k in self.trainable_state()] + list(unexpected)
        if bad:
            raise CheckpointError(f"{path}: does not fit this representation ({', '.join(bad[:5])})")


class ClipRepresentation(_Saved):
    def __init__(self, model_config, clip_weights=None, pretrained_clip: bool = True):
        super().__init__()
        self.tokens = ClipTokens(model_config, clip_weights, pretrained_clip)
        self.num_tokens, self.dim = self.tokens.num_tokens, self.tokens.dim

    def forward(self, batch: dict) -> torch.Tensor:
        return self.tokens(batch)


class ArcFaceRepresentation(_Saved):
    def __init__(self, identity: IdentityEmbedding, dim: int):
        super().__init__()
        self.arcface = ArcFaceTokens(identity, dim)
        self.num_tokens, self.dim = self.arcface.num_tokens, dim

    def forward(self, batch: dict) -> torch.Tensor:
        return self.arcface(batch)


class ArcFaceClipRepresentation(_Saved):
    def __init__(self, model_config, identity: IdentityEmbedding, clip_weights=None, pretrained_clip: bool = True):
        super().__init__()
        self.tokens = ClipTokens(model_config, clip_weights, pretrained_clip)
        self.arcface = ArcFaceTokens(identity, self.tokens.dim)
        self.num_tokens = self.tokens.num_tokens + self.arcface.num_tokens
        self.dim = self.tokens.dim

    def forward(self, batch: dict) -> torch.Tensor:
        clip = self.tokens(batch)
        return torch.cat([clip, self.arcface(batch).to(clip.dtype)], dim=1)


def _identity(preset, pipeline=None, models_dir=None) -> IdentityEmbedding:
    from omniid.metrics import default_pipeline

    return IdentityEmbedding(pipeline or default_pipeline(preset.name), models_dir)


def build_clip(preset, clip_weights=None, pretrained_clip: bool = True, **_) -> ClipRepresentation:
    return ClipRepresentation(preset.model, clip_weights, pretrained_clip)


def build_arcface(preset, pipeline=None, models_dir=None, clip_weights=None, **_) -> ArcFaceRepresentation:
    # the tokens take the CLIP width, as in arcface+clip, so the two rows differ only by CLIP
    return ArcFaceRepresentation(_identity(preset, pipeline, models_dir), _clip_width_of(preset.model))


def build_arcface_clip(preset, pipeline=None, models_dir=None, clip_weights=None, pretrained_clip: bool = True,
                       **_) -> ArcFaceClipRepresentation:
    return ArcFaceClipRepresentation(preset.model, _identity(preset, pipeline, models_dir), clip_weights,
                                     pretrained_clip)


def _clip_width_of(model_config) -> int:
    """The CLIP tower's width from open_clip's config registry, without building the tower."""
    import open_clip

    cfg = open_clip.get_model_config(model_config.clip_model)
    if cfg is None:
        raise KeyError(f"unknown open_clip model {model_config.clip_model!r}")
    return int(cfg["vision_cfg"]["width"])


BASELINES = {"clip": build_clip, "arcface": build_arcface, "arcface+clip": build_arcface_clip}


def register_baselines(register) -> None:
    """Adds the three to another registry: `register(name, builder)` for each (the representation
    registry's own table already names them)."""
    for name, builder in BASELINES.items():
        register(name, builder)
