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

from pathlib import Path

import pyarrow as pa

from mfhq.errors import MfhqError

RUN_SCHEMA_VERSION = "9"  # 2: clip rows count frames whose faces came from source metadata;
                          # 3: faces record the fraction of their aligned crop outside the frame
                          # 4: faces record the frame their embedding was computed on
                          # 5: faces record landmarks68 and crop_digest (align.crops: materialize)
                          # 6: clip rows record their usable faces' embedding sum and count
                          # 7: clip rows record the source's person id within the video (person_key)
                          # 8: clip rows record the video file as read (size, mtime, digest of its ends)
                          # 9: a face no detector scored has a NULL det_score (version 8 and older: NaN)
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
                "7": _FILE_COLUMNS, "8": frozenset(), RUN_SCHEMA_VERSION: frozenset()}
# Versions whose faces hold NaN for "no detector score": the views read it as NULL (see views.py).
NAN_SCORE_VERSIONS = frozenset({"3", "4", "5", "6", "7", "8"})
MANIFEST_VERSION = "3"    # 2: crop/mask paths relative to the run (as in faces/), `run` names it
                          # 3: rows carry face_size (the crop's source extent: < align.size, upscaled)
# Older manifest versions still read, with the columns they lack as NULLs (as for runs above): a
# folder written before an additive change trains and re-splits without being rebuilt.
MANIFEST_READABLE = {"2": frozenset({"face_size"}), MANIFEST_VERSION: frozenset()}
SIDECAR = "manifest.json"
SPLITS = ("train", "test")
IDENTITIES = "identities.parquet"


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


def contract_of(schema: pa.Schema, kind: str | None = None) -> pa.Schema:
    """The schema a manifest folder's Parquet file is held to: that of the `kind` it was read as
    (check_kind), else of the kind its metadata names: identities.parquet's own, else the rows'."""
    kind = kind or (schema.metadata or {}).get(b"mfhq.schema", b"").decode()
    return IDENTITY_SCHEMA if kind == "identities" else MANIFEST_SCHEMA


# What each kind of our Parquet files holds, as the messages name it: every writer of ours puts the
# kind in the file's metadata (`mfhq.schema`, versioned_schema), the one mark that tells them apart.
HOLDS = {"manifest": "manifest rows (train/test: one per sampled face)",
         "identities": "identities rows (identities.parquet: one per clip)",
         "faces": "a run's faces/ shard (one row per detected face)", "clips": "a run's clips/ shard (one row per clip)"}


def check_kind(path, schema: pa.Schema, asked: str | None = None) -> str:
    """Refuse a file that holds another kind of rows than the one `asked` for (by default the kind
    its name says: identities.parquet the identities, any other name the manifest rows), before its
    version is read (run files count versions of their own); returns the kind. Without it, an
    identities file (or a run's faces/ shard) saved as train.parquet read as whatever its columns
    allowed, and failed, if at all, only where a caller asked for a column it lacks. A file without
    the mark (none of ours) is held to the kind asked for and its columns checked as that."""
    asked = asked or ("identities" if Path(path).name == IDENTITIES else "manifest")
    held = (schema.metadata or {}).get(b"mfhq.schema", b"").decode()
    if held and held != asked:
        what = HOLDS.get(held, f"mfhq.schema {held!r}")
        raise ManifestError(f"{path}: holds {what}, not the {HOLDS[asked]} asked for (its metadata's mfhq.schema is "
                            f"{held!r}, not {asked!r}): a file copied or renamed over another; give the {asked} file "
                            "`mfhq cluster-sample` wrote, or rebuild the folder with it")
    return asked


def reads_as(found: pa.DataType, expected: pa.DataType) -> bool:
    """Whether a column stored as `found` reads as the contract's `expected` type with every value
    unchanged: the one rule of every reader of our Parquet (run shards and manifests alike).

    Lenient where the values come back exactly and only their layout differs: large_string for a
    string; a dictionary-encoded column (pandas' categoricals) of a type that reads as `expected`;
    a large or fixed-size list, or one whose item field is named or marked nullable otherwise
    (other writers' conventions), for a list; a narrower number of the same kind (int16 for int32:
    every value fits). Strict where the values would change or lose what the contract promises: a
    wider number or another kind (float64 rounds as float32, int64 may not fit int16), a string for
    a number or bool (DuckDB would cast it, or fail far from the file), binary for a string (it need
    not be UTF-8), and a fixed-size list (the 5 landmark points) of another size or stored as a list
    of any length (a row could hold 4 points). Nullability is no part of the type."""
    if found.equals(expected):
        return True
    if pa.types.is_dictionary(found):
        return reads_as(found.value_type, expected)
    if pa.types.is_string(expected):
        return pa.types.is_large_string(found)
    if pa.types.is_list(expected):
        lists = (pa.types.is_list(found) or pa.types.is_large_list(found) or pa.types.is_fixed_size_list(found))
        return lists and reads_as(found.value_type, expected.value_type)
    if pa.types.is_fixed_size_list(expected):
        return (pa.types.is_fixed_size_list(found) and found.list_size == expected.list_size
                and reads_as(found.value_type, expected.value_type))
    for kind in (pa.types.is_signed_integer, pa.types.is_unsigned_integer, pa.types.is_floating):
        if kind(expected) and kind(found):
            return found.bit_width <= expected.bit_width
    return False


def retyped(schema: pa.Schema, expected: pa.Schema) -> list[str]:
    """`'name' is FOUND, expected EXPECTED` for each column of `expected` that `schema` holds in a
    type that does not read as the expected one (reads_as); columns it lacks are for the caller."""
    return [f"{f.name!r} is {schema.field(f.name).type}, expected {f.type}" for f in expected
            if f.name in schema.names and not reads_as(schema.field(f.name).type, f.type)]


def check_types(path, schema: pa.Schema, kind: str | None = None) -> pa.Schema:
    """Refuse a manifest folder's file whose columns are not of its contract's types (reads_as),
    naming every such column in one error; returns the contract (contract_of). Every readable
    version has these types (version 2 only lacks face_size): a column a file lacks is no type
    error here, and columns outside the contract are left alone."""
    expected = contract_of(schema, kind)
    wrong = retyped(schema, expected)
    if wrong:
        kind = expected.metadata[b"mfhq.schema"].decode()
        raise ManifestError(f"{path}: column(s) of another type than the {kind} schema's: {'; '.join(wrong)}. It was "
                            "rewritten since `mfhq cluster-sample` wrote it (by hand or by a tool such as pandas), and "
                            f"would be misread; rebuild {Path(path).parent} with `mfhq cluster-sample`")
    return expected


def as_contract(table: pa.Table, expected: pa.Schema) -> pa.Table:
    """`table` with each column of `expected` in the expected field: what check_types let through
    casts exactly, so every caller sees the contract's types, and splits written by other tools
    concatenate with ours. A field is marked nullable as the contract's, or where it holds nulls."""
    for at, name in enumerate(table.column_names):
        if name in expected.names:
            want = expected.field(name)
            field = want.with_nullable(want.nullable or table[name].null_count > 0)
            if not table.schema.field(at).equals(field):
                table = table.set_column(at, field, table[name].cast(want.type))
    return table
