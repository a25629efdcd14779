"""The one image preprocessing used by training and by `OmniIDEncoder.encode`.

Face crops are resized to the encoder's side (bicubic, antialiased) and normalised with CLIP's
mean and std; face masks are resized with nearest neighbour and binarised (mfhq writes 255 for
face). Keeping both here means a trained encoder sees at inference exactly what it was trained on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ImageLike = Union[str, Path, Image.Image, np.ndarray]


def _as_pil(image: ImageLike, mode: str) -> Image.Image:
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            return opened.convert(mode)
    if isinstance(image, np.ndarray):
        # arrays are RGB uint8 [H, W, 3] (or [H, W] for masks)
        return Image.fromarray(image).convert(mode)
    if isinstance(image, Image.Image):
        return image.convert(mode)
    raise TypeError(f"expected a path, a PIL image or a uint8 array, got {type(image).__name__}")


PIXEL_RANGES = ("clip", "signed")


def image_to_tensor(image: ImageLike, size: int, pixels: str = "clip") -> torch.Tensor:
    """RGB image -> float tensor [3, size, size]: CLIP-normalised (`clip`, the encoder's input) or
    in [-1, 1] (`signed`, what the FLUX VAE takes)."""
    if pixels not in PIXEL_RANGES:
        raise ValueError(f"pixels must be one of {PIXEL_RANGES}, got {pixels!r}")
    pil = _as_pil(image, "RGB")
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(pil, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    if pixels == "signed":
        return tensor * 2.0 - 1.0
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (tensor - mean) / std


def mask_to_tensor(mask: ImageLike, size: int) -> torch.Tensor:
    """Face mask -> float tensor [1, size, size] of 0 (background) and 1 (face)."""
    pil = _as_pil(mask, "L")
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.NEAREST)
    return torch.from_numpy((np.asarray(pil) > 127).astype(np.float32))[None]
