"""Which faces of a chunk go through the embedder, and whose embedding the others reuse.

The embedder is the costliest model per face on CPU (SFace ~25 ms), and along a shot where one
person sits in place its embedding barely changes between sampled frames. So with
`embed.every` = k > 1, a chunk's frames are split into runs: consecutive sampled frames that
each show exactly one face, overlapping the previous frame's face (box IoU >= `track_iou`) and
looking like it (`track_look`: normalised cross-correlation of 28 px grey thumbnails of the
aligned crops; measured: >= 0.95 between sampled frames of one moving face, <= 0.62 between
two people, so a cut or a swap of people in place breaks the run).
Along a run only the first face, every k-th and the last are embedded; a face between two
embedded ones takes the nearer one's embedding, but only when those two agree (cosine >=
`reuse_similarity`): a cut to another person in the same place (an interview's reverse shot)
makes them disagree, and then every face between them is embedded too. Frames with no face
or several faces (someone walks in) break the run and each of their faces is embedded, so
the identity stage sees real embeddings wherever the choice between people is open.

Runs never cross chunks, so the plan depends only on the chunk, never on how the shard's
clips were grouped (GPU batching) or on the worker: the same rows for any executor.
"""
from __future__ import annotations

import numpy as np

from mfhq.stages.base import FaceBatch
from mfhq.stages.identity import box_iou


def thumbnail(crop: np.ndarray) -> np.ndarray:
    """A 28 px grey thumbnail of an aligned crop, zero mean and unit norm (dot product = NCC)."""
    import cv2

    grey = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), (28, 28), interpolation=cv2.INTER_AREA)
    grey = grey.astype(np.float64).ravel()
    grey -= grey.mean()
    return grey / max(float(np.linalg.norm(grey)), 1e-9)


def runs_of_one_face(batch: FaceBatch, crops: np.ndarray, track_iou: float, track_look: float) -> list[list[int]]:
    """Runs (lists of face indices, in frame order) of consecutive sampled frames with exactly one
    face each, every face overlapping the one before it by at least `track_iou` and its aligned
    crop correlating with that one's by at least `track_look`."""
    counts = np.bincount(batch.frame_pos, minlength=len(batch.frame_indices)) if batch.n_faces else []
    first_face = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int) if len(counts) else []
    runs: list[list[int]] = []
    current: list[int] = []  # a run of the frames just before this one (each of them one face)
    previous_look = None
    for pos, count in enumerate(counts):
        if count != 1:
            if current:
                runs.append(current)
            current = []
            continue
        face = int(first_face[pos])
        look = thumbnail(crops[face])
        if current:
            previous = current[-1]
            overlap = box_iou(batch.boxes[previous].astype(np.float64), batch.boxes[face][None].astype(np.float64))[0]
            if overlap < track_iou or float(previous_look @ look) < track_look:
                runs.append(current)
                current = []
        current.append(face)
        previous_look = look
    if current:
        runs.append(current)
    return runs


def first_pass(batch: FaceBatch, crops: np.ndarray, every: int, track_iou: float,
               track_look: float) -> tuple[list[int], list[list[int]]]:
    """(faces to embed now, the runs). Now: every face outside a run of 3 or more, and along each
    such run its first face, every `every`-th and its last."""
    if every <= 1 or not batch.n_faces:
        return list(range(batch.n_faces)), []
    runs = [run for run in runs_of_one_face(batch, crops, track_iou, track_look) if len(run) > 2]
    in_runs = {face for run in runs for face in run}
    now = [face for face in range(batch.n_faces) if face not in in_runs]
    for run in runs:
        now += [run[k] for k in _anchor_positions(len(run), every)]
    return sorted(now), runs


def _anchor_positions(length: int, every: int) -> list[int]:
    return sorted(set(range(0, length, every)) | {length - 1})


def second_pass(runs: list[list[int]], embeddings: np.ndarray, done: np.ndarray, every: int,
                reuse_similarity: float) -> tuple[list[int], dict[int, int]]:
    """After the first pass: (faces to embed as well, face -> the face whose embedding it reuses).

    `embeddings` holds the first pass's rows for faces with `done` set. Between two embedded
    faces of a run that agree, each face reuses the nearer one's (the earlier on a tie)."""
    more: list[int] = []
    reuse: dict[int, int] = {}
    for run in runs:
        anchors = _anchor_positions(len(run), every)
        for a, b in zip(anchors[:-1], anchors[1:]):
            if b - a < 2:
                continue
            fa, fb = run[a], run[b]
            assert done[fa] and done[fb]
            if float(embeddings[fa] @ embeddings[fb]) >= reuse_similarity:
                for k in range(a + 1, b):
                    reuse[run[k]] = fa if k - a <= b - k else fb
            else:
                more += run[a + 1:b]
    return more, reuse
