"""The contracts on disk, in one place: schema versions, the manifest's Arrow schemas, the error.

Two families of files, each with its own version in every Parquet file's metadata
(`mfhq.schema_version`) so readers refuse files they would misread:

- run files (`RUN/faces/*.parquet`, `RUN/clips/*.parquet`), version `RUN_SCHEMA_VERSION`; their
  field lists are in `mfhq.manifest.run_schema` (built with `versioned_schema`; `mfhq.records` builds the rows);
- manifests (`train.parquet`, `test.parquet`, `identities.parquet` + `manifest.json`), version
  `MANIFEST_VERSION`, defined here and documented in docs/manifests.md.

Paths. `crop_path` / `mask_path` mean the same in `faces/` and in the manifests: relative to the
root of the run that made the face. A manifest row names that run in `run`; the sidecar's `runs`
list records each run's folder absolutely and relative to the manifest folder, so the images are
found after the manifest folder is moved, and after manifests and runs are moved together
(`mfhq.manifest.reader.ManifestFolder.resolve`).
"""
from __future__ import annotations

import pyarrow as pa

from mfhq.errors import MfhqError

RUN_SCHEMA_VERSION = "8"  # 2: clip rows count frames whose faces came from source metadata;
                          # 3: faces record the fraction of their aligned crop outside the frame
                          # 4: faces record the frame their embedding was computed on
                          # 5: faces record landmarks68 and crop_digest (align.crops: materialize)
                          # 6: clip rows record their usable faces' embedding sum and count
                          # 7: clip rows record the source's person id within the video (person_key)
                          # 8: clip rows record the video file as read (size, mtime, digest of its ends)
# Older run versions still read, with the columns they lack (NULL in the views): a run started
# before an additive change resumes and curates with the newer code.
_MATERIALIZE_COLUMNS = frozenset({"landmarks68", "crop_digest"})
_SUM_COLUMNS = frozenset({"embedding_sum", "embedding_faces"})
_PERSON_COLUMNS = frozenset({"person_key"})  # null: the clips of such a run merge as if their source had none
# null: a re-run cannot tell whether such a clip's video changed since (it says how many it cannot check)
_FILE_COLUMNS = frozenset({"video_bytes", "video_mtime_ns", "video_digest"})
RUN_READABLE = {"3": frozenset({"embedding_frame"}) | _MATERIALIZE_COLUMNS | _SUM_COLUMNS | _PERSON_COLUMNS | _FILE_COLUMNS,
                "4": _MATERIALIZE_COLUMNS | _SUM_COLUMNS | _PERSON_COLUMNS | _FILE_COLUMNS,
                "5": _SUM_COLUMNS | _PERSON_COLUMNS | _FILE_COLUMNS, "6": _PERSON_COLUMNS | _FILE_COLUMNS,
                "7": _FILE_COLUMNS, RUN_SCHEMA_VERSION: frozenset()}
MANIFEST_VERSION = "3"    # 2: crop/mask paths relative to the run (as in faces/), `run` names it
                          # 3: rows carry face_size (the crop's source extent: < align.size, upscaled)
# Older manifest versions still read, with the columns they lack as NULLs (as for runs above): a
# folder written before an additive change trains and re-splits without being rebuilt.
MANIFEST_READABLE = {"2": frozenset({"face_size"}), MANIFEST_VERSION: frozenset()}
SIDECAR = "manifest.json"
SPLITS = ("train", "test")


class ManifestError(MfhqError, RuntimeError):
    """A run or manifest file that cannot be read as the contract says; the message names the
    file and the problem (and, where there is one, the remedy)."""


class SchemaVersionError(ManifestError):
    """A Parquet file written by another schema version than this code reads."""


def check_runs_once(path, sidecar: dict) -> dict:
    """The sidecar, unless its `runs` list one run folder twice: a `mfhq cluster-sample` that took a
    run given twice (`--run R --run ./R`) wrote every sampled face of it several times over (four
    for two listings), and every reader would train, split and count those copies as faces."""
    names: dict[str, list[str]] = {}
    for entry in sidecar.get("runs") or []:
        if isinstance(entry, dict) and entry.get("run_dir"):
            names.setdefault(str(entry["run_dir"]), []).append(str(entry.get("name")))
    doubled = {run: listed for run, listed in names.items() if len(listed) > 1}
    if doubled:
        run, listed = next(iter(doubled.items()))
        raise ManifestError(f"{path}: lists run {run} {len(listed)} times (as {', '.join(listed)}): it was built from "
                            f"a run given twice, so every sampled face of it is in the manifest more than once. "
                            "Rebuild it with `mfhq cluster-sample`, giving each --run once (same --manifest)")
    return sidecar


def versioned_schema(fields: list[pa.Field], kind: str, version: str = RUN_SCHEMA_VERSION) -> pa.Schema:
    return pa.schema(fields, metadata={b"mfhq.schema": kind.encode(), b"mfhq.schema_version": version.encode()})


MANIFEST_SCHEMA = versioned_schema(
    [
        pa.field("identity_id", pa.string(), nullable=False),   # smallest clip key of its merged clips
        pa.field("split", pa.string(), nullable=False),         # train | test
        pa.field("source_split", pa.string()),                  # the source's official split, if any
        pa.field("source", pa.string(), nullable=False),
        pa.field("video_key", pa.string(), nullable=False),     # the source video (YouTube id)
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int32(), nullable=False),
        pa.field("face_index", pa.int16(), nullable=False),
        pa.field("run", pa.string(), nullable=False),           # name of the run in the sidecar's `runs`
        pa.field("crop_path", pa.string(), nullable=False),     # relative to that run's folder, as in faces/
        pa.field("mask_path", pa.string()),                     # idem
        pa.field("landmarks", pa.list_(pa.float32(), 10), nullable=False),  # 5 x (x, y), source px
        pa.field("face_size", pa.float32()),                    # source px the crop covers; null: version 2
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
    "manifest", MANIFEST_VERSION,
)

# One row per clip that had usable faces: which identity it joined and why.
IDENTITY_SCHEMA = versioned_schema(
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
        # the source's official split of the clip, if any; absent from files written before it was
        # recorded (still version 3: no reader needs it; `mfhq split` warns under split: official)
        pa.field("source_split", pa.string()),
    ],
    "identities", MANIFEST_VERSION,
)


def check_version(path, metadata: dict | None, expected: str, remedy: str, what: str = "run",
                  readable=()) -> str:
    """Refuse a file whose Parquet metadata names another schema version than `expected` (or one
    of `readable`); returns the version."""
    version = (metadata or {}).get(b"mfhq.schema_version", b"?").decode()
    if version != expected and version not in readable:
        older = sorted(set(readable) - {expected})
        also = f" (and {', '.join(older)})" if older else ""
        raise SchemaVersionError(f"{path}: {what} schema version {version}, this code reads version {expected}{also}; {remedy}")
    return version


def lacking(schema: pa.Schema, version: str, columns: list[str] | None) -> list[str]:
    """The manifest columns (of `columns`, or all) that a file of an older readable version never had."""
    if (schema.metadata or {}).get(b"mfhq.schema") != b"manifest":
        return []  # identities.parquet has lost nothing
    wanted = MANIFEST_SCHEMA.names if columns is None else columns
    return [c for c in wanted if c in MANIFEST_READABLE[version] and c not in schema.names]


def fill_lacking(table: pa.Table, lacks: list[str], columns: list[str] | None) -> pa.Table:
    """`table` with the `lacks` columns as NULLs of their type, in the order asked for (or the schema's)."""
    if not lacks:
        return table
    for name in lacks:
        field = MANIFEST_SCHEMA.field(name)
        table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(columns if columns is not None else [n for n in MANIFEST_SCHEMA.names if n in table.column_names])
