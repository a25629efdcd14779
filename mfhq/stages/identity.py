"""Keep the clip's own person: a face track anchored at the start, held by embedding similarity.

The clip's person is fixed from its first frames that show faces: the face the source points
at (its person box), else the largest face. Its embedding, averaged over the faces accepted
since, is the anchor. In each frame, the face most similar to the anchor is kept if it clears
the threshold; where none does (blur, a hard profile), the face continuing the person's track
(overlapping its last kept box) is kept if its similarity still clears a lower floor. Every
other face is dropped as `other_identity`, so a second person who walks in and takes over the
frame is never mixed into the clip's identity.
"""
from __future__ import annotations

import numpy as np

from mfhq.config import IdentityConfig
from mfhq.geometry import box_iou
from mfhq.records import Drop
from mfhq.stages.base import FaceBatch, Stage


class IdentityStage(Stage):
    name = "identity"

    def __init__(self, cfg: IdentityConfig):
        self.cfg = cfg

    def _seed_face(self, batch: FaceBatch, faces: np.ndarray) -> int:
        boxes = batch.boxes[faces]
        if batch.clip.person_box is not None:
            return int(faces[np.argmax(box_iou(np.asarray(batch.clip.person_box, np.float64), boxes))])
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return int(faces[np.argmax(areas)])

    def _set_anchor(self, batch: FaceBatch) -> None:
        state = batch.state
        frames_with_faces = np.unique(batch.frame_pos)[: self.cfg.anchor_frames]
        if len(frames_with_faces) == 0:
            return
        seed = self._seed_face(batch, np.flatnonzero(batch.frame_pos == frames_with_faces[0]))
        state.anchor_sum = batch.embeddings[seed].astype(np.float64).copy()

    def __call__(self, batch: FaceBatch) -> FaceBatch:
        state = batch.state
        if batch.n_faces and state.anchor_sum is None:
            self._set_anchor(batch)
        for pos in np.unique(batch.frame_pos):
            faces = np.flatnonzero(batch.frame_pos == pos)
            anchor = state.anchor_sum / np.linalg.norm(state.anchor_sum)
            sims = batch.embeddings[faces] @ anchor
            batch.similarity[faces] = sims
            frame_number = state.frames_seen + int(pos)
            chosen = self._choose(batch, faces, sims, frame_number)
            batch.drop([f for f in faces if f != chosen], Drop.OTHER_IDENTITY)
            if chosen is not None:
                state.last_box, state.last_frame = batch.boxes[chosen].astype(np.float64), frame_number
                own = batch.embedded_from is None or batch.embedded_from[chosen] == chosen
                if own and batch.similarity[chosen] >= self.cfg.similarity_threshold:
                    # The anchor follows the person through pose and light changes, fed only
                    # by confident matches so that it cannot drift to someone else, and only
                    # by the embedder's own outputs (a reused one would count twice).
                    state.anchor_sum = state.anchor_sum + batch.embeddings[chosen]
        state.frames_seen += len(batch.frame_indices)
        return batch

    def _choose(self, batch: FaceBatch, faces: np.ndarray, sims: np.ndarray, frame_number: int) -> int | None:
        best = int(np.argmax(sims))
        if sims[best] >= self.cfg.similarity_threshold:
            return int(faces[best])
        state = batch.state
        if state.last_box is None or frame_number - state.last_frame > self.cfg.track_max_gap:
            return None
        overlap = box_iou(state.last_box, batch.boxes[faces].astype(np.float64))
        eligible = (overlap >= self.cfg.track_iou) & (sims >= self.cfg.track_similarity_floor)
        if not eligible.any():
            return None
        return int(faces[int(np.argmax(np.where(eligible, overlap, -1)))])
