"""Typed records, the run's vocabulary (clip statuses, drop reasons) and the builders of its rows
(ClipRow, FaceRow: the only ones), which fill the Arrow schemas of mfhq.manifest.run_schema.

A Source yields `Clip` records; extract writes one `clips/` row per clip and one `faces/` row per
detected face (kept or dropped). The schema version travels in each Parquet file's metadata, so
a reader can refuse files it does not understand instead of misreading them.
"""
from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from mfhq import video_file
# The run files' schemas and version are owned by mfhq.manifest; re-exported for the row builders' users.
from mfhq.manifest.run_schema import CLIP_SCHEMA, FACE_SCHEMA  # noqa: F401  (the rows' fields, re-exported)
from mfhq.manifest.schema import RUN_SCHEMA_VERSION as SCHEMA_VERSION  # noqa: F401


class Status:
    """Clip statuses: a clip ends with exactly one of these."""

    OK = "ok"
    EMPTY = "empty"                      # zero-byte or zero-frame file
    MISSING = "missing"                  # the file named by the source does not exist
    DECODE_ERROR = "decode_error"        # no decoder could read it
    TIMEOUT = "timeout"                  # the watchdog stopped a decode or a clip that ran too long
    CRASHED = "crashed"                  # the worker process died (a native crash) on this clip
    NO_FACE = "no_face"                  # frames decoded, but no face detected in any
    TOO_SMALL = "too_small"              # the clip's person was found, but never at the minimum size
    OUT_OF_FRAME = "out_of_frame"        # ... but only with too much of the crop outside the frame
    IDENTITY_SWITCH = "identity_switch"  # faces found, none of them the clip's own person
    LOW_QUALITY = "low_quality"          # every candidate fell under the quality threshold
    ERROR = "error"                      # an unexpected exception in a stage; the reason holds it
    BAD_METADATA = "bad_metadata"        # the source's metadata entry is malformed; the reason names the file and line


CLIP_STATUSES = (
    Status.OK, Status.EMPTY, Status.MISSING, Status.DECODE_ERROR, Status.TIMEOUT, Status.CRASHED, Status.NO_FACE,
    Status.TOO_SMALL, Status.OUT_OF_FRAME, Status.IDENTITY_SWITCH, Status.LOW_QUALITY, Status.ERROR, Status.BAD_METADATA,
)
# Failures a later run may not repeat (a file downloaded later, a worker out of memory, a
# watchdog kill): retried once inside a run, and re-run on demand with `--retry`.
TRANSIENT_STATUSES = (Status.MISSING, Status.CRASHED, Status.TIMEOUT, Status.ERROR)
# Every other status says something about the video itself: a clip that ends with one is done.
FINAL_STATUSES = tuple(s for s in CLIP_STATUSES if s not in TRANSIENT_STATUSES)


class Drop:
    """Why a detected face was not kept (the `drop_reason` of its `faces/` row)."""

    OTHER_IDENTITY = "other_identity"
    TOO_SMALL = "too_small"
    OUT_OF_FRAME = "out_of_frame"
    LOW_QUALITY = "low_quality"
    DECODE_ERROR = "decode_error"  # its clip's video failed to decode part-way: no face of it is kept


# Each drop reason and the stage that drops a face for it (`mfhq stats` groups by stage).
DROP_REASONS: dict[str, str] = {
    Drop.OTHER_IDENTITY: "identity",
    Drop.TOO_SMALL: "align",
    Drop.OUT_OF_FRAME: "align",
    Drop.LOW_QUALITY: "quality",
    Drop.DECODE_ERROR: "decode",
}
# A clip whose faces were all dropped: the most telling reason gives its status (the person was
# there but too small, cut off or too poor), else only other people were there.
_STATUS_OF_ALL_DROPPED = ((Drop.TOO_SMALL, Status.TOO_SMALL), (Drop.OUT_OF_FRAME, Status.OUT_OF_FRAME),
                          (Drop.LOW_QUALITY, Status.LOW_QUALITY))


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
    # mfhq.geometry.RULES ("scaled": by box_space; "celebv-square"; "talkinghead-trunc";
    # "vfhq-downloader"), named by the source so that the worker never calls back into mfhq.sources.
    geometry: str = "scaled"
    # The rate start_frame / end_frame / annotations count frames at, when the source knows it
    # (VFHQ's meta FPS); a video opened at another rate has them retimed.
    frame_fps: float | None = None
    # The source's own id of the clip's person within its video (VFHQ: "P3" for pid 3), where the
    # source annotates one: cluster-sample keeps two person keys of one video apart.
    person_key: str | None = None

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


@dataclass
class Shard:
    """One unit of work: the clips (and the source problems) whose rows go into one file pair."""

    id: str
    keys: list[str]                             # the planned clip keys, in plan (= row) order
    items: list = field(default_factory=list)   # their Clip | SourceProblem records
    # Re-run only these keys and keep the other rows of the finished shard (`--retry`).
    only: frozenset | None = None


def item_key(item) -> str:
    """A Clip's or a SourceProblem's key: `<source>/<clip id>`."""
    return item.key if isinstance(item, Clip) else f"{item.source}/{item.clip_id}"


class ClipRow:
    """The one place that builds a clip's status row (the `clips/` schema as a dict)."""

    @staticmethod
    def failed(clip: Clip, status: str, reason: str | None, provenance: str) -> dict:
        """The row of a clip that failed before or while it was processed (no counts)."""
        if status not in CLIP_STATUSES:
            raise ValueError(f"unknown clip status {status!r}")
        if status == Status.OK:
            raise ValueError("an ok row is built by ClipRow.processed")
        return ClipRow._row(clip, status, reason, provenance)

    @staticmethod
    def problem(item, provenance: str = "none") -> dict:
        """The row of a source entry that never became a clip (a SourceProblem)."""
        clip = Clip(item.source, item.clip_id, Path(""), item.video_key or item.clip_id, split=item.split)
        return ClipRow.failed(clip, item.status, item.reason, provenance)

    @staticmethod
    def processed(clip: Clip, faces: list[dict], provenance: str, *, n_frames_read: int, duration_sec: float,
                  fps: float, width: int, height: int, decoder: str | None, stage_seconds: dict,
                  recovered: list[str] = (), n_frames_detect_skipped: int | None = None,
                  n_frames_verified: int | None = None, annotation_iou: float | None = None,
                  annotation_nme: float | None = None, decode_error: str | None = None, ended: str | None = None,
                  shown: list[str] = ()) -> dict:
        """The row of a clip that was decoded and run through the stages: `ok`, or what its face
        rows say went wrong. `recovered`: the decoder errors it read past; the next four: how the
        source's own faces compared with the detector's, where the source gave them;
        `decode_error`: why decoding stopped part-way (its faces were withdrawn, none kept); `ended`:
        where the video stream ended before sampled frames (the frames before it keep their faces);
        `shown`: how the file is shown where not as stored (turned, non-square pixels: decode_shown.py)."""
        kept = sum(f["kept"] for f in faces)
        status, reason = Status.OK, None
        if decode_error is not None:  # its message lists the decoders' errors already
            status, reason = Status.DECODE_ERROR, decode_error
            if faces:
                reason += f"; none of the {len(faces)} faces of the {n_frames_read} frames read before it is kept"
        elif not faces:
            status, reason = Status.NO_FACE, f"no face in {n_frames_read} sampled frames"
        elif kept == 0:
            reasons = {f["drop_reason"] for f in faces}
            status = next((s for drop, s in _STATUS_OF_ALL_DROPPED if drop in reasons), Status.IDENTITY_SWITCH)
            reason = f"{len(faces)} faces detected, none kept ({', '.join(sorted(reasons))})"
        if ended is not None and decode_error is None:  # said whatever the status: frames the clip lacks
            reason = "; ".join(r for r in (reason, ended) if r)
        if recovered and decode_error is None:  # said whatever the status: the frames came another way
            reason = "; ".join(r for r in (reason, "recovered from: " + "; ".join(recovered)) if r)
        if shown:  # said whatever the status: the frames' geometry differs from the stored pixels'
            reason = "; ".join(r for r in (reason, *shown) if r)
        row = ClipRow._row(clip, status, reason, provenance)
        row.update(n_frames_read=n_frames_read, n_faces_detected=len(faces), n_faces_kept=kept,
                   duration_sec=duration_sec, fps=fps, width=width, height=height, decoder=decoder,
                   n_frames_detect_skipped=n_frames_detect_skipped, n_frames_verified=n_frames_verified,
                   annotation_iou=annotation_iou, annotation_nme=annotation_nme, stage_seconds=stage_seconds)
        return row

    @staticmethod
    def _row(clip: Clip, status: str, reason: str | None, provenance: str) -> dict:
        return {
            "source": clip.source, "clip_id": clip.clip_id, "video_key": clip.video_key,
            "person_key": clip.person_key, "video_path": str(clip.video_path), **video_file.identity(clip.video_path),
            "split": clip.split, "status": status, "reason": reason,
            "n_frames_read": 0, "n_faces_detected": 0, "n_faces_kept": 0,
            "duration_sec": None, "fps": None, "width": None, "height": None, "decoder": None,
            "n_frames_detect_skipped": None, "n_frames_verified": None, "annotation_iou": None, "annotation_nme": None,
            "stage_seconds": None, "provenance": provenance,
            # From the shard's face rows, when the shard is written (mfhq.manifest.clip_means).
            "embedding_sum": None, "embedding_faces": None,
        }


# What the stages measured of one detected face, in `faces/` row order. The last two are filled
# only where the crop is made later (align.crops: materialize).
FaceMeasures = namedtuple("FaceMeasures", "frame_index time_sec face_index det_score bbox landmarks face_size "
                          "identity_similarity out_of_frame yaw pitch roll quality embedding embedding_frame "
                          "landmarks68 crop_digest", defaults=(None, None))


def _measured(value) -> float | None:
    """A face's measure as its row holds it: None where nothing measured it. Never NaN, which
    DuckDB over Parquet orders above every number and cannot find (docs/formats.md)."""
    return None if value is None or math.isnan(value) else float(value)


class FaceRow:
    """The one place that builds a face's row (the `faces/` schema as a dict)."""

    @staticmethod
    def kept(clip: Clip, face: FaceMeasures, crop_path: str, mask_path: str, align_template: str,
             provenance: str) -> dict:
        return FaceRow._row(clip, face, None, crop_path, mask_path, align_template, provenance)

    @staticmethod
    def dropped(clip: Clip, face: FaceMeasures, reason: str, align_template: str, provenance: str) -> dict:
        if reason not in DROP_REASONS:
            raise ValueError(f"unknown drop reason {reason!r}")
        return FaceRow._row(clip, face, reason, None, None, align_template, provenance)

    @staticmethod
    def withdrawn(row: dict, reason: str) -> dict:
        """A face row of a clip that cannot keep its faces after all: a kept face becomes a face
        dropped for `reason`, without crop or mask (a dropped face has none); a dropped face keeps its own."""
        if reason not in DROP_REASONS:
            raise ValueError(f"unknown drop reason {reason!r}")
        if not row["kept"]:
            return row
        return {**row, "kept": False, "drop_reason": reason, "crop_path": None, "mask_path": None,
                "crop_digest": None, "landmarks68": None}

    @staticmethod
    def _row(clip: Clip, face: FaceMeasures, reason: str | None, crop_path: str | None, mask_path: str | None,
             align_template: str, provenance: str) -> dict:
        return {
            "source": clip.source, "clip_id": clip.clip_id, "video_key": clip.video_key,
            "frame_index": face.frame_index, "time_sec": face.time_sec, "face_index": face.face_index,
            "kept": reason is None, "drop_reason": reason,
            "det_score": _measured(face.det_score), "bbox": face.bbox, "landmarks": face.landmarks,
            "face_size": _measured(face.face_size), "identity_similarity": _measured(face.identity_similarity),
            "out_of_frame": _measured(face.out_of_frame), "yaw": _measured(face.yaw), "pitch": _measured(face.pitch),
            "roll": _measured(face.roll), "quality": _measured(face.quality), "embedding": face.embedding,
            "embedding_frame": face.embedding_frame,
            "landmarks68": face.landmarks68, "crop_digest": face.crop_digest,
            "crop_path": crop_path, "mask_path": mask_path, "align_template": align_template,
            "provenance": provenance,
        }
