"""From kept detections to training crops: size gate, alignment, pose, quality, parsing mask."""
from __future__ import annotations

import numpy as np

from mfhq.align import alignment_transform, apply_transform, out_of_frame, source_extent, warp
from mfhq.config import AlignConfig, ParsingConfig, PoseConfig, QualityConfig
from mfhq.models import create_backend
from mfhq.records import Drop
from mfhq.stages.base import FaceBatch, ModelStage, Stage


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
                batch.drop([i], Drop.TOO_SMALL)
                continue
            if batch.out_of_frame[i] > self.cfg.max_out_of_frame:
                batch.drop([i], Drop.OUT_OF_FRAME)
                continue
            batch.crops[int(i)] = warp(batch.frames[batch.frame_pos[i]], matrix, self.cfg.size)
        return batch


class _BackendStage(ModelStage):
    """A model over the alive faces' crops. One code path for one clip's chunk and for chunks of
    several clips (`call_many`, GPU batching): every alive crop of every batch goes to the model
    in one call, and the outputs are split back by count, so a face gets the same value either
    way."""

    task = ""

    def __init__(self, backend_name: str, models_dir=None, device="cpu"):
        self.backend = create_backend(self.task, backend_name, models_dir=models_dir, device=device)

    def call_many(self, batches: list[FaceBatch]) -> list[FaceBatch]:
        live = [(b, alive) for b in batches if len(alive := b.alive())]
        if live:
            # A backend that never looks at the crops (pnp pose: landmarks only) is spared their
            # copy into one array (~0.1 ms a 448 px face).
            reads = getattr(self.backend, "reads_crops", True)
            crops = np.stack([b.crops[int(i)] for b, alive in live for i in alive]) if reads else None
            outputs = self.run(live, crops)
            bounds = np.cumsum([0] + [len(alive) for _, alive in live])
            for (batch, alive), start, end in zip(live, bounds[:-1], bounds[1:]):
                self.store(batch, alive, outputs[start:end])
        return batches

    def run(self, live: list[tuple[FaceBatch, np.ndarray]], crops: np.ndarray):
        """crops: [F, S, S, 3] of every batch's alive faces, in order (None where the backend's
        reads_crops is False) -> F outputs."""
        raise NotImplementedError

    def store(self, batch: FaceBatch, alive: np.ndarray, outputs) -> None:
        raise NotImplementedError


class PoseStage(_BackendStage):
    name = "pose"
    task = "pose"

    def __init__(self, cfg: PoseConfig, **kwargs):
        super().__init__(cfg.backend, **kwargs)

    def run(self, live, crops):
        landmarks = np.concatenate([b.landmarks[alive] for b, alive in live])
        # each face's own frame size: clips batched together may differ in resolution
        sizes = np.concatenate([np.tile(b.frames.shape[2:0:-1], (len(alive), 1)) for b, alive in live])
        if getattr(self.backend, "wants_landmarks68", False):  # pnp68: dlib's points, found in detection
            dense = np.concatenate([b.landmarks68[alive] for b, alive in live])
            return self.backend.estimate(landmarks, sizes, crops, landmarks68=dense)
        return self.backend.estimate(landmarks, sizes, crops)

    def store(self, batch, alive, outputs) -> None:
        batch.pose[alive] = outputs


class QualityStage(_BackendStage):
    name = "quality"
    task = "quality"

    def __init__(self, cfg: QualityConfig, **kwargs):
        super().__init__(cfg.backend, **kwargs)
        self.min_quality = cfg.min_quality

    def run(self, live, crops):
        return self.backend.score(crops)

    def store(self, batch, alive, outputs) -> None:
        batch.quality[alive] = outputs
        if self.min_quality is not None:
            batch.drop(alive[batch.quality[alive] < self.min_quality], Drop.LOW_QUALITY)


class ParsingStage(_BackendStage):
    name = "parsing"
    task = "parsing"

    def __init__(self, cfg: ParsingConfig, **kwargs):
        super().__init__(cfg.backend, **kwargs)

    def run(self, live, crops):
        in_crop = np.stack([apply_transform(b.transforms[i], b.landmarks[i]) for b, alive in live for i in alive])
        if getattr(self.backend, "wants_landmarks68", False):  # dlib68-hull: the detector's 68, in the crop
            dense = np.stack([apply_transform(b.transforms[i], b.landmarks68[i]) for b, alive in live for i in alive])
            return list(self.backend.masks(crops, in_crop, landmarks68=dense))
        return list(self.backend.masks(crops, in_crop))

    def store(self, batch, alive, outputs) -> None:
        for i, mask in zip(alive, outputs):
            batch.masks[int(i)] = mask
