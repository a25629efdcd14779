"""The run files' Arrow schemas: one row per detected face (`RUN/faces/`), one per clip (`RUN/clips/`).

The version they carry is `mfhq.manifest.schema.RUN_SCHEMA_VERSION`; `mfhq.records` builds the
rows (its builders fill exactly these fields) and re-exports both schemas.
"""
from __future__ import annotations

import pyarrow as pa

from mfhq.manifest.schema import versioned_schema as _schema

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
        pa.field("det_score", pa.float32()),  # null: no detector scored it (a source's annotation)
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
        # align.crops: materialize only (else null): what `mfhq materialize` needs to make the crop
        # and mask later. The detector's 68 points (68 x (x, y), source px) where it gave them, and
        # the blake2b-64 hex digest of the aligned crop's pixels, which the later crop must match.
        pa.field("landmarks68", pa.list_(pa.float32())),
        pa.field("crop_digest", pa.string()),
        # Relative to the run folder; null when dropped. With align.crops: materialize the file is
        # written by `mfhq materialize` for the faces a manifest samples, and for no other.
        pa.field("crop_path", pa.string()),
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
        # The source's own id of the clip's person within its video (VFHQ's P<pid>), null where the
        # source has none: cluster-sample never joins two person keys of one video into one identity.
        pa.field("person_key", pa.string()),
        pa.field("video_path", pa.string(), nullable=False),
        # The file as extract read it (mfhq.video_file): a re-run names the clips whose video has
        # changed since, and `--retry changed` extracts them again. Null where no file was read.
        pa.field("video_bytes", pa.int64()),
        pa.field("video_mtime_ns", pa.int64()),
        pa.field("video_digest", pa.string()),   # blake2b of the size and the file's first and last 64 KiB
        pa.field("split", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),                # human-readable detail when not ok
        pa.field("n_frames_read", pa.int32(), nullable=False),
        pa.field("n_faces_detected", pa.int32(), nullable=False),
        pa.field("n_faces_kept", pa.int32(), nullable=False),
        pa.field("duration_sec", pa.float32()),         # seconds of video sampled (VideoInfo.sampled_span)
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
        # The identity embeddings of the clip's usable faces (each embedder output once) summed,
        # and their count (0: none; mfhq.manifest.clip_means): cluster-sample's clip means
        # without reading every face's embedding.
        pa.field("embedding_sum", pa.list_(pa.float32())),
        pa.field("embedding_faces", pa.int32()),
        pa.field("provenance", pa.string(), nullable=False),
    ],
    "clips",
)
