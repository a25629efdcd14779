"""Landmark images: what the adapter stage's ControlNet sees of a target's pose (Table 1's setting).

The paper feeds its ControlNet "landmark images" of the target; how they are drawn is ours, one
way, used by training (`LandmarkTargets`) and by `omniid-eval` (`omniid.controlnet_generation`)
alike:

- the manifest's 5 landmarks (left eye, right eye, nose tip, left and right mouth corner, in
  source pixels) are mapped into the target's aligned crop by the transform extract cut it with
  (`mfhq.faces.landmarks_in_crop`, the ArcFace template: mfhq's default `align.template`; a
  manifest built with the ffhq template would need that template here), at the target's side T;
- on a black T x T RGB canvas: grey lines eye-eye, each eye to the nose tip, the nose tip to each
  mouth corner and corner-corner, then a filled disc per point in its own colour (left eye red,
  right eye green, nose blue, left mouth corner yellow, right mouth corner magenta), so a
  mirrored face draws differently. Radius 2% of T, lines 1% of T (at least 1 px), anti-aliased
  at sub-pixel positions.

In an ArcFace-aligned crop the eyes and mouth sit near the template whatever the pose; what
moves is the nose tip against them (yaw to the side, pitch up or down) and the eye and mouth
spans, which is the pose the ControlNet can follow.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mfhq.manifest import ManifestFolder, read_manifest
from omniid.crop_reader import CropReader

TEMPLATE = "arcface"
POINT_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255))  # RGB, in landmark order
LINK_COLOUR = (128, 128, 128)
LINKS = ((0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4))
_SHIFT = 4  # cv2's fractional bits: points are drawn at 1/16 px


def crop_landmarks(source_landmarks, size: int) -> np.ndarray:
    """5 landmarks in source pixels ([10] or [5, 2]) -> their places [5, 2] in the size x size crop."""
    from mfhq.faces import landmarks_in_crop

    return landmarks_in_crop(np.asarray(source_landmarks, np.float64).reshape(5, 2), size, TEMPLATE)


def draw_landmarks(points: np.ndarray, size: int) -> np.ndarray:
    """Points [5, 2] in a size x size image's pixels -> the landmark image, RGB uint8 [size, size, 3]."""
    import cv2

    canvas = np.zeros((size, size, 3), np.uint8)
    fixed = np.round(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int64)
    radius = max(1, round(0.02 * size)) << _SHIFT
    thickness = max(1, round(0.01 * size))
    for a, b in LINKS:
        cv2.line(canvas, tuple(map(int, fixed[a])), tuple(map(int, fixed[b])), LINK_COLOUR, thickness, cv2.LINE_AA,
                 _SHIFT)
    for point, colour in zip(fixed, POINT_COLOURS):
        cv2.circle(canvas, tuple(map(int, point)), radius, colour, -1, cv2.LINE_AA, _SHIFT)
    return canvas


def landmark_image(source_landmarks, size: int) -> np.ndarray:
    """The landmark image of a target from its manifest landmarks: RGB uint8 [size, size, 3]."""
    return draw_landmarks(crop_landmarks(source_landmarks, size), size)


def landmark_tensor(source_landmarks, size: int) -> torch.Tensor:
    """The landmark image as the VAE takes it: float [3, size, size] in [-1, 1]."""
    image = torch.from_numpy(landmark_image(source_landmarks, size)).permute(2, 0, 1).float()
    return image / 127.5 - 1.0


def landmarks_by_crop(manifest: str | Path, roots: dict[str, Path] | None = None) -> dict[str, np.ndarray]:
    """{crop path as `omniid.data.load_manifest` resolves it: landmarks [10] in source pixels}."""
    path = Path(manifest)
    path = path / "train.parquet" if path.is_dir() else path
    folder = ManifestFolder.open(path, roots)
    table = read_manifest(path, ["run", "crop_path", "landmarks"], kind="manifest").to_pydict()
    return {str(folder.resolve(run, crop)): np.asarray(marks, np.float64)
            for run, crop, marks in zip(table["run"], table["crop_path"], table["landmarks"])}


class LandmarkTargets(CropReader):
    """The adapter stage's reading of a target: its pixels and its landmark image, both in
    [-1, 1], as one [6, T, T] tensor (face channels first). Read together, so that a face taken
    in place of an unreadable one brings its own landmarks."""

    def __init__(self, landmarks: dict[str, np.ndarray], size: int):
        super().__init__(size, "signed")
        self.landmarks = landmarks

    @classmethod
    def for_manifest(cls, manifest: str | Path, size: int, roots: dict[str, Path] | None = None) -> "LandmarkTargets":
        """What `omniid.data.build_loader(target_reader=...)` calls for each manifest it reads."""
        return cls(landmarks_by_crop(manifest, roots), size)

    def image(self, path: Path) -> tuple[np.ndarray, str]:
        """(uint8 pixels, the crop path whose landmarks `tensors` draws)."""
        return super().image(path), str(path)

    def tensors(self, images: list[tuple[np.ndarray, str]], known: dict | None = None) -> torch.Tensor:
        """[N, 6, T, T]: each target's pixels, then its landmark image (known: as CropReader's)."""
        faces = super().tensors([pixels for pixels, _ in images], known)
        marks = torch.stack([landmark_tensor(self.landmarks[path], self.image_size) for _, path in images])
        return torch.cat([faces, marks], dim=1)
