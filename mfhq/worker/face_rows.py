"""Helpers of a clip's face rows: values taken from a processed batch, and the withdrawal of the
rows of a clip whose decoding failed part-way (its crops and masks already written, chunk by chunk)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mfhq.records import FaceRow
from mfhq.stages.base import FaceBatch


def withdraw(run_dir: Path, rows: list[dict], reason: str) -> list[dict]:
    """The rows with every kept face dropped for `reason`; the crop and mask files written for
    them are removed, so that no file in the run lacks a row (a dropped face has no files)."""
    folders = set()
    for row in rows:
        for relative in (row["crop_path"], row["mask_path"]) if row["kept"] else ():
            path = Path(run_dir) / relative
            path.unlink(missing_ok=True)  # with align.crops: materialize, none was written
            folders.add(path.parent)
    for folder in folders:  # the clip's folders, left empty when no face of it was kept
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: files of another attempt's frames, or not there
    return [FaceRow.withdrawn(row, reason) for row in rows]


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


def num(value) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value
