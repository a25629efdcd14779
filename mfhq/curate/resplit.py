"""`mfhq split`: reassign train/test of existing manifests under another split config.

The split graph is the one `cluster-sample` used: the rows' identities and videos plus every
member clip of identities.parquet, with the clips' official split (`split: official`), so a
re-split keeps the same guarantee as the build.
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
    with ManifestLock(folder, "mfhq split"):
        return _resplit(Path(folder), cfg)


def _resplit(folder: Path, cfg: CurateConfig) -> dict:
    meta = read_sidecar(folder)
    rows = pa.concat_tables([read_manifest(folder / f"{n}.parquet") for n in ("train", "test")])
    order = pc.sort_indices(rows, [("identity_id", "ascending"), ("sample_rank", "ascending")])
    rows = rows.take(order)
    ident = read_manifest(folder / IDENTITIES) if (folder / IDENTITIES).is_file() else None
    _warn_older(folder, ident, cfg)
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
            [by_id.get(i) for i in ident.column("identity_id").to_pylist()], pa.string())).cast(_identity_schema(ident))
    crops = {key: meta[key] for key in ("crops", "materialize") if key in meta}  # a re-split moves no file
    return write_manifests(folder, rows, kept, meta.get("pipeline", "default"), runs, ident, crops,
                           bool(meta.get("allow_partial")))


def _warn_older(folder: Path, ident: pa.Table | None, cfg: CurateConfig) -> None:
    """What a folder written by an older mfhq cannot tell the split, said rather than ignored."""
    official = (" and `split: official` sends a group to test by the official split of its sampled clips only, so an "
                "identity whose official-test clip gave no sampled face can stay in train") if cfg.split == "official" else ""
    if ident is None:
        log.warning("%s: no %s (written by an mfhq before it existed): the split ties identities to the videos of "
                    "their sampled faces only, not of all their clips%s; run `mfhq cluster-sample` again for that",
                    folder, IDENTITIES, official)
    elif official and "source_split" not in ident.column_names:
        log.warning("%s: %s has no source_split column (written by an mfhq before it recorded the member clips' "
                    "official split)%s; run `mfhq cluster-sample` again for that", folder, IDENTITIES, official)


def _identity_schema(ident: pa.Table) -> pa.Schema:
    """IDENTITY_SCHEMA, less source_split for a file written without it: a column of nulls would
    claim that no member clip has an official split, and silence the warning of the next re-split."""
    if "source_split" in ident.column_names:
        return IDENTITY_SCHEMA
    return IDENTITY_SCHEMA.remove(IDENTITY_SCHEMA.get_field_index("source_split"))
