"""The Omni-ID encoder (paper §3.1).

Each input image goes through the CLIP vision tower; the tokens of all M images of an identity
(CLS included) are concatenated and serve as keys/values of `cross_blocks` cross-attention blocks
whose queries are L learnable tokens of width C, followed by `self_blocks` self-attention blocks.
The output ℓ [L, C] is the identity representation. No per-image index is added to the tokens,
so ℓ does not depend on the order of the inputs.
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from omniid.blocks import BlockStack
from omniid.checkpoint import read_run_preset, require_files, resolve_checkpoint
from omniid.checkpoint_trust import check_if_training_checkpoint
from omniid.clip_tower import build_clip_visual, clip_tokens, clip_width, resolve_clip_weights
from omniid.config import ModelConfig
from omniid.face_inputs import InputAligner, default_pipeline, identity_batch, training_autocast
from omniid.preprocess import ImageLike

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "encoder.safetensors"

# One identity: a sequence of images, or a tensor [M, 3, H, W]; a batch: a sequence of those,
# or a tensor [B, M, 3, H, W]. Tensors hold RGB in [0, 1] (float) or 0..255 (uint8).
EncodeInput = Union[Sequence[ImageLike], Sequence[Sequence[ImageLike]], torch.Tensor]


class _DropRandomInitWarning(logging.Filter):
    # open_clip warns "Model initialized randomly" on the root logger whenever it builds a tower
    # without weights; from_pretrained loads trained weights right after, so the warning is false.
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextmanager
def quiet_random_init():
    drop = _DropRandomInitWarning()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


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
        # encode()'s detector and precision; from_pretrained sets both from the run that trained it
        self.aligner = InputAligner("sample")
        self.bf16 = True

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
    def encode(self, images: EncodeInput, aligned: bool | None = None) -> torch.Tensor:
        """One identity -> ℓ [L, C]; a batch of identities -> [B, L, C] (float32).

        One identity is a sequence of images (paths, PIL images, RGB uint8 arrays, [3, H, W]
        tensors) or a tensor [M, 3, H, W]; a batch is a list of those (any M each) or a tensor
        [B, M, 3, H, W]. Tensors hold RGB in [0, 1] (float) or 0..255 (uint8). Every image takes
        training's road (omniid.face_inputs): `aligned=None` detects the face with `self.aligner`
        and aligns any photo that is not an aligned crop already (a photo without a face raises
        NoFace naming it); `aligned=True` takes the images as aligned crops (a manifest's). The
        encoder runs under the autocast it trained with (`self.bf16`, on CUDA).
        """
        batch, single = _as_identities(images)
        prepared, _ = identity_batch(batch, self.config.image_size, None if aligned else self.aligner)
        inputs, valid = prepared["inputs"], prepared["input_valid"]
        param = next(self.parameters())
        was_training = self.training
        self.eval()
        try:
            with training_autocast(param.device, self.bf16):
                out = self.forward_encoder(inputs.to(param.device, param.dtype), valid.to(param.device))
        finally:
            self.train(was_training)
        out = out.float()
        return out[0] if single else out

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps({"model": self.config.to_dict()}, indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu", pipeline: str | Path | None = None,
                        models_dir: str | Path | None = None) -> "OmniIDEncoder":
        """Load the encoder of a run folder, a `checkpoints/latest` pointer, a training checkpoint
        folder or a folder written by `save_pretrained`. A path holding no encoder raises
        CheckpointNotFound naming it. encode() then aligns with `pipeline`'s detector (an mfhq
        preset; default: `paper` for a paper run, `sample` otherwise; weights in `models_dir`) and
        runs under the run's autocast (its optim.bf16). A training checkpoint is checked first, as
        omniid-eval checks it: a file changed or cut short since it was saved raises CheckpointError."""
        folder = resolve_checkpoint(path)
        require_files(folder, (CONFIG_FILE, WEIGHTS_FILE), "not an Omni-ID encoder checkpoint", "give a step folder, "
                      "a run folder with checkpoints/latest, or a folder written by save_pretrained")
        check_if_training_checkpoint(folder)
        config = ModelConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text())["model"])
        with quiet_random_init():
            encoder = cls(config, pretrained_clip=False)
        encoder.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        run = read_run_preset(folder) or {}
        encoder.bf16 = bool(run.get("optim", {}).get("bf16", True))
        encoder.aligner = InputAligner(pipeline or default_pipeline(run.get("name", "")), models_dir)
        return encoder.to(device).eval()


def _as_identities(images: EncodeInput) -> tuple[list[list], bool]:
    """-> (a list of identities, each a list of images), and whether one identity was given."""
    if torch.is_tensor(images):
        if images.ndim == 4:
            return [list(images)], True
        if images.ndim == 5:
            return [list(identity) for identity in images], False
        raise ValueError(f"encode takes [M, 3, H, W] or [B, M, 3, H, W] tensors, got {list(images.shape)}")
    if isinstance(images, (str, Path, Image.Image, np.ndarray)):
        raise TypeError("encode takes a sequence of images (one identity) or a list of such sequences")
    items = list(images)
    if not items:
        raise ValueError("encode needs at least one image")
    nested = [not isinstance(x, (str, Path, Image.Image, np.ndarray)) and not (torch.is_tensor(x) and x.ndim == 3)
              for x in items]
    if all(nested):
        identities = [list(x) for x in items]
        if any(len(x) == 0 for x in identities):
            raise ValueError("every identity needs at least one image")
        return identities, False
    if any(nested):
        raise TypeError("encode got a mix of images and lists of images; give one identity or a list of identities")
    return [items], True
