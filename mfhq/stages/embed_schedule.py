"""Which faces of a clip go through the embedder, and whose embedding the others reuse.

The embedder is the costliest model per face on CPU (SFace ~25 ms), and along a shot where one
person sits in place its embedding barely changes between sampled frames. So with
`embed.every` = k > 1, a clip's sampled frames are split into runs: consecutive sampled frames
that each show exactly one face, overlapping the previous frame's face (box IoU >= `track_iou`)
and looking like it (`track_look`: normalised cross-correlation of 28 px grey thumbnails of the
aligned crops; measured: >= 0.95 between sampled frames of one moving face, <= 0.62 between
two people, so a cut or a swap of people in place breaks the run).
Along a run only the first face, every k-th and the last are embedded; a face between two
embedded ones takes the nearer one's embedding, but only when those two agree (cosine >=
`reuse_similarity`): a cut to another person in the same place (an interview's reverse shot)
makes them disagree, and then every face between them is embedded too. Frames with no face
or several faces (someone walks in) break the run and each of their faces is embedded, so
the identity stage sees real embeddings wherever the choice between people is open.

The plan is the whole clip's, whatever the decode chunks: a run goes on across chunks, its
faces counted from its first, its last face is the one before the frame that breaks it (or the
clip's last). A run that reaches a batch's last frame goes on: its faces after its last k-th one
wait (their frames are held back, ClipState.embed_held: at most k - 1, each with one face) until
the next k-th face or the run's end decides them, and go through the later stages at the head
of the clip's next batch (a `closing` batch at the clip's end). The run's last k-th face is kept
(Tail) and stands at the head of the run in the next batch (VIRTUAL), embedded already. The
chunks of a clip go through one worker in order, so the plan depends only on the clip, never on
the chunk size, on how the shard's clips were grouped (GPU batching) or on the worker: the same
rows for any executor.
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


VIRTUAL = -1  # at a run's head: the run's last k-th face before this batch (Tail), already embedded


@dataclass
class Tail:
    """The last k-th face (embedded) of a run that goes on past a batch: the frames after it are
    held back, and the next batch's first face continues the run from it."""

    box: np.ndarray        # [4]
    look: np.ndarray       # its thumbnail()
    embedding: np.ndarray  # the embedder's output for it
    frame_index: int       # its frame in the video


def runs_of_one_face(batch: FaceBatch, crops: np.ndarray, track_iou: float, track_look: float,
                     tail: Tail | None = None) -> list[list[int]]:
    """Runs (lists of face indices, in frame order) of consecutive sampled frames with exactly one
    face each, every face overlapping the one before it by at least `track_iou` and its aligned
    crop correlating with that one's by at least `track_look`. A run that goes on from the clip's
    previous batch (`tail`) starts with VIRTUAL."""
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
    # A tail the batch's first face does not continue is no run.
    return [run for run in runs if run and run != [VIRTUAL]]


@dataclass
class Plan:
    """A batch's schedule: the faces to embed first, each run's decided part (its faces up to its
    last anchor: for a run that goes on past the batch, its last k-th face), and the first frame
    held back for the next batch (the batch's frame count where none is)."""

    now: list[int]
    runs: list[list[int]]
    held_from: int
    going_on: list[int] | None = None  # the decided part of the run that goes on past the batch


def first_pass(batch: FaceBatch, crops: np.ndarray, every: int, track_iou: float,
               track_look: float, tail: Tail | None = None, closing: bool = False) -> Plan:
    """Now: every face outside a run, and along each run its anchors (its first face, every
    `every`-th, and its last; a VIRTUAL head is embedded already). The run reaching the batch's
    last frame goes on unless `closing` (the clip's end): its faces after its last k-th one
    are held back, undecided."""
    n_frames = len(batch.frame_indices)
    if every <= 1 or not batch.n_faces:
        return Plan(list(range(batch.n_faces)), [], n_frames)
    runs = runs_of_one_face(batch, crops, track_iou, track_look, tail)
    in_runs = {face for run in runs for face in run}
    held_from, going_on = n_frames, None
    if runs and not closing and batch.frame_pos[runs[-1][-1]] == n_frames - 1:
        run = runs[-1]
        decided = (len(run) - 1) // every * every + 1  # up to its last k-th face
        if decided < len(run):
            held_from = int(batch.frame_pos[run[decided]])
        runs[-1] = going_on = run[:decided]
    now = [face for face in range(batch.n_faces) if face not in in_runs]
    for run in runs:
        now += [run[k] for k in _anchor_positions(len(run), every) if run[k] != VIRTUAL]
    return Plan(sorted(now), runs, held_from, going_on)


def next_tail(batch: FaceBatch, crops: np.ndarray, plan: Plan, tail: Tail | None) -> Tail | None:
    """The Tail the clip's next batch continues from: the last k-th face of the run going on."""
    if plan.going_on is None:
        return None
    face = plan.going_on[-1]
    if face == VIRTUAL:
        return tail
    assert batch.embedded_from[face] == face  # an anchor: the embedder's own output
    return Tail(batch.boxes[face].astype(np.float64), thumbnail(crops[face]), batch.embeddings[face].copy(),
                int(batch.frame_indices[batch.frame_pos[face]]))


def _anchor_positions(length: int, every: int) -> list[int]:
    return sorted(set(range(0, length, every)) | {length - 1})


def second_pass(runs: list[list[int]], embeddings: np.ndarray, done: np.ndarray, every: int,
                reuse_similarity: float, tail: Tail | None = None) -> tuple[list[int], dict[int, int]]:
    """After the first pass: (faces to embed as well, face -> the face whose embedding it reuses,
    VIRTUAL for the tail's).

    `embeddings` holds the first pass's rows for faces with `done` set. Between two embedded
    faces of a run's decided part that agree, each face reuses the nearer one's (the earlier on
    a tie)."""
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
