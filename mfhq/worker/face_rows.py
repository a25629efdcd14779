"""Helpers of a clip's face rows: values taken from a processed batch."""
from __future__ import annotations

import numpy as np

from mfhq.stages.base import FaceBatch


def embedding_frame(batch: FaceBatch, face: int) -> int | None:
    """The frame index of the face whose embedder output this face's embedding is (its own
    frame, or an earlier/later frame of the same track with embed.every > 1)."""
    if batch.embeddings is None:
        return None
    if batch.embedding_frames is not None:
        return int(batch.embedding_frames[face])
    return int(batch.frame_indices[batch.frame_pos[face]])


def dense_points(batch: FaceBatch, face: int) -> list[float] | None:
    """The detector's 68 points of a face, flat, or None where it gave none (NaN)."""
    if batch.landmarks68 is None or not np.isfinite(batch.landmarks68[face]).all():
        return None
    return batch.landmarks68[face].reshape(-1).tolist()
