"""A user's image -> what the encoder saw in training: the one preprocessing of inference.

Training reads crops that `mfhq extract` aligned (the 5 points on the ArcFace template, 448 px, in
both mfhq presets) and resizes and normalises them with `omniid.preprocess.image_to_tensor`. Any
image given at inference takes the same road through `prepare_image(image, size, aligner, name)`:

- no aligner (the caller vouches for aligned crops, e.g. a manifest's): resize and normalise only;
- otherwise the aligner (an mfhq preset's detector, through `mfhq.faces`) finds the largest face
  (a photo of several faces: a warning naming the file, the count and the box taken). An image
  that already is an aligned crop (its 5 points within ALIGNED_TOLERANCE of the template) is
  used as it is, so a crop of the dataset gives exactly its training tensor; any other photo is
  warped to the crop extract would make of it. No face: `NoFace`, naming the file.

A photo is read as viewers show it: turned by its EXIF orientation (`omniid.photos`, the one
reader of a user's photo); a file with none to apply (a manifest's crop) keeps training's read.

`Prepared.how` says which of the three happened, `Prepared.record()` that with the number of faces
found, the box taken (in the pixels as shown) and the EXIF orientation applied; `identity_batch`
logs it per image and returns the records.

With `identity_side` (the `arcface` baselines: 112 px) the same aligned crop is also read at that
side for the frozen identity model, as training's loaders read a manifest's crop file: a path is
decoded at the side (a 448 px JPEG at 1/4 scale, exactly the data path's read), an image in memory
gets the same integer reduction (`omniid.preprocess.load_pixels`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from omniid.errors import NoFace, NoImage
from omniid.photos import as_shown, as_stored, open_photo
from omniid.preprocess import ImageLike, image_to_tensor, load_pixels

log = logging.getLogger(__name__)

# ours: the largest corner move (fraction of the side) that still counts as an aligned crop. The
# sample run's 76 crops measure at most 0.025 with the sample detector; a crop turned by 3 degrees, 0.044.
ALIGNED_TOLERANCE = 0.05
GIVEN = "given as an aligned crop (resize and normalise only)"
AS_IS = "an aligned crop already, used as it is"


def default_pipeline(preset_name: str) -> str:
    """The packaged mfhq preset whose models measure and align for a trainer preset: the paper's
    models (`paper`) for `paper`, the offline models (`sample`) otherwise."""
    return "paper" if preset_name == "paper" else "sample"


@dataclass
class Prepared:
    tensor: torch.Tensor               # [3, S, S], CLIP-normalised
    how: str                           # GIVEN, AS_IS or "face detected and aligned (...)"
    faces: int | None = None           # faces the detector found (None: no detector ran)
    box: list[float] | None = None     # the one taken, [x0, y0, x1, y1] in the image's pixels
    face: np.ndarray | None = None     # the aligned crop at the identity side, uint8 [s, s, 3] (asked for)
    exif_orientation: int | None = None  # the EXIF orientation the photo was turned by (None: read as stored)

    def record(self) -> dict:
        """What omniid-generate's settings.json and omniid-eval's results.parquet keep of this image's preprocessing."""
        return {"how": self.how, "faces_found": self.faces, "face_box": self.box,
                "exif_orientation": self.exif_orientation}


def read_rgb(image: ImageLike | torch.Tensor) -> np.ndarray:
    """A path, PIL image, RGB uint8 array or [3, H, W] tensor ([0, 1] float or uint8) -> RGB uint8
    [H, W, 3]; a photo (path or PIL image) as viewers show it (`omniid.photos`); a path that is
    missing or not an image raises NoImage naming it."""
    return read_shown(image)[0]


def read_shown(image: ImageLike | torch.Tensor) -> tuple[np.ndarray, int | None]:
    """`read_rgb` and the EXIF orientation it applied (None: none)."""
    if isinstance(image, (str, Path)):
        photo, turn = open_photo(image)
        return np.asarray(photo), turn
    if torch.is_tensor(image):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"an image tensor must be [3, H, W], got {list(image.shape)}")
        if image.dtype != torch.uint8:
            image = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        return image.permute(1, 2, 0).cpu().numpy(), None
    if isinstance(image, Image.Image):
        photo, turn = as_shown(image, describe(image, "image"))
        return np.asarray(photo), turn
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image, None
    raise TypeError(f"expected a path, a PIL image, an RGB uint8 [H, W, 3] array or a [3, H, W] tensor, "
                    f"got {type(image).__name__}")


class InputAligner:
    """An mfhq preset's detector (loaded on first use) and extract's alignment of that preset."""

    def __init__(self, pipeline: str | Path = "sample", models_dir: str | Path | None = None, device: str = "cpu"):
        self.pipeline, self.models_dir, self.device = str(pipeline), models_dir, device
        self._faces = None

    @property
    def faces(self):
        if self._faces is None:
            from mfhq.faces import Faces

            self._faces = Faces.from_preset(self.pipeline, self.models_dir, self.device, tasks=("detect",))
        return self._faces

    def align(self, rgb: np.ndarray, name: str) -> tuple[np.ndarray | None, str, int, list[float]]:
        """(the aligned crop, or None when `rgb` already is one; how; faces found; the box taken)."""
        found = self.faces.faces_found(rgb)
        if not found:
            raise NoFace(f"{name}: no face found by the {self.pipeline} preset's detector; give a photo "
                         "with a visible face (or its aligned crop)")
        box, points, _ = found[0]
        box = [round(float(v), 1) for v in box]
        if len(found) > 1:  # the encoder takes one face per image: say which, a group photo is not refused
            log.warning("%s: %d faces found; took the largest, box [x0, y0, x1, y1] = %s (give a photo or crop of "
                        "the one person to choose another)", name, len(found), box)
        if self.faces.misalignment(rgb.shape, points) <= ALIGNED_TOLERANCE:
            return None, AS_IS, len(found), box
        align = self.faces.cfg.align
        how = f"face detected and aligned ({align.template} template, {align.size} px)"
        return self.faces.crop(rgb, points), how, len(found), box


def input_paths(paths: Sequence[str | Path], manifest: str | Path | None = None) -> list[Path]:
    """Image paths as a user gives them -> files, each read once so that a missing or unreadable one
    is named before any model loads. A path that is not a file may be a crop_path / mask_path of
    `manifest` (relative to the extract run folder), resolved through its sidecar."""
    from mfhq.manifest import resolve_listed_path

    found = []
    for given in paths:
        path = Path(given)
        if not path.is_file():
            if manifest is None:
                hint = ("; a manifest's crop_path is relative to its extract run folder: give the manifest "
                        "(omniid-generate --manifest) to resolve it" if not path.is_absolute() else "")
                raise NoImage(f"image not found: {path}{hint}")
            path = resolve_listed_path(path, manifest)
        read_rgb(path)
        found.append(path)
    return found


def describe(image, fallback: str) -> str:
    """The name an image goes by in messages: its path, a PIL image's file name, or `fallback`."""
    if isinstance(image, (str, Path)):
        return str(image)
    return getattr(image, "filename", "") or fallback


def prepare_image(image: ImageLike | torch.Tensor, size: int, aligner: InputAligner | None = None,
                  name: str | None = None, identity_side: int | None = None) -> Prepared:
    """One image -> the encoder's input [3, size, size], as training made it (see the module doc);
    with identity_side, also the same crop read at that side (`Prepared.face`)."""
    given, turn = _as_given(image)
    crop, how, faces, box = (None, GIVEN, None, None) if aligner is None else aligner.align(
        given if isinstance(given, np.ndarray) else read_rgb(image), name or describe(image, "image"))
    source = given if crop is None else crop
    face = load_pixels(source, identity_side) if identity_side else None
    return Prepared(image_to_tensor(source, size), how, faces, box, face, turn)


def _as_given(image: ImageLike | torch.Tensor) -> tuple[ImageLike, int | None]:
    """(what is resized when no crop is made, the EXIF orientation applied or None). A path with no
    orientation to apply stays a path, read as training reads it (a JPEG crop in draft mode: a
    manifest's crop gives exactly its training tensor); any other: its pixels as shown."""
    if isinstance(image, (str, Path)):
        return (image, None) if as_stored(image) else read_shown(image)
    if torch.is_tensor(image) or isinstance(image, Image.Image):
        return read_shown(image)
    return image, None


def identity_batch(identities: Sequence[Sequence], size: int, aligner: InputAligner | None = None,
                   identity_side: int | None = None) -> tuple[dict, list[list[dict]]]:
    """Images of each identity -> (a batch as the loaders make it: inputs [B, M, 3, S, S], input_valid
    [B, M], with identity_side also identity_inputs uint8 [B, M, s, s, 3]; `Prepared.record()` per image)."""
    m = max(len(images) for images in identities)
    inputs = torch.zeros(len(identities), m, 3, size, size)
    valid = torch.zeros(len(identities), m, dtype=torch.bool)
    batch, hows = {"inputs": inputs, "input_valid": valid}, []
    if identity_side:
        batch["identity_inputs"] = torch.zeros(len(identities), m, identity_side, identity_side, 3, dtype=torch.uint8)
    for b, images in enumerate(identities):
        if not len(images):
            raise ValueError("every identity needs at least one image")
        names = [describe(image, f"image {i + 1} of identity {b + 1}") for i, image in enumerate(images)]
        prepared = [prepare_image(image, size, aligner, name, identity_side) for image, name in zip(images, names)]
        inputs[b, :len(prepared)] = torch.stack([p.tensor for p in prepared])
        if identity_side:
            batch["identity_inputs"][b, :len(prepared)] = torch.from_numpy(np.stack([p.face for p in prepared]))
        valid[b, :len(prepared)] = True
        hows.append([p.record() for p in prepared])
        for name, p in zip(names, prepared):
            log.log(logging.INFO if aligner is not None else logging.DEBUG, "%s: %s", name, p.how)
    return batch, hows


def training_autocast(device: torch.device | str, bf16: bool):
    """The encoder's precision as in training: bf16 autocast on CUDA when the run's optim.bf16."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=bool(bf16) and torch.device(device).type == "cuda")
