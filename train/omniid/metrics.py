"""The evaluation's face metrics: ID similarity, pose error, Sim(Ref).

The faces are measured by `mfhq.faces` with the models an mfhq pipeline preset names (`sample`:
YuNet + dlib 68 points, SFace, solvePnP; `paper`: SCRFD, ArcFace, 6DRepNet), so the evaluation
measures faces exactly as the dataset was built. Every image takes one path there (detect -> the
largest face -> ArcFace-template alignment -> embedding and pose): ground truths, inputs and
generated images alike, so an image compared with itself scores cosine 1 by construction.

- ID similarity: cosine between the generated face's embedding and the ground truth's; a generated
  image without a face scores 0 (and is counted by `no_face`).
- Pose error: |Δyaw| + |Δpitch| + |Δroll| in degrees; NaN where either face is missing. The paper
  used Hopenet, so absolute values are comparable only between rows measured with the same model.
- Sim(Ref): cosine to the nearest input image, one of the parts of MultiID-Bench's copy-paste
  score (`omniid.copypaste`), which the evaluation computes beside it; NaN without a generated
  face, so it is averaged over the images that have one (like copy-paste).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image

from mfhq.faces import Face, Faces, default_recognisers
from omniid.errors import NoImage
from omniid.face_inputs import default_pipeline, read_rgb  # the one choice of detector preset, re-exported

__all__ = ["Face", "FaceMetrics", "ImageInput", "NoImage", "cosine", "default_pipeline", "id_similarity",
           "pose_error", "ref_similarity", "to_rgb"]

ImageInput = Union[str, Path, Image.Image, np.ndarray]


def to_rgb(image: ImageInput) -> np.ndarray:
    """Path / PIL / RGB uint8 array -> RGB uint8 [H, W, 3] (`omniid.face_inputs.read_rgb`, the one reader)."""
    return read_rgb(image)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def id_similarity(generated: Face | None, truth: Face | None) -> float:
    """Cosine of the two embeddings; 0 when the generated image has no face."""
    if generated is None or truth is None:
        return 0.0
    return cosine(generated.embedding, truth.embedding)


def pose_error(generated: Face | None, truth: Face | None) -> float:
    """|Δyaw| + |Δpitch| + |Δroll| in degrees; NaN when a face is missing."""
    if generated is None or truth is None:
        return float("nan")
    return float(np.abs(generated.pose - truth.pose).sum())


def ref_similarity(generated: Face | None, inputs: Sequence[Face | None]) -> float:
    """Similarity to the nearest input image (Sim(Ref)); NaN without a face (undefined, not 0: a
    failed generation must not read as one that copies less; omniid.scoring)."""
    scores = [id_similarity(generated, face) for face in inputs if face is not None] if generated is not None else []
    return max(scores) if scores else float("nan")


class FaceMetrics:
    """The preset's detector, identity model and pose model behind one `analyse(images)` call."""

    def __init__(self, pipeline: str | Path, models_dir: str | Path | None = None, device: str = "cpu",
                 recognisers: Sequence[str] | None = None):
        """pipeline: a packaged mfhq preset's name (`sample`, `paper`) or a preset YAML file;
        recognisers: identity models by registry name, each scoring every image (default: the
        preset's own, then the offline ones; `mfhq.faces.default_recognisers`)."""
        names = list(recognisers) if recognisers else default_recognisers(pipeline)
        self.faces = Faces.from_preset(pipeline, models_dir, device, recognisers=names)
        self.recognisers = list(self.faces.recognisers)

    @property
    def models(self) -> dict[str, str]:
        """What measured: the backend names and their weights' provenance."""
        return self.faces.models

    def analyse(self, images: Sequence[ImageInput]) -> list[Face | None]:
        """The largest face of each image (None where there is none); every path is read first."""
        return self.faces.analyse([to_rgb(image) for image in images])
