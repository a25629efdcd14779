"""`mfhq split`: reassign train/test of existing manifests under another split config.

The split graph is the one `cluster-sample` used: the rows' identities and videos plus every
member clip of identities.parquet, so a re-split keeps the same guarantee as the build.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from mfhq.config import CurateConfig
from mfhq.curate.build import write_manifests
from mfhq.curate.split import assign_split
from mfhq.manifest.folder import IDENTITIES, ManifestFolder, ManifestLock, read_manifest, read_sidecar
from mfhq.manifest.schema import IDENTITY_SCHEMA

log = logging.getLogger(__name__)


def resplit(folder: Path, cfg: CurateConfig) -> dict:
    """`mfhq split`: reassign train/test of existing manifests under another split config."""
    read_sidecar(folder)  # a folder that is not a manifest folder: named before the lock
    with ManifestLock(folder):
        return _resplit(Path(folder), cfg)


def _resplit(folder: Path, cfg: CurateConfig) -> dict:
    meta = read_sidecar(folder)
    rows = pa.concat_tables([read_manifest(folder / f"{n}.parquet") for n in ("train", "test")])
    order = pc.sort_indices(rows, [("identity_id", "ascending"), ("sample_rank", "ascending")])
    rows = rows.take(order)
    ident = read_manifest(folder / IDENTITIES) if (folder / IDENTITIES).is_file() else None
    if ident is None:
        log.warning("%s: no %s (written by an mfhq before it existed): the split ties identities to the videos of "
                    "their sampled faces only, not of all their clips; run `mfhq cluster-sample` again for that",
                    folder, IDENTITIES)
    split = assign_split(rows, cfg, ident)
    rows = rows.set_column(rows.schema.get_field_index("split"), "split", pa.array(split.tolist(), pa.string()))
    # the runs where the folder finds them now (it may have moved since it was written)
    opened = ManifestFolder.open(folder, pending_ok=True)
    runs = [{**r, "run_dir": str(opened.run_root(r["name"]).resolve())} for r in meta.get("runs", [])]
    kept = dataclasses.replace(CurateConfig(**meta["config"]), split=cfg.split, test_videos=cfg.test_videos,
                               split_seed=cfg.split_seed)
    if ident is not None:
        by_id = dict(zip(rows.column("identity_id").to_pylist(), split.tolist()))
        ident = ident.set_column(ident.schema.get_field_index("split"), "split", pa.array(
            [by_id.get(i) for i in ident.column("identity_id").to_pylist()], pa.string())).cast(IDENTITY_SCHEMA)
    crops = {key: meta[key] for key in ("crops", "materialize") if key in meta}  # a re-split moves no file
    return write_manifests(folder, rows, kept, meta.get("pipeline", "default"), runs, ident, crops,
                           bool(meta.get("allow_partial")))
