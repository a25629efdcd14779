"""Detection with 5 landmarks, and the identity embedding of every detected face."""
from __future__ import annotations

import numpy as np

from mfhq.align import arcface_template, similarity_transform, warp
from mfhq.config import DetectConfig, EmbedConfig
from mfhq.geometry import box_iou
from mfhq.models import create_backend
from mfhq.models.base import Detections
from mfhq.stages.base import FaceBatch, ModelStage
from mfhq.stages.embed_schedule import VIRTUAL, first_pass, next_tail, second_pass


class DetectStage(ModelStage):
    name = "detect"

    def __init__(self, cfg: DetectConfig, models_dir=None, device="cpu"):
        self.cfg = cfg
        self.backend = create_backend(
            "detector", cfg.backend, models_dir=models_dir, device=device,
            score_threshold=cfg.score_threshold, nms_threshold=cfg.nms_threshold, max_faces=cfg.max_faces,
            working_size=cfg.working_size,
        )

    def call_many(self, batches: list[FaceBatch]) -> list[FaceBatch]:
        """The frames of every batch without source annotations go to the detector in one call
        (GPU batching across clips); annotated batches keep their own path."""
        annotated = [b.clip.annotations is not None and self.cfg.use_source_annotations for b in batches]
        frames = [frame for b, ann in zip(batches, annotated) if not ann for frame in b.frames]
        detected = iter(self.backend.detect(frames) if frames else [])
        for batch, ann in zip(batches, annotated):
            if not ann:
                self._fill(batch, [next(detected) for _ in range(len(batch.frames))])
            else:
                self._fill(batch, self._annotated(batch))
        return batches

    @staticmethod
    def _fill(batch: FaceBatch, found: list[Detections]) -> None:
        counts = [len(d.scores) for d in found]
        batch.frame_pos = np.repeat(np.arange(len(found)), counts)
        batch.face_index = np.concatenate([np.arange(n) for n in counts]) if counts else np.zeros(0, int)
        batch.boxes = np.concatenate([d.boxes for d in found]) if found else np.zeros((0, 4), np.float32)
        batch.landmarks = np.concatenate([d.landmarks for d in found]) if found else np.zeros((0, 5, 2), np.float32)
        batch.scores = np.concatenate([d.scores for d in found]) if found else np.zeros(0, np.float32)
        batch.landmarks68 = np.concatenate([_dense(d) for d in found]) if found else np.zeros((0, 68, 2), np.float32)
        n = len(batch.scores)
        batch.drop_reason = [None] * n
        batch.similarity = np.full(n, np.nan, np.float32)
        batch.face_size = np.full(n, np.nan, np.float32)
        batch.pose = np.full((n, 3), np.nan, np.float32)
        batch.quality = np.full(n, np.nan, np.float32)
        batch.transforms = np.zeros((n, 2, 3), np.float64)

    def _annotated(self, batch: FaceBatch) -> list[Detections]:
        """The source's own face on annotated frames (score NaN: no detector scored it); the
        detector on the others, and on one annotated frame in verify_every as a check."""
        ann, state = batch.clip.annotations, batch.state
        row_of = ann.row_of_frame
        found: list[Detections | None] = []
        run_on: list[int] = []
        for pos, index in enumerate(batch.frame_indices.tolist()):
            row = row_of.get(int(index))
            if row is None:
                found.append(None)
                run_on.append(pos)
                continue
            found.append(Detections(np.asarray([ann.boxes[row]], np.float32),
                                    np.asarray(ann.landmarks[row], np.float32).reshape(1, 5, 2),
                                    np.full(1, np.nan, np.float32)))
            every = self.cfg.verify_every
            if every > 0 and state.annotated_frames % every == 0:
                run_on.append(pos)
            state.annotated_frames += 1
        detected = self.backend.detect([batch.frames[pos] for pos in run_on]) if run_on else []
        for pos, result in zip(run_on, detected):
            if found[pos] is None:
                found[pos] = result
                continue
            # A check: how well the detector's best match agrees with the source's face.
            state.verified_frames += 1
            if not len(result.scores):
                continue
            ious = box_iou(found[pos].boxes[0].astype(np.float64), result.boxes.astype(np.float64))
            best = int(np.argmax(ious))
            state.verified_iou_sum += float(ious[best])
            ours, theirs = result.landmarks[best].astype(np.float64), found[pos].landmarks[0].astype(np.float64)
            eyes = max(float(np.linalg.norm(ours[0] - ours[1])), 1.0)
            state.verified_nme_sum += float(np.linalg.norm(ours - theirs, axis=1).mean()) / eyes
            state.verified_matched += 1
        return found


def _dense(found: Detections) -> np.ndarray:
    """The detector's 68 points, or NaN for faces it has none for (5-point detectors, annotations)."""
    if found.landmarks68 is not None:
        return np.asarray(found.landmarks68, np.float32)
    return np.full((len(found.scores), 68, 2), np.nan, np.float32)


class EmbedStage(ModelStage):
    """The identity embedding of every face, on a 112 px ArcFace-aligned crop: by the embedder,
    or with `every` > 1 copied along a run of one tracked face (see `embed_schedule`).
    `batch.embedded_from[i]` is the face whose embedder output face i holds (i itself when it
    went through the embedder, VIRTUAL for a face of an earlier batch), and
    `batch.embedding_frames[i]` that face's frame in the video. With `every` > 1 the batch it
    returns may start with frames the clip's previous batch held back, and end before the
    batch's own last frames, which it holds back in turn (embed_schedule)."""

    name = "embed"

    def __init__(self, cfg: EmbedConfig, models_dir=None, device="cpu"):
        self.cfg = cfg
        self.backend = create_backend("embedder", cfg.backend, models_dir=models_dir, device=device)

    def call_many(self, batches: list[FaceBatch]) -> list[FaceBatch]:
        """The faces each batch's plan names go through the embedder in one call for all batches
        (GPU batching across clips), then the faces between disagreeing run anchors in a second."""
        cfg, template = self.cfg, arcface_template(112)
        if cfg.every > 1:
            batches = [_after_held(b) for b in batches]
        crops = [np.stack([warp(b.frames[pos], similarity_transform(points, template), 112)
                           for pos, points in zip(b.frame_pos, b.landmarks)])
                 if b.n_faces else np.zeros((0, 112, 112, 3), np.uint8) for b in batches]
        tails = [b.state.embed_tail if cfg.every > 1 else None for b in batches]
        plans = [first_pass(b, c, cfg.every, cfg.track_iou, cfg.track_look, tail, b.closing)
                 for b, c, tail in zip(batches, crops, tails)]
        done = [np.zeros(b.n_faces, bool) for b in batches]
        for batch in batches:  # made afresh (a batch redone alone after a grouped call failed has some)
            batch.embeddings = None
        self._embed(batches, crops, [plan.now for plan in plans], done)
        reuses, more = [], []
        for batch, plan, mask, tail in zip(batches, plans, done, tails):
            extra, reuse = second_pass(plan.runs, batch.embeddings, mask, cfg.every, cfg.reuse_similarity, tail)
            more.append(extra)
            reuses.append(reuse)
        if any(more):
            self._embed(batches, crops, more, done)
        for batch, reuse, tail in zip(batches, reuses, tails):
            batch.embedded_from = np.arange(batch.n_faces)
            batch.embedding_frames = np.asarray(batch.frame_indices, np.int64)[batch.frame_pos]
            for face, source in reuse.items():
                if source == VIRTUAL:  # the run's last k-th face before this batch
                    batch.embeddings[face] = tail.embedding
                    batch.embedding_frames[face] = tail.frame_index
                else:
                    batch.embeddings[face] = batch.embeddings[source]
                    batch.embedding_frames[face] = batch.embedding_frames[source]
                batch.embedded_from[face] = source
        if cfg.every > 1:
            batches = [_hold_back(*args) for args in zip(batches, crops, plans, tails)]
        return batches

    def _embed(self, batches: list[FaceBatch], crops: list[np.ndarray], faces: list[list[int]],
               done: list[np.ndarray]) -> None:
        chosen_crops = [c[chosen] for c, chosen in zip(crops, faces) if len(chosen)]
        stacked = np.concatenate(chosen_crops) if chosen_crops else np.zeros((0, 112, 112, 3), np.uint8)
        embeddings = self.backend.embed(stacked)
        start = 0
        for batch, chosen, mask in zip(batches, faces, done):
            if batch.embeddings is None:  # the first call for this batch
                batch.embeddings = np.zeros((batch.n_faces, *embeddings.shape[1:]), np.float32)
            batch.embeddings[chosen] = embeddings[start:start + len(chosen)]
            mask[chosen] = True
            start += len(chosen)


def _after_held(batch: FaceBatch) -> FaceBatch:
    """The frames the clip's previous batch held back, then this batch's."""
    held, batch.state.embed_held = batch.state.embed_held, None
    return batch if held is None else held.joined(batch)


def _hold_back(batch: FaceBatch, crops: np.ndarray, plan, tail) -> FaceBatch:
    """The part of the batch the later stages get now; the frames the plan leaves undecided go to
    the clip's state (copied: a few frames must not hold the whole chunk)."""
    state = batch.state
    state.embed_tail = next_tail(batch, crops, plan, tail)
    n_frames = len(batch.frame_indices)
    if plan.held_from == n_frames:
        return batch
    held = batch.frames_between(plan.held_from, n_frames, copy=True)
    held.embeddings = held.embedded_from = held.embedding_frames = None  # decided with the next batch
    state.embed_held = held
    return batch.frames_between(0, plan.held_from)
