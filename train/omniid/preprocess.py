"""The one image preprocessing used by training and by `OmniIDEncoder.encode`.

Face crops are brought to the encoder's side by `resize_for_encoder` and normalised with CLIP's
mean and std; face masks are resized with nearest neighbour and binarised (mfhq writes 1-bit
PNGs, 1 = face; runs made before wrote 8-bit ones, 255 = face). Keeping both here means a
trained encoder sees at inference exactly what it was trained on.

The resize (ours): a JPEG file is decoded straight at 1/2, 1/4 or 1/8 scale in the DCT (PIL's draft
mode; a 448 px crop becomes the 224 px input without a full decode), the largest reduction that
stays at or above the side; an image already in memory gets the same integer reduction as a
box filter (`Image.reduce`); whatever is left is a bicubic resize. On the demo's crops the 224 px
input differs from a full decode + bicubic resize by 0.3/255 on average (max 6/255), and from
the in-memory box reduction by 0.2/255 (docs/performance.md).
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


def _as_pil(image: ImageLike, mode: str | None, side: int | None = None) -> Image.Image:
    """`side`: a JPEG file is decoded at the largest DCT reduction that keeps it at least this big.
    `mode` None: the image in the mode it has (decoded)."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            if side is not None and opened.format == "JPEG":
                opened.draft(mode, (side, side))
            return opened.convert(mode) if mode else opened.copy()
    if isinstance(image, np.ndarray):
        # arrays are RGB uint8 [H, W, 3] (or [H, W] for masks)
        image = Image.fromarray(image)
    if isinstance(image, Image.Image):
        return image.convert(mode) if mode else image
    raise TypeError(f"expected a path, a PIL image or a uint8 array, got {type(image).__name__}")


# the side of the face the frozen identity model of the `arcface` baselines embeds (ArcFace's and
# SFace's 112 px template). It is read from the crop itself (`load_pixels(crop, IDENTITY_SIDE)`: a
# 448 px JPEG crop decoded at 1/4 scale in the DCT), as the metric reads it, not from the encoder's
# input (a tiny preset's 32 px would be scaled up); only batches built without the read (gpu_check,
# bench_flow) fall back to that (`omniid.baselines.IdentityEmbedding.embed`).
IDENTITY_SIDE = 112

PIXEL_RANGES = ("clip", "signed")
# uint8 -> pixels: x * scale + offset per channel (CLIP's mean and std folded in)
_AFFINE = {"clip": (1 / (255.0 * torch.tensor(CLIP_STD)), -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD)),
           "signed": (torch.full((3,), 2 / 255.0), torch.full((3,), -1.0))}


def resize_for_encoder(image: Image.Image, size: int) -> Image.Image:
    """The one resize from a crop to a side of `size` (see the module docstring): the integer
    reduction a JPEG's draft decode would have made (1, 2, 4 or 8, as PIL picks it), then bicubic
    (up, for an image smaller than `size` on a side: a crop of a run with a smaller align.size)."""
    if image.size == (size, size):
        return image
    ratio = min(image.width // size, image.height // size)
    factor = max((f for f in (8, 4, 2) if ratio >= f), default=1)
    if factor > 1:
        image = image.reduce(factor)
    return image if image.size == (size, size) else image.resize((size, size), Image.Resampling.BICUBIC)


def load_pixels(image: ImageLike, size: int) -> np.ndarray:
    """RGB image -> uint8 [size, size, 3]: decoded (a JPEG file in draft mode) and resized the one way."""
    return np.asarray(resize_for_encoder(_as_pil(image, "RGB", size), size))


def pixels_to_tensor(pixels: np.ndarray, range_: str = "clip", out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] (into `out` when given): CLIP-normalised (`clip`, the
    encoder's input) or in [-1, 1] (`signed`, what the FLUX VAE takes)."""
    if range_ not in PIXEL_RANGES:
        raise ValueError(f"pixels must be one of {PIXEL_RANGES}, got {range_!r}")
    scale, offset = _AFFINE[range_]
    channels_first = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"])).permute(2, 0, 1)
    # one image at a time: its float copy stays in the cache for the two passes that follow
    out = torch.empty(channels_first.shape, dtype=torch.float32) if out is None else out
    return out.copy_(channels_first).mul_(scale.view(3, 1, 1)).add_(offset.view(3, 1, 1))


def image_to_tensor(image: ImageLike, size: int, pixels: str = "clip") -> torch.Tensor:
    """RGB image -> float tensor [3, size, size]: CLIP-normalised (`clip`, the encoder's input) or
    in [-1, 1] (`signed`, what the FLUX VAE takes)."""
    if pixels not in PIXEL_RANGES:
        raise ValueError(f"pixels must be one of {PIXEL_RANGES}, got {pixels!r}")
    return pixels_to_tensor(load_pixels(image, size), pixels)


def load_mask(mask: ImageLike, size: int) -> np.ndarray:
    """Face mask -> bool [size, size], True on the face (nearest-neighbour resize). mfhq's masks
    are 1-bit PNGs (1 = face), read as they are; 8-bit ones (255 = face, runs made before) and
    any other image are read as grayscale, face above 127: both give the same bool mask."""
    pil = _as_pil(mask, None)
    if pil.mode != "1":
        pil = pil.convert("L")
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.NEAREST)
    pixels = np.asarray(pil)
    return pixels if pil.mode == "1" else pixels > 127


def mask_to_tensor(mask: ImageLike, size: int) -> torch.Tensor:
    """Face mask -> float tensor [1, size, size] of 0 (background) and 1 (face)."""
    return torch.from_numpy(load_mask(mask, size).astype(np.float32))[None]
