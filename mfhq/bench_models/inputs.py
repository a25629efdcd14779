"""Inputs of each stage's real shape, built from generated 1080p benchmark clips.

The frames are decoded from clips `mfhq bench --make-clips` would render (one large face, about
550 px wide, on a 1920x1080 frame), so the detector sees what it sees in a benchmark run. The
faces on them are found once by the sample preset's detector (YuNet + dlib's 68 points, whose
weights ship in pip packages) and aligned as the align stage does: crops at the preset's
`align.size` for pose, quality and parsing, 112 px ArcFace-template crops for the embedder, and
the 5 and 68 landmarks in frame and crop pixels for the backends that read them.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mfhq.align import alignment_transform, apply_transform, warp
from mfhq.benchclips import make_clips
from mfhq.errors import MfhqError
from mfhq.models import create_backend

RESOLUTION = "1080p"
CLIPS, SECONDS = 2, 0.16  # 2 clips (two people) of 4 frames: 8 distinct frames and faces, cycled to any batch
EMBED_SIZE = 112  # the embedders' input: ArcFace-template crops (mfhq/models/base.py)
INPUT_DETECTOR = "yunet-dlib68"  # finds the faces the later stages get; real weights ship in pip packages


class NoBenchFaces(MfhqError, RuntimeError):
    """The generated frames gave no face to align (the input detector found none)."""


@dataclass
class StageInputs:
    frames: list[np.ndarray]        # BGR frames, RESOLUTION
    landmarks: np.ndarray           # [P, 5, 2] in frame px, one face per frame
    landmarks68: np.ndarray         # [P, 68, 2] in frame px, NaN where dlib found none
    frame_sizes: np.ndarray         # [P, 2] (width, height)
    crops: np.ndarray               # [P, S, S, 3] BGR, aligned at align.size
    embed_crops: np.ndarray         # [P, 112, 112, 3] BGR, ArcFace template
    landmarks_in_crop: np.ndarray   # [P, 5, 2] in crop px
    landmarks68_in_crop: np.ndarray  # [P, 68, 2] in crop px

    @property
    def crop_size(self) -> int:
        return int(self.crops.shape[1])

    @property
    def frame_text(self) -> str:
        height, width = self.frames[0].shape[:2]
        return f"{width}x{height}"


def decode_frames(folder: Path) -> list[np.ndarray]:
    import av

    frames = []
    for path in make_clips(folder, CLIPS, RESOLUTION, SECONDS):
        with av.open(str(path)) as container:
            frames.extend(frame.to_ndarray(format="bgr24") for frame in container.decode(video=0))
    return frames


def _largest(detections) -> int | None:
    if not len(detections.boxes):
        return None
    boxes = detections.boxes
    return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))


def stage_inputs(template: str = "arcface", crop_size: int = 448) -> StageInputs:
    """Frames, and the largest face of each aligned as the pipeline aligns it."""
    with tempfile.TemporaryDirectory(prefix="mfhq-bench-models-") as folder:
        frames = decode_frames(Path(folder))
    detector = create_backend("detector", INPUT_DETECTOR, working_size=640)
    detector.setup()
    kept, five, dense = [], [], []
    for frame, found in zip(frames, detector.detect(frames)):
        best = _largest(found)
        if best is None:
            continue
        kept.append(frame)
        five.append(found.landmarks[best])
        dense.append(found.landmarks68[best] if found.landmarks68 is not None else np.full((68, 2), np.nan))
    if not kept:
        raise NoBenchFaces(f"no face found on the {len(frames)} generated {RESOLUTION} frames by {INPUT_DETECTOR}")
    matrices = [alignment_transform(points, template, crop_size) for points in five]
    small = [alignment_transform(points, "arcface", EMBED_SIZE) for points in five]
    height, width = kept[0].shape[:2]
    return StageInputs(
        frames=kept, landmarks=np.stack(five).astype(np.float32), landmarks68=np.stack(dense).astype(np.float32),
        frame_sizes=np.tile([width, height], (len(kept), 1)),
        crops=np.stack([warp(f, m, crop_size) for f, m in zip(kept, matrices)]),
        embed_crops=np.stack([warp(f, m, EMBED_SIZE) for f, m in zip(kept, small)]),
        landmarks_in_crop=np.stack([apply_transform(m, p) for m, p in zip(matrices, five)]).astype(np.float32),
        landmarks68_in_crop=np.stack([apply_transform(m, p) for m, p in zip(matrices, dense)]).astype(np.float32),
    )
