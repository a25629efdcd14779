"""Which faces of a chunk go through the embedder, and whose embedding the others reuse.

The embedder is the costliest model per face on CPU (SFace ~25 ms), and along a shot where one
person sits in place its embedding barely changes between sampled frames. So with
`embed.every` = k > 1, a chunk's frames are split into runs: consecutive sampled frames that
each show exactly one face, overlapping the previous frame's face (box IoU >= `track_iou`).
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


def runs_of_one_face(batch: FaceBatch, track_iou: float) -> list[list[int]]:
    """Runs (lists of face indices, in frame order) of consecutive sampled frames with exactly one
    face each, every face overlapping the one before it by at least `track_iou`."""
    counts = np.bincount(batch.frame_pos, minlength=len(batch.frame_indices)) if batch.n_faces else []
    first_face = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else []
    runs: list[list[int]] = []
    current: list[int] = []
    for pos, count in enumerate(counts):
        if count != 1:
            if current:
                runs.append(current)
            current = []
            continue
        face = int(first_face[pos])
        if current:
            previous = current[-1]
            linked = (batch.frame_pos[previous] == pos - 1 and
                      box_iou(batch.boxes[previous].astype(np.float64),
                              batch.boxes[face][None].astype(np.float64))[0] >= track_iou)
            if not linked:
                runs.append(current)
                current = []
        current.append(face)
    if current:
        runs.append(current)
    return runs


def first_pass(batch: FaceBatch, every: int, track_iou: float) -> tuple[list[int], list[list[int]]]:
    """(faces to embed now, the runs). Now: every face outside a run of 3 or more, and along each
    such run its first face, every `every`-th and its last."""
    if every <= 1 or not batch.n_faces:
        return list(range(batch.n_faces)), []
    runs = [run for run in runs_of_one_face(batch, track_iou) if len(run) > 2]
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
