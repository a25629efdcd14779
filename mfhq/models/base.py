"""What every backend is: the base class the backends derive from, and the contract per task.

Each task's backends take whole batches, so GPU backends can run them in one call:
  detector  detect(frames: list[BGR HxWx3]) -> list[Detections]
  embedder  embed(crops: [N, 112, 112, 3] BGR, ArcFace-aligned) -> [N, D] L2-normalised
  pose      estimate(landmarks: [N, 5, 2], frame_sizes: [N, 2] (w, h), crops) -> [N, 3] yaw, pitch, roll (deg)
            (a backend with wants_landmarks68 also gets landmarks68=[N, 68, 2], NaN where a face has none;
            one with reads_crops = False gets crops=None: the stage does not gather them)
  quality   score(crops: [N, S, S, 3] BGR) -> [N] in [0, 1], higher is better
  parsing   masks(crops: [N, S, S, 3] BGR, landmarks: [N, 5, 2] in crop px) -> [N, S, S] uint8, 255 = face
            (a backend with wants_landmarks68 also gets landmarks68=[N, 68, 2] in crop px, NaN where none)
The backends import this module; the registry (registry.py) imports the backends by name, so no
import runs in a circle.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mfhq.errors import MfhqError, is_out_of_memory
from mfhq.models.weights import WeightFile, provenance_tag, resolve, unreadable

TASKS = ("detector", "embedder", "pose", "quality", "parsing")


class BackendError(MfhqError, ValueError):
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
        owners = {wf.name: [self.name] for wf in self.weight_files} if self.name else None
        self.paths = resolve(list(self.weight_files), self.models_dir, owners)  # the message names this backend
        try:
            self.load()
        except (ImportError, MfhqError, MemoryError):
            raise  # a missing library, a device that is not here, no memory: said as such already
        except Exception as exc:
            # The one place a file that passed its hash check (or had none to pass) but does not
            # load becomes one error naming it and how to fetch it, whatever library raised. A
            # device's own failure (CUDA out of memory, a CUDA error) while the model moves to it
            # is not the file's, nor is memory running out (onnxruntime's std::bad_alloc): it goes on
            # as it was raised.
            files = [(wf, self.paths[wf.name]) for wf in self.weight_files if wf.name in self.paths]
            if not files or _device_error(exc) or is_out_of_memory(exc):
                raise
            raise unreadable(self.name or type(self).__name__, files, exc) from exc

    def load(self) -> None:
        """Load the model from self.paths; called once per worker."""

    @property
    def provenance(self) -> str:
        return provenance_tag(self.name, [self.paths[w.name] for w in self.weight_files if w.name in self.paths])


def _device_error(exc: BaseException) -> bool:
    """torch's errors of a device (out of memory, an accelerator's failure), told by name so that
    this module does not import torch."""
    return type(exc).__name__ in ("OutOfMemoryError", "AcceleratorError") or "CUDA error" in str(exc)
