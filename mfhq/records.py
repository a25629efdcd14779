"""Typed records and their explicit, versioned Arrow schemas.

A Source yields `Clip` records; extract writes one `clips/` row per clip and one `faces/` row per
detected face (kept or dropped). The schema version travels in each Parquet file's metadata, so
a reader can refuse files it does not understand instead of misreading them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pyarrow as pa

# The run files' version and schema builder are owned by mfhq.manifest.schema; the field lists
# stay here, beside the rows they describe.
from mfhq.manifest.schema import RUN_SCHEMA_VERSION as SCHEMA_VERSION
from mfhq.manifest.schema import versioned_schema as _schema

# Clip statuses. A clip ends with exactly one of these.
STATUS_OK = "ok"
CLIP_STATUSES = (
    STATUS_OK,
    "empty",           # zero-byte or zero-frame file
    "missing",         # the file named by the source does not exist
    "decode_error",    # no decoder could read it
    "timeout",         # the watchdog stopped a decode or a clip that ran too long
    "crashed",         # the worker process died (a native crash) on this clip
    "no_face",         # frames decoded, but no face detected in any
    "too_small",       # the clip's person was found, but never at the minimum size
    "out_of_frame",    # the clip's person was found, but only with too much of the crop outside the frame
    "identity_switch",  # faces found, none of them the clip's own person
    "low_quality",     # every candidate fell under the quality threshold
    "error",           # an unexpected exception in a stage; the reason holds it
    "bad_metadata",    # the source's metadata entry is malformed; the reason names the file and line
)

# Face drop reasons.
DROP_REASONS = ("other_identity", "too_small", "low_quality", "align_failed", "out_of_frame")


@dataclass(frozen=True)
class Clip:
    """One unit of work: a range of one video that shows one person."""

    source: str                 # adapter name, e.g. "folder", "vfhq"
    clip_id: str                # unique within the source; safe as a relative path
    video_path: Path
    video_key: str              # the source video (e.g. the YouTube id): identity merges use it
    start_sec: float | None = None
    end_sec: float | None = None
    # Where the clip's person is in the frame, if the source says (x1, y1, x2, y2, in pixels).
    person_box: tuple[float, float, float, float] | None = None
    split: str | None = None    # the source's official split, where it has one
    extra: dict = field(default_factory=dict, compare=False)
    # A range given in frames (0-based, both inclusive) rather than seconds; the fps is only
    # known once the video is open.
    start_frame: int | None = None
    end_frame: int | None = None
    # The frame size (w, h) that person_box and annotations are given in, when it is not the
    # video's own: (1, 1) for normalised boxes, the annotated H x W otherwise. The pipeline
    # rescales them to the real video size once the video is open (by `geometry` below).
    box_space: tuple[float, float] | None = None
    # Faces the source already located (VFHQ's per-frame box + 5 landmarks), reused instead of
    # running the detector on those frames.
    annotations: "FrameAnnotations | None" = field(default=None, compare=False)
    # How the worker maps box, annotations and frame numbers onto the opened video: a rule of
    # mfhq.geometry.RULES ("scaled": by box_space; "celebv-square"; "talkinghead-trunc"), named by
    # the source so that the worker never calls back into mfhq.sources.
    geometry: str = "scaled"
    # The rate start_frame / end_frame / annotations count frames at, when the source knows it
    # (VFHQ's meta FPS); a video opened at another rate has them retimed.
    frame_fps: float | None = None

    @property
    def key(self) -> str:
        """Unique across sources; used for shard planning and file names."""
        return f"{self.source}/{self.clip_id}"


@dataclass(frozen=True)
class FrameAnnotations:
    """One face per frame from a source's metadata: frames [N] (indices in the video read),
    boxes [N, 4] x1, y1, x2, y2 and landmarks [N, 5, 2], in Clip.box_space pixels."""

    frames: tuple[int, ...]
    boxes: tuple[tuple[float, float, float, float], ...]
    landmarks: tuple[tuple[float, ...], ...]  # 10 values each: 5 x (x, y)

    @cached_property
    def row_of_frame(self) -> dict[int, int]:
        """Frame index -> row; built once per clip, not once per decoded chunk."""
        return {frame: i for i, frame in enumerate(self.frames)}


FACE_SCHEMA = _schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_key", pa.string(), nullable=False),
        pa.field("frame_index", pa.int32(), nullable=False),    # index in the decoded video
        pa.field("time_sec", pa.float32(), nullable=False),
        pa.field("face_index", pa.int16(), nullable=False),     # detection order within the frame
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("drop_reason", pa.string()),                   # null when kept
        pa.field("det_score", pa.float32(), nullable=False),
        pa.field("bbox", pa.list_(pa.float32(), 4), nullable=False),        # x1, y1, x2, y2 (source px)
        pa.field("landmarks", pa.list_(pa.float32(), 10), nullable=False),  # 5 x (x, y): eyes, nose, mouth corners
        pa.field("face_size", pa.float32()),       # source extent (px) of the aligned crop
        pa.field("out_of_frame", pa.float32()),    # fraction of the aligned crop outside the source frame
        pa.field("identity_similarity", pa.float32()),  # cosine to the clip's person
        pa.field("yaw", pa.float32()),
        pa.field("pitch", pa.float32()),
        pa.field("roll", pa.float32()),
        pa.field("quality", pa.float32()),         # higher is better, in [0, 1]
        pa.field("embedding", pa.list_(pa.float32())),  # L2-normalised identity embedding
        # The frame whose face went through the embedder for this face's embedding: its own
        # frame_index, or another frame of the same one-face track (embed.every > 1).
        pa.field("embedding_frame", pa.int32()),
        pa.field("crop_path", pa.string()),        # relative to the run folder; null when dropped
        pa.field("mask_path", pa.string()),
        pa.field("align_template", pa.string()),
        pa.field("provenance", pa.string(), nullable=False),  # models and weight hashes
    ],
    "faces",
)

CLIP_SCHEMA = _schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_key", pa.string(), nullable=False),
        pa.field("video_path", pa.string(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),                # human-readable detail when not ok
        pa.field("n_frames_read", pa.int32(), nullable=False),
        pa.field("n_faces_detected", pa.int32(), nullable=False),
        pa.field("n_faces_kept", pa.int32(), nullable=False),
        pa.field("duration_sec", pa.float32()),         # of the decoded range
        pa.field("fps", pa.float32()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("decoder", pa.string()),
        # Frames whose face came from the source's own annotations (detector skipped), the
        # subset also run through the detector as a check, and their mean box IoU.
        pa.field("n_frames_detect_skipped", pa.int32()),
        pa.field("n_frames_verified", pa.int32()),
        pa.field("annotation_iou", pa.float32()),
        # Mean landmark distance between the two on those frames, over the inter-ocular distance:
        # it exposes a landmark order that differs from ours, which would mirror the aligned crops.
        pa.field("annotation_nme", pa.float32()),
        # Seconds of the clip's processing per stage; they add up to its time in the worker.
        # "decode" is the time the stages waited for frames (with run.decode_ahead, decoding
        # runs in a thread beside the models and only its excess shows).
        pa.field("stage_seconds", pa.map_(pa.string(), pa.float32())),
        pa.field("provenance", pa.string(), nullable=False),
    ],
    "clips",
)


# Failures a later run may not repeat (a file downloaded later, a worker out of memory, a
# watchdog kill): retried once inside a run, and re-run on demand with `--retry`. The others
# say something about the video itself and are final.
TRANSIENT_STATUSES = ("missing", "crashed", "timeout", "error")
PERMANENT_STATUSES = ("decode_error", "empty", "no_face", "too_small", "bad_metadata")


class ClipRow:
    """The one place that builds a clip's status row (the `clips/` schema as a dict)."""

    @staticmethod
    def failed(clip: Clip, status: str, reason: str | None, provenance: str) -> dict:
        """The status row of a clip that produced no faces (an error, or nothing found); the
        pipeline fills in the counts of a processed clip on top of it."""
        if status not in CLIP_STATUSES:
            raise ValueError(f"unknown clip status {status!r}")
        return {
            "source": clip.source,
            "clip_id": clip.clip_id,
            "video_key": clip.video_key,
            "video_path": str(clip.video_path),
            "split": clip.split,
            "status": status,
            "reason": reason,
            "n_frames_read": 0,
            "n_faces_detected": 0,
            "n_faces_kept": 0,
            "duration_sec": None,
            "fps": None,
            "width": None,
            "height": None,
            "decoder": None,
            "n_frames_detect_skipped": None,
            "n_frames_verified": None,
            "annotation_iou": None,
            "annotation_nme": None,
            "stage_seconds": None,
            "provenance": provenance,
        }

    @staticmethod
    def problem(item, provenance: str = "none") -> dict:
        """The row of a source entry that never became a clip (a SourceProblem)."""
        clip = Clip(item.source, item.clip_id, Path(""), item.video_key or item.clip_id, split=item.split)
        return ClipRow.failed(clip, item.status, item.reason, provenance)
