"""The batch that flows through the stages, and the Stage contract.

A FaceBatch is one decoded chunk of one clip: its frames and every face detected in them, as
flat arrays over faces. A face is alive while its drop reason is None; each stage works on the
alive faces only and either fills their fields or drops them with a reason. With embed.every > 1
the embed stage may hold a chunk's last frames back (their faces' embeddings wait on a later
frame, embed_schedule.py): the stages after it get them at the head of the clip's next batch.
The clip's last chunk comes `closing` (its runs end there); where the stream ended early, a
closing batch with no frames of its own follows the last one read, for the held frames.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from mfhq.records import Clip


@dataclass
class ClipState:
    """What a stage must remember across the chunks of one clip (the identity anchor)."""

    anchor_sum: np.ndarray | None = None
    last_box: np.ndarray | None = None   # the person's last kept box ...
    last_frame: int = -1                 # ... and its sampled-frame number within the clip
    frames_seen: int = 0                 # sampled frames of this clip before the current chunk
    # Source annotations reused in place of the detector (VFHQ): frames taken from them,
    # frames also checked against the detector, and the summed box IoU of those checks.
    annotated_frames: int = 0
    verified_frames: int = 0
    verified_iou_sum: float = 0.0
    verified_nme_sum: float = 0.0
    verified_matched: int = 0            # checked frames where the detector found a face at all
    # The embedding schedule's run into the next chunk (embed_schedule.Tail), or None, and the
    # frames after its last embedded face (a FaceBatch, each frame one face of the run), or None.
    embed_tail: object = None
    embed_held: "FaceBatch | None" = None


@dataclass
class FaceBatch:
    clip: Clip
    frame_indices: np.ndarray        # [T] indices in the video
    frames: np.ndarray               # [T, H, W, 3] BGR uint8 (or Frames: held-back ones, then a chunk's)
    fps: float
    state: ClipState
    frame_pos: np.ndarray = None     # [F] which frame (0..T-1) each face is in
    face_index: np.ndarray = None    # [F] order within its frame
    boxes: np.ndarray = None         # [F, 4]
    landmarks: np.ndarray = None     # [F, 5, 2]
    landmarks68: np.ndarray = None   # [F, 68, 2] dlib's points where the detector gave them, else NaN
    scores: np.ndarray = None        # [F]
    embeddings: np.ndarray = None    # [F, D]
    embedded_from: np.ndarray = None # [F] the face whose embedder output each face holds (itself, or
                                     # a face of the same track: embed.every > 1; -1: a face of
                                     # the clip's previous batch); None: itself
    embedding_frames: np.ndarray = None  # [F] the video frame index of that face
    similarity: np.ndarray = None    # [F]
    transforms: np.ndarray = None    # [F, 2, 3] source -> crop
    face_size: np.ndarray = None     # [F]
    out_of_frame: np.ndarray = None  # [F] fraction of the aligned crop outside the frame
    pose: np.ndarray = None          # [F, 3]
    quality: np.ndarray = None       # [F]
    drop_reason: list = None         # [F] str | None
    crops: dict = field(default_factory=dict)   # face -> [S, S, 3]
    masks: dict = field(default_factory=dict)   # face -> [S, S]
    closing: bool = False            # the clip's last sampled frames: runs of one face end here

    @property
    def n_faces(self) -> int:
        return 0 if self.scores is None else len(self.scores)

    def alive(self) -> np.ndarray:
        return np.array([i for i, r in enumerate(self.drop_reason) if r is None], dtype=np.int64)

    def drop(self, faces, reason: str) -> None:
        for i in faces:
            if self.drop_reason[i] is None:
                self.drop_reason[i] = reason

    def frames_between(self, start: int, stop: int, copy: bool = False) -> "FaceBatch":
        """Frames start..stop-1 with their faces (the stages' per-face fields as filled so far;
        crops and masks are not carried). copy: the frames copied, so that a part kept for later
        does not hold the whole chunk's frames."""
        faces = np.flatnonzero((self.frame_pos >= start) & (self.frame_pos < stop))
        frames = self.frames[start:stop]
        part = dataclasses.replace(self, frame_indices=self.frame_indices[start:stop].copy(),
                                   frames=frames.copy() if copy else frames, crops={}, masks={}, closing=False)
        for name in _FACE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(part, name, [value[i] for i in faces] if isinstance(value, list) else value[faces].copy())
        part.frame_pos = self.frame_pos[faces] - start
        return part

    def clip_end(self) -> "FaceBatch":
        """A batch of this one's clip with no frames that ends the clip (held-back frames go first)."""
        return dataclasses.replace(self.frames_between(0, 0), closing=True)

    def joined(self, later: "FaceBatch") -> "FaceBatch":
        """This batch's frames then `later`'s, as one batch (`later`'s clip, state and flags):
        only the per-face fields both have are kept."""
        both = dataclasses.replace(later, frame_indices=np.concatenate([self.frame_indices, later.frame_indices]),
                                   frames=Frames([*_parts(self.frames), *_parts(later.frames)]), crops={}, masks={})
        for name in _FACE_FIELDS:
            mine, theirs = getattr(self, name), getattr(later, name)
            if mine is None or theirs is None:
                setattr(both, name, None)
            elif isinstance(mine, list):
                setattr(both, name, mine + theirs)
            else:
                setattr(both, name, np.concatenate([mine, theirs]))
        both.frame_pos = np.concatenate([self.frame_pos, later.frame_pos + len(self.frame_indices)]).astype(np.int64)
        return both


class Frames:
    """Frames of a few arrays (held-back frames, then a chunk's) read as one [T, H, W, 3] array:
    by index, by slice (views), len, shape; copy() joins them. FaceBatch.joined does not copy the
    chunk, so the frames held back cost only themselves."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = [p for p in parts if len(p)] or parts[:1]
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])
        self.shape = (int(self.starts[-1]), *self.parts[0].shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            assert step == 1, "frames are sliced in order"
            return Frames([p[max(start - s, 0):max(stop - s, 0)] for p, s in zip(self.parts, self.starts)])
        index = int(index) + (len(self) if index < 0 else 0)
        part = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.parts[part][index - self.starts[part]]

    def __iter__(self):
        for part in self.parts:
            yield from part

    def copy(self) -> np.ndarray:
        return np.concatenate(self.parts)


def _parts(frames) -> list[np.ndarray]:
    return frames.parts if isinstance(frames, Frames) else [frames]


# FaceBatch fields with one entry per face (frames_between and joined carry them).
_FACE_FIELDS = ("frame_pos", "face_index", "boxes", "landmarks", "landmarks68", "scores", "embeddings",
                "embedded_from", "embedding_frames", "similarity", "transforms", "face_size", "out_of_frame",
                "pose", "quality", "drop_reason")


class Stage:
    """One step. Subclasses load models in setup() and transform the batch in __call__."""

    name = ""

    def setup(self) -> None:
        pass

    @property
    def provenance(self) -> str:
        return self.name

    def __call__(self, batch: FaceBatch) -> FaceBatch:
        raise NotImplementedError

    def call_many(self, batches: list[FaceBatch]) -> list[FaceBatch]:
        """Batches of several clips at once (GPU batching across a shard's clips). The default
        runs them one by one; a model stage overrides it to run one forward pass over all of
        their frames or faces. Must give each batch exactly what __call__ would."""
        return [self(batch) for batch in batches]


class ModelStage(Stage):
    """A stage whose work is one model backend's (`self.backend`, made by the subclass): it loads
    the backend in setup(), names it as its provenance, and runs one clip as a batch of one
    (`call_many` is the one code path, so a clip alone and a clip among others get the same rows)."""

    backend = None

    def setup(self) -> None:
        self.backend.setup()

    @property
    def provenance(self) -> str:
        return self.backend.provenance

    def __call__(self, batch: FaceBatch) -> FaceBatch:
        return self.call_many([batch])[0]
