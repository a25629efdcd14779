"""The CLIP vision tower of the encoder: open_clip config registry, weights, token output.

The paper preset starts from CLIP ViT-H/14 weights trained on LAION-2B (ours: the paper names
ViT-H/14, not these weights), found either at a local path
(`--clip-weights` or $OMNIID_CLIP_WEIGHTS) or in open_clip's Hugging Face cache; nothing is
downloaded implicitly, so an offline cluster fails fast with instructions instead of hanging.
`clip_weights_identity` names the file and its sha256, so that a run records which weights a
frozen tower loaded and a resumed run or an evaluation can check that it loads the same.
"""
from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import open_clip
import torch
from safetensors import SafetensorError
from torch import nn

from mfhq.manifest.io import sha256_of
from omniid.config import CLIP_CONFIG_DIR, ModelConfig
from omniid.errors import ClipWeightsMissing

log = logging.getLogger(__name__)

__all__ = ["ClipWeightsMissing", "WEIGHTS_ENV", "build_clip_visual", "clip_tokens", "clip_weights_identity",
           "clip_width", "resolve_clip_weights"]

WEIGHTS_ENV = "OMNIID_CLIP_WEIGHTS"
HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

open_clip.add_model_config(CLIP_CONFIG_DIR)  # registers OmniID-Tiny-ViT


def resolve_clip_weights(config: ModelConfig, path: str | Path | None = None) -> str | None:
    """A local file with the CLIP weights, or None when the preset starts from random init."""
    if config.clip_pretrained is None:
        return None
    path = path or os.environ.get(WEIGHTS_ENV)
    if path:
        if not Path(path).is_file():
            raise ClipWeightsMissing(f"CLIP weights file {path}: not found.\n{_how_to_get(config)}")
        return str(path)
    repo = _hub_repo(config)
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for name in HF_FILES:
            cached = try_to_load_from_cache(repo, name)
            if isinstance(cached, str):
                return cached
    raise ClipWeightsMissing(f"the CLIP weights {config.clip_model} / {config.clip_pretrained} are not on this "
                             f"machine.\n{_how_to_get(config)}")


def _hub_repo(config: ModelConfig) -> str:
    return open_clip.get_pretrained_cfg(config.clip_model, config.clip_pretrained).get("hf_hub", "").rstrip("/")


def _how_to_get(config: ModelConfig) -> str:
    """Where a preset's CLIP weights come from, for every message that finds them missing or damaged."""
    return (f"Provide them in one of these ways:\n"
            f"  - pass --clip-weights FILE (or set {WEIGHTS_ENV}=FILE) with {HF_FILES[0]} or {HF_FILES[1]}\n"
            f"    from https://huggingface.co/{_hub_repo(config) or '<the open_clip hub repo>'};\n"
            f"  - or fill open_clip's cache on a machine with internet access:\n"
            f"    python -c \"import open_clip; open_clip.create_model('{config.clip_model}', "
            f"pretrained='{config.clip_pretrained}')\"\n"
            f"    and copy the Hugging Face cache (HF_HOME) to this machine.")


def clip_weights_identity(config: ModelConfig, path: str | Path | None = None) -> dict:
    """{"clip_weights": the resolved file (where it lies on this machine), "clip_weights_sha256"}
    of the weights `resolve_clip_weights` finds; both None for a random tower. The digest is
    remembered per file state (`sha256_of`), so a 4 GB file is read once per process."""
    weights = resolve_clip_weights(config, path)
    if weights is None:
        return {"clip_weights": None, "clip_weights_sha256": None}
    return {"clip_weights": str(Path(weights).resolve()), "clip_weights_sha256": sha256_of(Path(weights))}


def build_clip_visual(config: ModelConfig, weights: str | None) -> nn.Module:
    """open_clip's vision tower; the text tower is dropped right after loading."""
    try:
        clip = open_clip.create_model(config.clip_model, pretrained=weights, force_patch_dropout=0.0)
    except torch.OutOfMemoryError:  # the machine's problem, not the file's
        raise
    except (SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError, OSError) as error:
        # a truncated download or another file under the name: the library's first line says which
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ClipWeightsMissing(f"CLIP weights file {weights}: unreadable as {config.clip_model} weights "
                                 f"({reason}).\n{_how_to_get(config)}") from None
    visual = clip.visual
    del clip
    # ℓ is built from the tokens; the pooled-embedding projection would be an unused parameter
    # (which DDP rejects) and its weights are of no use here
    visual.proj = None
    side = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    if side != config.image_size:
        raise ValueError(f"{config.clip_model} takes {side} px images, the preset says {config.image_size}")
    for param in visual.parameters():  # every layer is trained (paper §3.1)
        param.requires_grad_(True)
    return visual


def clip_tokens(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """images: [N, 3, S, S] -> tokens [N, 1 + (S/p)^2, W], CLS first, after the final LayerNorm."""
    x = visual.conv1(images)                               # [N, W, g, g]
    x = x.flatten(2).transpose(1, 2)                       # [N, g*g, W]
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x)
    x = visual.transformer(x)
    return visual.ln_post(x)


def clip_width(visual: nn.Module) -> int:
    return visual.class_embedding.shape[-1]
