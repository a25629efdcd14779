"""The evaluation's face metrics, computed with mfhq's own models: ID similarity, pose error, Sim(Ref).

The models are the ones an mfhq pipeline preset names (`pipelines/sample.yaml`: YuNet + dlib 68
points, SFace, solvePnP; `pipelines/paper.yaml`: SCRFD, ArcFace, 6DRepNet), loaded through mfhq's
backend registry, so the evaluation measures faces exactly as the dataset was built.

Every image goes through one path: detect -> keep the largest face -> align its 5 points on the
ArcFace template (112 px for the embedder; the preset's template and size for the pose model) ->
embed and estimate pose. Ground truths, inputs and generated images all take it, so an image
compared with itself scores cosine 1 by construction.

- ID similarity: cosine between the generated face's embedding and the ground truth's; a generated
  image without a face scores 0 (and is counted by `no_face`).
- Pose error: |Δyaw| + |Δpitch| + |Δroll| in degrees; NaN where either face is missing. The paper
  used Hopenet, so absolute values are comparable only between rows measured with the same model.
- Sim(Ref): cosine to the nearest input image (MultiID-Bench's copy-paste check).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image

from mfhq.align import alignment_transform, arcface_template, similarity_transform, warp
from mfhq.config import PipelineConfig, load_pipeline
from mfhq.models import create_backend

ImageInput = Union[str, Path, Image.Image, np.ndarray]
# YuNet finds faces of about 10-300 px, and an aligned 448 crop is nearly all face: detection runs
# on a copy padded by this fraction per side and scaled so its longer side is at most DETECT_SIDE.
DETECT_PAD = 0.25
DETECT_SIDE = 320
# The mfhq presets, in a source checkout (not package data: pass --pipeline elsewhere).
PIPELINES_DIR = Path(__file__).resolve().parents[2] / "pipelines"


def default_pipeline(preset_name: str) -> Path:
    """The mfhq preset whose models measure a trainer preset: the paper's models for `paper`,
    the offline models (pipelines/sample.yaml) otherwise."""
    path = PIPELINES_DIR / ("paper.yaml" if preset_name == "paper" else "sample.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"mfhq pipeline preset not found: {path}; pass --pipeline PRESET.yaml")
    return path


class NoImage(FileNotFoundError):
    """An image path that does not exist or cannot be decoded; the message names the file."""


@dataclass
class Face:
    embedding: np.ndarray   # [D] unit vector
    pose: np.ndarray        # [3] yaw, pitch, roll in degrees
    box: np.ndarray         # [4] x1, y1, x2, y2 in the image's pixels
    score: float


def to_rgb(image: ImageInput) -> np.ndarray:
    """Path / PIL / RGB uint8 array -> RGB uint8 [H, W, 3]."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise NoImage(f"image not found: {path}")
        try:
            with Image.open(path) as opened:
                return np.asarray(opened.convert("RGB"))
        except OSError as error:
            raise NoImage(f"{path}: not a readable image ({error})") from error
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    raise TypeError(f"expected a path, a PIL image or an RGB uint8 [H, W, 3] array, got {type(image).__name__}")


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
    """Similarity to the nearest input image (Sim(Ref)); 0 without a face."""
    scores = [id_similarity(generated, face) for face in inputs if face is not None]
    return max(scores) if scores else 0.0


class FaceMetrics:
    """The preset's detector, identity model and pose model behind one `analyse(images)` call."""

    def __init__(self, pipeline: str | Path | PipelineConfig, models_dir: str | Path | None = None,
                 device: str = "cpu"):
        cfg = pipeline if isinstance(pipeline, PipelineConfig) else load_pipeline(pipeline)
        self.cfg = cfg
        self.detector = create_backend(
            "detector", cfg.detect.backend, models_dir=models_dir, device=device,
            score_threshold=cfg.detect.score_threshold, nms_threshold=cfg.detect.nms_threshold, max_faces=1000,
        )
        self.embedder = create_backend("embedder", cfg.embed.backend, models_dir=models_dir, device=device)
        self.poser = create_backend("pose", cfg.pose.backend, models_dir=models_dir, device=device)
        for backend in (self.detector, self.embedder, self.poser):
            backend.setup()

    @property
    def models(self) -> dict[str, str]:
        """What measured: the backend names and their weights' provenance."""
        return {
            "pipeline": self.cfg.name,
            "detector": self.detector.name, "identity_model": self.embedder.name, "pose_model": self.poser.name,
            "provenance": "; ".join(b.provenance for b in (self.detector, self.embedder, self.poser)),
        }

    def analyse(self, images: Sequence[ImageInput]) -> list[Face | None]:
        """The largest face of each image (None where there is none)."""
        frames = [np.ascontiguousarray(to_rgb(image)[..., ::-1]) for image in images]  # mfhq works in BGR
        found = [self._detect(frame) for frame in frames]
        keep = [i for i, f in enumerate(found) if f is not None]
        out: list[Face | None] = [None] * len(frames)
        if not keep:
            return out
        landmarks = np.stack([found[i][1] for i in keep])
        small = np.stack([warp(frames[i], similarity_transform(found[i][1], arcface_template(112)), 112)
                          for i in keep])
        embeddings = self.embedder.embed(small)
        size = self.cfg.align.size
        crops = np.stack([warp(frames[i], alignment_transform(found[i][1], self.cfg.align.template, size), size)
                          for i in keep])
        sizes = np.array([[frames[i].shape[1], frames[i].shape[0]] for i in keep])
        poses = self.poser.estimate(landmarks, sizes, crops)
        for j, i in enumerate(keep):
            box, _, score = found[i]
            out[i] = Face(embeddings[j].astype(np.float32), np.asarray(poses[j], np.float32), box, score)
        return out

    def _detect(self, frame: np.ndarray):
        """(box, landmarks [5, 2], score) of the largest face in frame coordinates, or None."""
        import cv2

        h, w = frame.shape[:2]
        pad = int(round(DETECT_PAD * max(h, w)))
        padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        scale = min(1.0, DETECT_SIDE / max(padded.shape[:2]))
        if scale < 1.0:
            padded = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        det = self.detector.detect([padded])[0]
        if not len(det.scores):
            return None
        areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
        best = int(np.argmax(areas))
        box = det.boxes[best] / scale - pad
        points = det.landmarks[best].astype(np.float64) / scale - pad
        return box.astype(np.float32), points, float(det.scores[best])
