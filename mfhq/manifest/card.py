"""The manifest folder's dataset card (README.md): what `datasets.load_dataset(folder)` reads.

Its YAML header declares the splits (train, test) and a second config for identities.parquet;
its body documents the columns and, in a written folder, the counts. The repository's
docs/manifests.md is this card without counts (a test keeps the two equal), so the schema is
documented in exactly one place.
"""
from __future__ import annotations

from pathlib import Path

from mfhq.manifest.io import atomic_write_bytes
from mfhq.manifest.schema import MANIFEST_VERSION

_HEADER = """---
pretty_name: MFHQ manifests (built by mfhq cluster-sample)
license: other
tags: [faces, multi-view, identity]
configs:
- config_name: default
  default: true
  data_files:
  - split: train
    path: train.parquet
  - split: test
    path: test.parquet
- config_name: identities
  data_files:
  - split: clips
    path: identities.parquet
---
"""

_BODY = """
# MFHQ manifests (schema version {version})

`mfhq cluster-sample --run RUN --manifest manifests/` writes this folder; the contract's code is
`mfhq/manifest/` (schemas and versions in `schema.py`, the checked reader in `folder.py`). Every
Parquet file carries `mfhq.schema_version` in its metadata, and `manifest.json` its `schema_version`; readers
(`mfhq.manifest.read_manifest`, `ManifestFolder`, `omniid.data`) refuse another version with an
error that names the file, except an older one they still read (version 2: it lacks `face_size`,
read as null). Each Parquet file also names its kind in its metadata (`mfhq.schema`: `manifest` for
train/test, `identities`); a file read as one kind that holds another (an `identities.parquet` copied
over `train.parquet`, a run's `faces/` shard given as a manifest) is refused in an error naming the
file, the kind asked for and the kind it holds. The folder is written as one unit: `manifest.json` is removed first and
written last, listing every file with its size and sha256, and readers refuse a folder without it
(an interrupted write) and a listed file that differs (files of two writes).

Each column is held to its type in the tables below (`identities.parquet`: `n_usable` and
`identity_faces` int64, the rest strings): a file rewritten with a column of another type is refused
in one error naming the file and each such column with the type found and the type expected; rebuild
the folder with `mfhq cluster-sample`. The rule (`reads_as` in `schema.py`; run shards follow it too):
refused where the values would change or lose a promise (a number or bool stored as text, float64
for a float32, a wider integer, binary for a string, `landmarks` as a list of any length rather than
of 10); read, and returned in the contract's types, where only the layout differs (large_string and
dictionary-encoded strings, a large or fixed-size list for `embedding`, a narrower number of the same
kind). Nullability is not part of the type.

{counts}
| file | rows |
|---|---|
| `train.parquet`, `test.parquet` | one per sampled face (8 per identity; fewer only for identities flagged `short`) |
| `identities.parquet` | one per clip with usable faces: its identity, merge decision and evidence, status, split |
| `manifest.json` | schema version, code version (+ git commit), pipeline name, the `curate` config, counts per split, the runs (name, folder, folder relative to this one, provenance, config fingerprint, `run_id`: the run.json id that tells a run deleted and extracted again at the same path apart, `configs`: the config fingerprint of every finished shard read, oldest first, more than one when the run mixes configs, and `snapshot`: its state, markers digest and run id when read; older folders lack some), model provenance, `crops` (`written`; or `pending` while `mfhq materialize` has yet to write the images of runs made with `align.crops: materialize`, a state readers refuse; then `materialized`, with what made them under `materialize`, including the `run_ids` they were made in: readers refuse the folder again once such a run is extracted anew, until `mfhq materialize` makes them again), and `files`: the size and sha256 of every other file here |
| `README.md` | this card: `datasets.load_dataset` reads its header |

## Image paths

`crop_path` and `mask_path` mean the same here as in the run's `faces/` rows: paths **relative to
the folder of the run** that made the face. The row's `run` names that run in `manifest.json`'s
`runs`, which records the run folder both absolutely (`run_dir`) and relative to this folder
(`run_dir_relative`). A reader looks for the run folder relative to this folder first (runs and
manifests moved together), then at the absolute path (this folder moved alone); `omniid.data`
also takes `roots={{run name: folder}}` for a run moved elsewhere.

```python
from mfhq.manifest import ManifestFolder
folder = ManifestFolder.open("manifests")
crop = folder.resolve(row["run"], row["crop_path"])      # a pathlib.Path
from mfhq.manifest import resolve_listed_path
crop = resolve_listed_path("crops/...jpg", "manifests")  # a crop_path value alone (its rows name the run)
```

## Loading

```python
import datasets
ds = datasets.load_dataset("manifests/")                 # DatasetDict: train, test
ids = datasets.load_dataset("manifests/", "identities")  # one row per clip

# the crops (and masks) as datasets.Image columns: resolve the paths, then cast
from mfhq.manifest.hf import with_images
ds = with_images(ds, "manifests/")                       # adds `crop` and `mask` (datasets.Image)
ds["train"][0]["crop"]                                   # a PIL image
```

`with_images` is three lines of plain `datasets`: `ds.map(lambda r: {{"crop": str(resolve(r))}})`
then `ds.cast_column("crop", datasets.Image())`. For training, `omniid.data` gives torch datasets
(`FaceDataset`: one face per item; `FewToManyDataset`: few-to-many identity items).

## train / test columns

| column | type | meaning |
|---|---|---|
| `identity_id` | string | the smallest clip key (`source/clip_id`) among the clips merged into this person |
| `split` | string | `train` or `test`; identities and source videos never cross |
| `source_split` | string, null | the source's official split of the clip, if it has one |
| `source`, `clip_id`, `video_key` | string | the clip and its source video (YouTube id for CelebV-HQ / CelebV-Text) |
| `frame_index`, `face_index` | int32, int16 | the face in the run (`faces/` key with source and clip_id) |
| `run` | string | the run that made the face: a name in `manifest.json`'s `runs` |
| `crop_path`, `mask_path` | string | relative to the run's folder: the aligned crop (JPEG) and the face mask (binary PNG: 1-bit, 1 = face; older runs: 8-bit, 255 = face) |
| `landmarks` | float32[10] | 5 x (x, y) in source pixels: eyes, nose tip, mouth corners |
| `face_size` | float32, null | side in source pixels of the frame region the aligned crop covers (the crop side divided by the alignment's scale; as in `faces/`); under the run's `align.size` the crop was upscaled to that size (`mfhq stats` counts these). Null in version-2 folders |
| `yaw`, `pitch`, `roll` | float32 | degrees; yaw > 0 turns to the image's right, pitch > 0 looks up, roll > 0 is counter-clockwise in the image |
| `quality` | float32 | in [0, 1], higher is better |
| `pose_cluster` | int16 | the face's k-means pose cluster within its identity |
| `sample_rank` | int16 | order of choice: 0 is the best-quality face, then the best face of each other occupied pose cluster, farthest-in-pose first; an identity with fewer occupied clusters than `faces_per_identity` (8) is filled with its best-quality remaining faces, so a row whose `pose_cluster` repeats one of a lower `sample_rank` in its identity is such a filler |
| `short` | bool | the identity had fewer usable faces than `faces_per_identity` (kept because `short_identities: flag`) |
| `embedding` | float32[] | L2-normalised identity embedding |
| `provenance` | string | models and weight hashes that made the row |

## identities.parquet

`source, clip_id, video_key, identity_id, decision (own | merged | dedup_kept | dedup_dropped),
evidence (JSON list of the merge edges of the identity: {{a, b, by: video_key | embedding,
similarity}}; an embedding edge joins two video-key groups, named by their first clips, at the
cosine of the groups' pooled means; an edge `by: person_key` joined nothing: it is the most alike
edge the source's person ids refused between this identity and another, `a` this identity's clip,
`b` the other's, listed in both; null when the identity has no edge), n_usable, identity_faces, status (sampled | short_flagged | short_dropped |
duplicate), split, source_split (the source's official split of the clip, if it has one; the
column is absent from folders written before it was recorded)`.
"""

_NO_COUNTS = "The counts of a built folder are written here by `mfhq cluster-sample`.\n"


def _counts_table(counts: dict) -> str:
    lines = ["| split | faces | identities | source videos | short identities |", "|---|---|---|---|---|"]
    for name, c in counts.items():
        lines.append(f"| {name} | {c['faces']} | {c['identities']} | {c['videos']} | {c['short_identities']} |")
    return "\n".join(lines) + "\n"


def render_card(counts: dict | None = None) -> str:
    return _HEADER + _BODY.format(version=MANIFEST_VERSION, counts=_counts_table(counts) if counts else _NO_COUNTS)


def write_card(out: Path, counts: dict) -> None:
    atomic_write_bytes(Path(out) / "README.md", render_card(counts).encode())
