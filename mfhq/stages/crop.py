"""From kept detections to training crops: size gate, alignment, pose, quality, parsing mask."""
from __future__ import annotations

import numpy as np

from mfhq.align import alignment_transform, apply_transform, out_of_frame, source_extent, warp
from mfhq.config import AlignConfig, ParsingConfig, PoseConfig, QualityConfig
from mfhq.models import create_backend
from mfhq.stages.base import FaceBatch, Stage


class AlignStage(Stage):
    """Drops faces whose aligned crop would be upsampled past the limit, or would lie outside
    the frame by more than the limit; warps the rest."""

    name = "align"

    def __init__(self, cfg: AlignConfig):
        self.cfg = cfg

    @property
    def provenance(self) -> str:
        return f"align={self.cfg.template}{self.cfg.size}"

    def __call__(self, batch: FaceBatch) -> FaceBatch:
        height, width = batch.frames.shape[1:3]
        batch.out_of_frame = np.full(batch.n_faces, np.nan, np.float32)
        for i in batch.alive():
            matrix = alignment_transform(batch.landmarks[i], self.cfg.template, self.cfg.size)
            batch.transforms[i] = matrix
            batch.face_size[i] = source_extent(matrix, self.cfg.size)
            batch.out_of_frame[i] = out_of_frame(matrix, self.cfg.size, width, height)
            if batch.face_size[i] < self.cfg.min_face_px:
                batch.drop([i], "too_small")
                continue
            if batch.out_of_frame[i] > self.cfg.max_out_of_frame:
                batch.drop([i], "out_of_frame")
                continue
            batch.crops[int(i)] = warp(batch.frames[batch.frame_pos[i]], matrix, self.cfg.size)
        return batch


class _BackendStage(Stage):
    task = ""

    def __init__(self, backend_name: str, models_dir=None, device="cpu"):
        self.backend = create_backend(self.task, backend_name, models_dir=models_dir, device=device)

    def setup(self) -> None:
        self.backend.setup()

    @property
    def provenance(self) -> str:
        return self.backend.provenance

    @staticmethod
    def _alive_crops(batch: FaceBatch) -> tuple[np.ndarray, np.ndarray]:
        alive = batch.alive()
        crops = np.stack([batch.crops[int(i)] for i in alive]) if len(alive) else None
        return alive, crops


class PoseStage(_BackendStage):
    name = "pose"
    task = "pose"

    def __init__(self, cfg: PoseConfig, **kwargs):
        super().__init__(cfg.backend, **kwargs)

    def __call__(self, batch: FaceBatch) -> FaceBatch:
        alive, crops = self._alive_crops(batch)
        if len(alive):
            height, width = batch.frames.shape[1:3]
            sizes = np.tile([width, height], (len(alive), 1))
            if getattr(self.backend, "wants_landmarks68", False):  # pnp68: dlib's points, found in detection
                batch.pose[alive] = self.backend.estimate(batch.landmarks[alive], sizes, crops,
                                                          landmarks68=batch.landmarks68[alive])
            else:
                batch.pose[alive] = self.backend.estimate(batch.landmarks[alive], sizes, crops)
        return batch


class QualityStage(_BackendStage):
    name = "quality"
    task = "quality"

    def __init__(self, cfg: QualityConfig, **kwargs):
        super().__init__(cfg.backend, **kwargs)
        self.min_quality = cfg.min_quality

    def __call__(self, batch: FaceBatch) -> FaceBatch:
        alive, crops = self._alive_crops(batch)
        if len(alive):
            batch.quality[alive] = self.backend.score(crops)
            if self.min_quality is not None:
                batch.drop(alive[batch.quality[alive] < self.min_quality], "low_quality")
        return batch


class ParsingStage(_BackendStage):
    name = "parsing"
    task = "parsing"

    def __init__(self, cfg: ParsingConfig, **kwargs):
        super().__init__(cfg.backend, **kwargs)

    def __call__(self, batch: FaceBatch) -> FaceBatch:
        alive, crops = self._alive_crops(batch)
        if len(alive):
            in_crop = np.stack([apply_transform(batch.transforms[i], batch.landmarks[i]) for i in alive])
            for i, mask in zip(alive, self.backend.masks(crops, in_crop)):
                batch.masks[int(i)] = mask
        return batch
