"""Faces in images, measured with the models an mfhq pipeline preset names: the one door to mfhq's
models for code outside mfhq (the omniid trainer's evaluation, its ArcFace baselines and its
landmark images).

    faces = Faces.from_preset("sample")       # a packaged preset's name or a YAML file
    found = faces.analyse(images)             # RGB uint8 [H, W, 3] each -> [Face | None]
    box, points, score = faces.largest_face(image)       # or None
    crop = faces.align(image, points, 112)    # the 5 points on the ArcFace template, RGB [112, 112, 3]
    crop = faces.crop(image, points)          # the crop extract makes: the preset's template and size (448)
    faces.misalignment(image.shape, points)   # 0 for an image that already is such a crop
    vectors = faces.embed(crops)              # RGB uint8 [N, 112, 112, 3], aligned -> [N, D] unit vectors
    faces.models                              # what measured: the backends' names and weights' provenance
    points = landmarks_in_crop(landmarks, 448)  # a manifest row's 5 points, in its aligned crop [5, 2]
    several = Faces.from_preset("sample", recognisers=["sface", "dlib-resnet"])   # Face.embeddings per model

The models are loaded through mfhq's backend registry (`sample`: YuNet + dlib 68 points, SFace,
solvePnP; `paper`: SCRFD, ArcFace, 6DRepNet), so faces are measured exactly as the dataset was
built. `analyse` takes every image along one path: detect -> keep the largest face -> align its 5
points on the ArcFace template (112 px for the embedder; the preset's template and size for the
pose model) -> embed and estimate pose, so an image compared with itself scores cosine 1.

`recognisers` names identity models of the registry to run beside (or instead of) the preset's
own (`embed.backend`); each face then carries one embedding per recogniser, the first being
`Face.embedding`. A recogniser whose weights are missing fails with the file and how to fetch it:
it is never left out.

mfhq's user errors (a preset not found, weights missing) derive from `MfhqError`, re-exported
here so that a caller catches them through this same door.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mfhq.align import alignment_transform, apply_transform, arcface_template, similarity_transform, warp
from mfhq.config import PipelineConfig, load_pipeline
from mfhq.errors import MfhqError
from mfhq.models import create_backend
from mfhq.models.registry import backend_names

__all__ = ["DETECT_PAD", "DETECT_SIDE", "EMBED_SIZE", "TASKS", "Face", "Faces", "MfhqError", "OFFLINE_RECOGNISERS",
           "default_recognisers", "landmarks_in_crop", "recogniser_names"]

TASKS = ("detect", "embed", "pose")
EMBED_SIZE = 112  # the identity models' input side, on the ArcFace template
# YuNet finds faces of about 10-300 px, and an aligned 448 crop is nearly all face: detection runs
# on a copy padded by this fraction per side and scaled so its longer side is at most DETECT_SIDE.
DETECT_PAD = 0.25
DETECT_SIDE = 320


@dataclass
class Face:
    embedding: np.ndarray   # [D] unit vector
    pose: np.ndarray        # [3] yaw, pitch, roll in degrees
    box: np.ndarray         # [4] x1, y1, x2, y2 in the image's pixels
    score: float
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # recogniser -> [D] unit vector


# identity models whose weights ship in pip packages: every preset can score with these offline
OFFLINE_RECOGNISERS = ("sface", "dlib-resnet")


def default_recognisers(preset: str | Path) -> list[str]:
    """The preset's own identity model first, then the offline ones (paper: arcface, sface, dlib-resnet)."""
    return list(dict.fromkeys([load_pipeline(preset).embed.backend, *OFFLINE_RECOGNISERS]))


def recogniser_names() -> list[str]:
    """The identity models the registry knows (what `recognisers` may name)."""
    return backend_names("embedder")


def landmarks_in_crop(landmarks: np.ndarray, size: int, template: str = "arcface") -> np.ndarray:
    """A face's 5 landmarks [5, 2] in source pixels -> where they lie in its size x size aligned
    crop made with `template` (the transform extract used to cut that crop)."""
    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    return apply_transform(alignment_transform(points, template, size), points)


def _bgr(image: np.ndarray) -> np.ndarray:
    """RGB <-> BGR: mfhq's models work in BGR, as decoded video frames come."""
    return np.ascontiguousarray(np.asarray(image)[..., ::-1])


def identity_weights(preset: str | Path, models_dir: str | Path | None = None) -> tuple[str, list[tuple[Path, str]]]:
    """(name, [(weight file, sha256)]) of the preset's identity model, found and checked as its
    loading finds and checks them, without loading it: what a record of the weights a result was
    measured with needs (the hashes are the ones the check computes, cached for the later load)."""
    from mfhq.manifest.io import sha256_of
    from mfhq.models.weights import resolve

    backend = create_backend("embedder", load_pipeline(preset).embed.backend, models_dir=models_dir)
    paths = resolve(list(backend.weight_files), models_dir, {wf.name: [backend.name] for wf in backend.weight_files})
    return backend.name, [(paths[wf.name], sha256_of(paths[wf.name])) for wf in backend.weight_files
                          if wf.name in paths]


class Faces:
    """The preset's detector, identity model and pose model (those of `tasks`), loaded once."""

    def __init__(self, cfg: PipelineConfig, models_dir: str | Path | None = None, device: str = "cpu",
                 tasks: Sequence[str] = TASKS, recognisers: Sequence[str] | None = None):
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown face tasks {unknown}; tasks: {', '.join(TASKS)}")
        self.cfg = cfg
        self.detector = self.embedder = self.poser = None
        if "detect" in tasks:
            self.detector = create_backend(
                "detector", cfg.detect.backend, models_dir=models_dir, device=device,
                score_threshold=cfg.detect.score_threshold, nms_threshold=cfg.detect.nms_threshold, max_faces=1000,
            )
        self.recognisers: dict = {}
        if "embed" in tasks:
            for name in dict.fromkeys(recognisers or [cfg.embed.backend]):
                self.recognisers[name] = create_backend("embedder", name, models_dir=models_dir, device=device)
            self.embedder = next(iter(self.recognisers.values()))
        if "pose" in tasks:
            self.poser = create_backend("pose", cfg.pose.backend, models_dir=models_dir, device=device)
        for backend in self._backends():
            backend.setup()

    @classmethod
    def from_preset(cls, preset: str | Path, models_dir: str | Path | None = None, device: str = "cpu",
                    tasks: Sequence[str] = TASKS, recognisers: Sequence[str] | None = None) -> "Faces":
        """preset: a packaged preset's name (`sample`, `paper`) or a YAML file, resolved by
        `mfhq.presets.resolve_preset`; models_dir: where the preset's weights are (paper profile);
        recognisers: identity models by registry name (default: the preset's)."""
        return cls(load_pipeline(preset), models_dir, device, tasks, recognisers)

    def _backends(self) -> list:
        return [b for b in (self.detector, *self.recognisers.values(), self.poser) if b is not None]

    @property
    def models(self) -> dict[str, str]:
        """What measured: the backend names and their weights' provenance."""
        def name(backend):
            return backend.name if backend is not None else None

        return {
            "pipeline": self.cfg.name, "detector": name(self.detector), "identity_model": name(self.embedder),
            "pose_model": name(self.poser), "recognisers": list(self.recognisers),
            "provenance": "; ".join(b.provenance for b in self._backends()),
        }

    def analyse(self, images: Sequence[np.ndarray]) -> list[Face | None]:
        """The largest face of each RGB uint8 [H, W, 3] image, measured (None where there is none)."""
        frames = [_bgr(image) for image in images]
        found = [next(iter(self._found(frame)), None) for frame in frames]  # the largest face each
        keep = [i for i, f in enumerate(found) if f is not None]
        out: list[Face | None] = [None] * len(frames)
        if not keep:
            return out
        landmarks = np.stack([found[i][1] for i in keep])
        small = np.stack([self._align(frames[i], found[i][1], EMBED_SIZE) for i in keep])
        embedded = {name: model.embed(small) for name, model in self.recognisers.items()}
        embeddings = next(iter(embedded.values()))  # the first recogniser's is Face.embedding
        size = self.cfg.align.size
        crops = np.stack([warp(frames[i], alignment_transform(found[i][1], self.cfg.align.template, size), size)
                          for i in keep])
        sizes = np.array([[frames[i].shape[1], frames[i].shape[0]] for i in keep])
        poses = self.poser.estimate(landmarks, sizes, crops)
        for j, i in enumerate(keep):
            box, _, score = found[i]
            out[i] = Face(embeddings[j].astype(np.float32), np.asarray(poses[j], np.float32), box, score,
                          {name: vectors[j].astype(np.float32) for name, vectors in embedded.items()})
        return out

    def largest_face(self, image: np.ndarray):
        """(box [4], landmarks [5, 2], score) of the largest face of an RGB image, or None."""
        found = self.faces_found(image)
        return found[0] if found else None

    def faces_found(self, image: np.ndarray) -> list:
        """Every face the detector finds in an RGB image, as (box [4], landmarks [5, 2], score),
        largest box first: a caller that keeps one can say how many it left."""
        return self._found(_bgr(image))

    def align(self, image: np.ndarray, landmarks: np.ndarray, size: int = EMBED_SIZE) -> np.ndarray:
        """The face of an RGB image with its 5 points on the ArcFace template: RGB [size, size, 3]."""
        return _bgr(self._align(_bgr(image), landmarks, size))

    def crop(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The crop `mfhq extract` makes of this face (the preset's template and size, as the crop
        stage warps it): RGB [size, size, 3]."""
        size = self.cfg.align.size
        matrix = alignment_transform(landmarks, self.cfg.align.template, size)
        return warp(np.ascontiguousarray(image), matrix, size)  # channel order does not matter to a warp

    def misalignment(self, shape: Sequence[int], landmarks: np.ndarray) -> float:
        """How far an image of `shape` whose face has these 5 points is from being an aligned crop
        of the preset's template: the largest move of a corner under the alignment at the image's
        own side, as a fraction of that side (0: already aligned; inf: not square)."""
        h, w = int(shape[0]), int(shape[1])
        if h != w:
            return float("inf")
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
        moved = apply_transform(alignment_transform(landmarks, self.cfg.align.template, w), corners)
        return float(np.abs(moved - corners).max() / w)

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        """RGB uint8 [N, 112, 112, 3] faces aligned on the ArcFace template -> [N, D] unit vectors."""
        return self.embedder.embed(_bgr(aligned))

    @staticmethod
    def _align(frame: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
        return warp(frame, similarity_transform(landmarks, arcface_template(size)), size)

    def _found(self, frame: np.ndarray) -> list:
        """[(box, landmarks [5, 2], score)] of the faces in a BGR frame's coordinates, largest first."""
        import cv2

        h, w = frame.shape[:2]
        pad = int(round(DETECT_PAD * max(h, w)))
        padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        scale = min(1.0, DETECT_SIDE / max(padded.shape[:2]))
        if scale < 1.0:
            padded = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        det = self.detector.detect([padded])[0]
        areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1]) if len(det.scores) else []
        order = np.argsort(-np.asarray(areas), kind="stable")  # ties keep the detector's order, as argmax did
        return [((det.boxes[i] / scale - pad).astype(np.float32), det.landmarks[i].astype(np.float64) / scale - pad,
                 float(det.scores[i])) for i in order]
