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

A run goes on into the next chunk: the clip's state keeps the chunk's last face when its frame
shows that face alone (it always went through the embedder: a run's last face does, and so does
a face outside runs), and the next chunk's first face continues that run when it overlaps and
looks like it. That face then stands at the run's head (VIRTUAL) as an embedded anchor, so a
chunk boundary costs no extra embedder call. The chunks of a clip go through one worker in
order, so the plan depends only on the clip and the chunk size, never on how the shard's clips
were grouped (GPU batching) or on the worker: the same rows for any executor.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfhq.geometry import box_iou
from mfhq.stages.base import FaceBatch


def thumbnail(crop: np.ndarray) -> np.ndarray:
    """A 28 px grey thumbnail of an aligned crop, zero mean and unit norm (dot product = NCC)."""
    import cv2

    grey = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), (28, 28), interpolation=cv2.INTER_AREA)
    grey = grey.astype(np.float64).ravel()
    grey -= grey.mean()
    return grey / max(float(np.linalg.norm(grey)), 1e-9)


VIRTUAL = -1  # at a run's head: the previous chunk's last face (Tail), already embedded


@dataclass
class Tail:
    """A chunk's last face, alone in the chunk's last sampled frame, for the next chunk's run."""

    box: np.ndarray        # [4]
    look: np.ndarray       # its thumbnail()
    embedding: np.ndarray  # the embedder's output for it
    frame_index: int       # its frame in the video


def runs_of_one_face(batch: FaceBatch, crops: np.ndarray, track_iou: float, track_look: float,
                     tail: Tail | None = None) -> list[list[int]]:
    """Runs (lists of face indices, in frame order) of consecutive sampled frames with exactly one
    face each, every face overlapping the one before it by at least `track_iou` and its aligned
    crop correlating with that one's by at least `track_look`. A run that continues the previous
    chunk's `tail` starts with VIRTUAL."""
    counts = np.bincount(batch.frame_pos, minlength=len(batch.frame_indices)) if batch.n_faces else []
    first_face = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int) if len(counts) else []
    runs: list[list[int]] = []
    current: list[int] = [VIRTUAL] if tail is not None else []  # the frames just before this one
    previous_box, previous_look = (tail.box, tail.look) if tail is not None else (None, None)
    for pos, count in enumerate(counts):
        if count != 1:
            runs.append(current)
            current = []
            continue
        face = int(first_face[pos])
        box, look = batch.boxes[face].astype(np.float64), thumbnail(crops[face])
        if current:
            overlap = box_iou(np.asarray(previous_box, np.float64), box[None])[0]
            if overlap < track_iou or float(previous_look @ look) < track_look:
                runs.append(current)
                current = []
        current.append(face)
        previous_box, previous_look = box, look
    runs.append(current)
    # A tail the chunk's first face does not continue is no run.
    return [run for run in runs if run and run != [VIRTUAL]]


def chunk_tail(batch: FaceBatch, crops: np.ndarray) -> Tail | None:
    """The Tail the next chunk of this clip may continue from: the face alone in the chunk's last
    sampled frame, if the embedder embedded it (it always did; checked all the same)."""
    if not batch.n_faces:
        return None
    last = len(batch.frame_indices) - 1
    faces = np.flatnonzero(batch.frame_pos == last)
    if len(faces) != 1 or batch.embedded_from[faces[0]] != faces[0]:
        return None
    face = int(faces[0])
    return Tail(batch.boxes[face].astype(np.float64), thumbnail(crops[face]), batch.embeddings[face].copy(),
                int(batch.frame_indices[last]))


def first_pass(batch: FaceBatch, crops: np.ndarray, every: int, track_iou: float,
               track_look: float, tail: Tail | None = None) -> tuple[list[int], list[list[int]]]:
    """(faces to embed now, the runs). Now: every face outside a run of 3 or more (VIRTUAL
    counted), and along each such run its first face, every `every`-th and its last (a VIRTUAL
    head is embedded already)."""
    if every <= 1 or not batch.n_faces:
        return list(range(batch.n_faces)), []
    runs = [run for run in runs_of_one_face(batch, crops, track_iou, track_look, tail) if len(run) > 2]
    in_runs = {face for run in runs for face in run}
    now = [face for face in range(batch.n_faces) if face not in in_runs]
    for run in runs:
        now += [run[k] for k in _anchor_positions(len(run), every) if run[k] != VIRTUAL]
    return sorted(now), runs


def _anchor_positions(length: int, every: int) -> list[int]:
    return sorted(set(range(0, length, every)) | {length - 1})


def second_pass(runs: list[list[int]], embeddings: np.ndarray, done: np.ndarray, every: int,
                reuse_similarity: float, tail: Tail | None = None) -> tuple[list[int], dict[int, int]]:
    """After the first pass: (faces to embed as well, face -> the face whose embedding it reuses,
    VIRTUAL for the tail's).

    `embeddings` holds the first pass's rows for faces with `done` set. Between two embedded
    faces of a run that agree, each face reuses the nearer one's (the earlier on a tie)."""
    def embedding(face: int) -> np.ndarray:
        assert face == VIRTUAL or done[face]
        return tail.embedding if face == VIRTUAL else embeddings[face]

    more: list[int] = []
    reuse: dict[int, int] = {}
    for run in runs:
        anchors = _anchor_positions(len(run), every)
        for a, b in zip(anchors[:-1], anchors[1:]):
            if b - a < 2:
                continue
            fa, fb = run[a], run[b]
            if float(embedding(fa) @ embedding(fb)) >= reuse_similarity:
                for k in range(a + 1, b):
                    reuse[run[k]] = fa if k - a <= b - k else fb
            else:
                more += run[a + 1:b]
    return more, reuse
