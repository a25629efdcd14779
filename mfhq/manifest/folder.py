"""Checked reading and writing of a manifest folder: train/test/identities Parquet + manifest.json.

This is the one reader of the manifest contract (mfhq.manifest.schema); `mfhq split`, `mfhq stats`
and the trainer (`omniid.data`) all go through it, so a version mismatch, a file that is not
Parquet, a missing sidecar or a run folder that cannot be found gives the same clear error.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mfhq.manifest.io import atomic_write_arrow, atomic_write_json
from mfhq.manifest.schema import MANIFEST_VERSION, SIDECAR, SPLITS, ManifestError, check_version

REBUILD = "rebuild it with `mfhq cluster-sample` (or use the mfhq release that wrote it)"


def read_manifest(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read train/test/identities Parquet, refusing a missing file, a file that is not Parquet,
    another schema version or missing columns; every error names the file."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file; make it with `mfhq cluster-sample`")
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise ManifestError(f"{path}: not a readable Parquet file ({exc})") from exc
    check_version(path, schema.metadata, MANIFEST_VERSION, REBUILD, what="manifest")
    if columns is not None:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}; it has {', '.join(schema.names)}")
    try:
        return pq.read_table(path, columns=columns)
    except Exception as exc:  # damaged data pages show only when read
        raise ManifestError(f"{path}: damaged Parquet data ({exc})") from exc


def read_sidecar(folder: Path) -> dict:
    path = Path(folder) / SIDECAR
    if not path.is_file():
        raise ManifestError(f"{path}: missing; {folder} is not a folder written by `mfhq cluster-sample`")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc}); {REBUILD}") from exc
    if not isinstance(meta, dict) or meta.get("schema_version") != MANIFEST_VERSION:
        version = meta.get("schema_version") if isinstance(meta, dict) else "?"
        raise ManifestError(f"{path}: manifest schema version {version}, this code reads version "
                            f"{MANIFEST_VERSION}; {REBUILD}")
    return meta


def run_entries(run_dirs: list[Path], out: Path) -> list[dict]:
    """The sidecar's `runs`: a unique name per run (its folder's name, numbered on a clash), its
    folder absolute and relative to the manifest folder."""
    entries, used = [], set()
    for run_dir in run_dirs:
        run_dir = Path(run_dir).resolve()
        name, n = run_dir.name or "run", 2
        while name in used:
            name, n = f"{run_dir.name}-{n}", n + 1
        used.add(name)
        entries.append({"name": name, "run_dir": str(run_dir),
                        "run_dir_relative": os.path.relpath(run_dir, Path(out).resolve())})
    return entries


@dataclass
class ManifestFolder:
    """An opened manifest folder: its sidecar, and where each run's images are now.

    A run's folder is looked for, in order: in `roots` (name -> folder, given by the user),
    relative to the manifest folder (runs and manifests moved together), then at the absolute
    path recorded when the manifest was written (the manifest folder moved alone)."""

    folder: Path
    sidecar: dict
    roots: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path, roots: dict[str, Path] | None = None) -> "ManifestFolder":
        """path: the folder, or one of its Parquet files."""
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        if path.suffix and not path.is_dir() and not path.is_file():
            raise ManifestError(f"{path}: no such manifest file; make it with `mfhq cluster-sample`")
        return cls(folder, read_sidecar(folder), {k: Path(v) for k, v in (roots or {}).items()})

    def split(self, name: str, columns: list[str] | None = None) -> pa.Table:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return read_manifest(self.folder / f"{name}.parquet", columns)

    def run_root(self, run: str) -> Path:
        entry = next((r for r in self.sidecar.get("runs", []) if r.get("name") == run), None)
        if entry is None:
            raise ManifestError(f"{self.folder / SIDECAR}: rows name run {run!r}, which `runs` does not list")
        tried = []
        for candidate in (self.roots.get(run), entry.get("run_dir_relative") and self.folder / entry["run_dir_relative"],
                          entry.get("run_dir") and Path(entry["run_dir"])):
            if candidate:
                tried.append(str(candidate))
                if Path(candidate).is_dir():
                    return Path(candidate)
        raise ManifestError(f"{self.folder}: the folder of run {run!r} is not found (tried {', '.join(tried)}); "
                            "move it back, or give its new place (omniid.data: roots={name: folder})")

    def resolve(self, run: str, relative: str | None) -> Path | None:
        """The file a row's crop_path / mask_path names."""
        return None if relative is None else self.run_root(run) / relative


def write_manifest_folder(out: Path, parts: dict[str, pa.Table], sidecar: dict,
                          schema: pa.Schema) -> None:
    """Write each split's rows (cast to the contract's schema), then the sidecar last: a folder
    with a sidecar is complete."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in parts.items():
        atomic_write_arrow(out / f"{name}.parquet", table.cast(schema))
    atomic_write_json(out / SIDECAR, {**sidecar, "schema_version": MANIFEST_VERSION})
