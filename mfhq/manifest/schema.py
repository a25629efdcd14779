"""The manifest contract: manifests/train.parquet, test.parquet, identities.parquet, manifest.json.

One row per sampled face. `crop_path` and `mask_path` are ABSOLUTE paths (the run folder joined
with the run's relative path, resolved when the manifest is written), so a reader with only the
manifest can open the images; `run_dir` says which run each row came from, and `run_crop_path`
keeps the path relative to it, for moving a run: new path = new_run_dir / run_crop_path.
The schema version is in each file's Parquet metadata and in the sidecar; readers refuse others.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST_VERSION = "1"


class ManifestError(RuntimeError):
    """A manifest that cannot be read; the message names the file and the problem."""


def _schema(fields: list[pa.Field], kind: str) -> pa.Schema:
    return pa.schema(fields, metadata={b"mfhq.schema": kind.encode(), b"mfhq.schema_version": MANIFEST_VERSION.encode()})


MANIFEST_SCHEMA = _schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),   # smallest clip key of its merged clips
        pa.field("split", pa.string(), nullable=False),         # train | test
        pa.field("source_split", pa.string()),                  # the source's official split, if any
        pa.field("source", pa.string(), nullable=False),
        pa.field("video_key", pa.string(), nullable=False),     # the source video (YouTube id)
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int32(), nullable=False),
        pa.field("face_index", pa.int16(), nullable=False),
        pa.field("crop_path", pa.string(), nullable=False),     # absolute
        pa.field("mask_path", pa.string()),                     # absolute
        pa.field("run_dir", pa.string(), nullable=False),       # absolute run folder
        pa.field("run_crop_path", pa.string(), nullable=False),  # relative to run_dir
        pa.field("run_mask_path", pa.string()),
        pa.field("landmarks", pa.list_(pa.float32(), 10), nullable=False),  # 5 x (x, y), source px
        pa.field("yaw", pa.float32(), nullable=False),
        pa.field("pitch", pa.float32(), nullable=False),
        pa.field("roll", pa.float32(), nullable=False),
        pa.field("quality", pa.float32(), nullable=False),      # [0, 1], higher is better
        pa.field("pose_cluster", pa.int16(), nullable=False),   # k-means cluster within the identity
        pa.field("sample_rank", pa.int16(), nullable=False),    # order of choice (0: best quality)
        pa.field("short", pa.bool_(), nullable=False),          # identity had < faces_per_identity usable faces
        pa.field("embedding", pa.list_(pa.float32()), nullable=False),  # L2-normalised
        pa.field("provenance", pa.string(), nullable=False),
    ],
    "manifest",
)

# One row per clip that had usable faces: which identity it joined and why.
IDENTITY_SCHEMA = _schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_key", pa.string(), nullable=False),
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("decision", pa.string(), nullable=False),    # own | merged | dedup_kept | dedup_dropped
        pa.field("evidence", pa.string()),                    # JSON edges: [{a, b, by, similarity}]
        pa.field("n_usable", pa.int64(), nullable=False),     # usable faces of this clip
        pa.field("identity_faces", pa.int64(), nullable=False),  # usable faces of its identity
        pa.field("status", pa.string(), nullable=False),      # sampled | short_flagged | short_dropped | duplicate
        pa.field("split", pa.string()),                       # train | test; null when not in the manifest
    ],
    "identities",
)


def read_manifest(path: Path) -> pa.Table:
    """Read train/test/identities Parquet, refusing a missing file or another schema version."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file; make it with `mfhq cluster-sample`")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # a damaged file raises one of several pyarrow errors
        raise ManifestError(f"{path}: not a readable Parquet file ({exc})") from exc
    version = (table.schema.metadata or {}).get(b"mfhq.schema_version", b"?").decode()
    if version != MANIFEST_VERSION:
        raise ManifestError(f"{path}: manifest schema version {version}, this code reads version {MANIFEST_VERSION}; "
                            "rebuild it with `mfhq cluster-sample`")
    return table


def read_sidecar(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise ManifestError(f"{path}: missing; {folder} is not a folder written by `mfhq cluster-sample`")
    meta = json.loads(path.read_text())
    if meta.get("schema_version") != MANIFEST_VERSION:
        raise ManifestError(f"{path}: manifest schema version {meta.get('schema_version')}, "
                            f"this code reads version {MANIFEST_VERSION}")
    return meta
