"""The one place the trainer decodes image files (through `omniid.preprocess`)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from omniid.preprocess import load_mask, load_pixels, pixels_to_tensor

log = logging.getLogger("omniid.data")


class CropReader:
    """The one place image files are decoded (`omniid.preprocess`): `read` gives uint8 pixels and
    a bool face mask at the reader's side, `tensors` the objective's float pixels. A file that
    cannot be read is logged once, remembered (not read again) and returned as None. A transform
    of the pixels for another objective belongs in `tensors`."""

    def __init__(self, image_size: int, pixels: str = "clip"):
        self.image_size, self.pixels = image_size, pixels  # pixels: "clip" normalisation or "signed" [-1, 1]
        self.bad: dict[str, str] = {}

    def image(self, path: Path) -> np.ndarray:
        return load_pixels(path, self.image_size)

    def mask(self, path: Path) -> np.ndarray:
        return load_mask(path, self.image_size)

    def tensors(self, images: list[np.ndarray], known: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """uint8 [S, S, 3] each -> float [N, 3, S, S], converted image by image into one tensor.

        An array given twice is converted once; `known` maps id(array) to its tensor already
        converted by this reader's rule (the caller vouches for the rule), which is copied."""
        out = torch.empty(len(images), 3, self.image_size, self.image_size)
        done = dict(known or {})
        for slot, image in zip(out, images):
            if id(image) in done:
                slot.copy_(done[id(image)])
                continue
            pixels_to_tensor(image, self.pixels, out=slot)
            done[id(image)] = slot
        return out

    def _load(self, path: Path, read) -> np.ndarray | None:
        if str(path) in self.bad:
            return None
        try:
            return read(path)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL: truncated, not an image, bad header
            self.bad[str(path)] = f"{type(exc).__name__}: {exc}"
            log.warning("unreadable image skipped: %s (%s)", path, self.bad[str(path)])
            return None

    def read(self, crop: Path, mask: Path | None) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(image, mask or None), or None when either file cannot be read."""
        image = self._load(crop, self.image)
        if image is None or mask is None:
            return None if image is None else (image, None)
        face = self.read_mask(mask)
        return None if face is None else (image, face)

    def read_mask(self, mask: Path) -> np.ndarray | None:
        """A face mask alone (bool [S, S]), or None when it cannot be read."""
        return self._load(mask, self.mask)


def masks_to_tensor(masks: list[np.ndarray]) -> torch.Tensor:
    """bool [S, S] each -> float [N, 1, S, S] of 0 (background) and 1 (face)."""
    return torch.from_numpy(np.stack(masks)).unsqueeze(1).float()

