"""Backends per task, chosen by name from a registry (not an if/elif chain).

Tasks and what a backend of each must provide:
  detector  detect(frames: list[BGR HxWx3]) -> list[Detections]
  embedder  embed(crops: [N, 112, 112, 3] BGR, ArcFace-aligned) -> [N, D] L2-normalised
  pose      estimate(landmarks: [N, 5, 2], frame_sizes: [N, 2] (w, h), crops) -> [N, 3] yaw, pitch, roll (deg)
            (a backend with wants_landmarks68 also gets landmarks68=[N, 68, 2], NaN where a face has none)
  quality   score(crops: [N, S, S, 3] BGR) -> [N] in [0, 1], higher is better
  parsing   masks(crops: [N, S, S, 3] BGR, landmarks: [N, 5, 2] in crop px) -> [N, S, S] uint8, 255 = face
            (a backend with wants_landmarks68 also gets landmarks68=[N, 68, 2] in crop px, NaN where none)
Each takes whole batches, so GPU backends can run them in one call.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mfhq.models.weights import WeightFile, provenance_tag, resolve

TASKS = ("detector", "embedder", "pose", "quality", "parsing")


class BackendError(ValueError):
    """A pipeline names a backend that does not exist, or one that cannot run here."""


@dataclass
class Detections:
    boxes: np.ndarray      # [N, 4] x1, y1, x2, y2
    landmarks: np.ndarray  # [N, 5, 2]
    scores: np.ndarray     # [N]
    landmarks68: np.ndarray | None = None  # [N, 68, 2] dlib's points, from detectors that find them

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32))


class Backend:
    """Base: declares weight files, resolves them once in setup(), reports its provenance."""

    name = ""
    task = ""
    licence = ""
    weight_files: tuple[WeightFile, ...] = ()

    def __init__(self, models_dir: str | Path | None = None, device: str = "cpu", **options):
        self.models_dir = models_dir
        self.device = device
        self.options = options
        self.paths: dict[str, Path] = {}

    def setup(self) -> None:
        self.paths = resolve(list(self.weight_files), self.models_dir)
        self.load()

    def load(self) -> None:
        """Load the model from self.paths; called once per worker."""

    @property
    def provenance(self) -> str:
        return provenance_tag(self.name, [self.paths[w.name] for w in self.weight_files if w.name in self.paths])


_REGISTRY: dict[str, dict[str, Callable[..., Backend]]] = {task: {} for task in TASKS}


def register_backend(cls: type[Backend]) -> type[Backend]:
    if cls.task not in _REGISTRY:
        raise ValueError(f"{cls.__name__}: unknown task {cls.task!r}")
    _REGISTRY[cls.task][cls.name] = cls
    return cls


def backend_names(task: str) -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY[task])


def create_backend(task: str, name: str, **kwargs) -> Backend:
    _load_builtin()
    if task not in _REGISTRY:
        raise BackendError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if name not in _REGISTRY[task]:
        raise BackendError(f"unknown {task} backend {name!r}; available: {', '.join(sorted(_REGISTRY[task]))}")
    return _REGISTRY[task][name](**kwargs)


def _load_builtin() -> None:
    # Importing the modules registers their backends; heavy libraries load only in setup().
    from mfhq.models import brisque_iqa, dlib_hull, pnp_pose, sface, yunet  # noqa: F401
    from mfhq.models import facexlib_parsing, insightface_onnx, sixdrep_pose, topiq_iqa  # noqa: F401


def all_backends() -> list[type[Backend]]:
    """Every registered backend class, by task then name."""
    _load_builtin()
    return [_REGISTRY[task][name] for task in TASKS for name in sorted(_REGISTRY[task])]
