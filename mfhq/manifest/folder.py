"""Checked reading and writing of a manifest folder: train/test/identities Parquet + manifest.json.

This is the one reader of the manifest contract (mfhq.manifest.schema); `mfhq split`, `mfhq stats`
and the trainer (`omniid.data`) all go through it, so a version mismatch, a file that is not
Parquet, a missing sidecar or a run folder that cannot be found gives the same clear error.

A folder is written as one unit (`write_manifest_folder`, under the folder's lock): the sidecar
goes first (manifest.writing.json, naming the write's runs and config, stands in for it meanwhile),
every file is replaced, and the sidecar comes back last listing each file with its size and sha256.
A folder without a sidecar is unfinished, and a file that differs from what the sidecar lists
belongs to another write: readers refuse both, so a writer stopped at any point never leaves a
folder that reads as complete with old and new files mixed.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mfhq.manifest.io import (atomic_write_arrow, atomic_write_bytes, atomic_write_json, file_digest, fsync_folder,
                              remove_stray_temps, sha256_of)
from mfhq.manifest.lock import LOCK, FolderLock
from mfhq.manifest.schema import (IDENTITIES, MANIFEST_READABLE, MANIFEST_VERSION, SIDECAR, SPLITS, ManifestError,
                                  as_contract, check_kind, check_runs_once, check_types, check_version, fill_lacking, lacking)

REBUILD = "rebuild it with `mfhq cluster-sample` (or use the mfhq release that wrote it)"
# The sidecar's `crops`: whether the crop and mask files its rows name exist. "written": extract
# wrote them (align.crops: extract); "pending": its runs recorded candidates only (align.crops:
# materialize) and `mfhq materialize` has not finished; "materialized": it has.
CROPS_STATES = ("written", "pending", "materialized")
WRITTEN = (*(f"{name}.parquet" for name in SPLITS), IDENTITIES)  # what a finished write always holds
CARD = "README.md"  # the dataset card (mfhq.manifest.card)
MATERIALIZE = "materialize"  # `mfhq materialize`'s plan and shard markers (mfhq.materialize)
# The sidecar of a write under way (its runs and config), from before the old sidecar goes until
# the new one is in place: a folder without either is no manifest folder, whatever its files' names.
WRITING = "manifest.writing.json"
# Everything a manifest folder holds: write_manifest_folder writes nothing else, so a folder with
# other entries is someone else's. Hidden entries aside: ours are temporary files (.tmp-*).
ENTRIES = frozenset({*WRITTEN, CARD, SIDECAR, WRITING, LOCK, MATERIALIZE})


class ManifestLock(FolderLock):
    """`MANIFESTS/lock`: the `mfhq cluster-sample` or `mfhq split` writing the folder."""

    what = "manifest folder"


def read_manifest(path: Path, columns: list[str] | None = None, kind: str | None = None) -> pa.Table:
    """Read train/test/identities Parquet, refusing a missing file, a file that is not Parquet, rows of another `kind` (check_kind),
    another schema version, a column of another type (schema.reads_as) or missing columns; every error names the file. Columns
    come back in the contract's types, an older readable version's lacking ones (MANIFEST_READABLE) as NULLs."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file; make it with `mfhq cluster-sample`")
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise ManifestError(f"{path}: not a readable Parquet file ({exc})") from exc
    kind = check_kind(path, schema, kind)
    version = check_version(path, schema.metadata, MANIFEST_VERSION, REBUILD, what="manifest", readable=MANIFEST_READABLE)
    expected = check_types(path, schema, kind)  # before the sidecar's list: a retyped file is named for what is wrong
    lacks = lacking(schema, version, columns)
    missing = [c for c in columns or [] if c not in schema.names and c not in lacks]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}; it has {', '.join(schema.names)}")
    check_listed(path)
    try:
        table = pq.read_table(path, columns=None if columns is None else [c for c in columns if c not in lacks])
    except Exception as exc:  # damaged data pages show only when read
        raise ManifestError(f"{path}: damaged Parquet data ({exc})") from exc
    return fill_lacking(as_contract(table, expected), lacks, columns)


def check_listed(path: Path) -> None:
    """A file the folder's sidecar lists must be the very file it lists (size, then sha256).
    Files it does not list (a user's own subset) and sidecars that list none (written before
    the list existed) are left to the other checks."""
    listed = _listed_files(path.parent).get(path.name)
    if not isinstance(listed, dict):
        return
    size = path.stat().st_size
    if size == listed.get("bytes") and sha256_of(path) == listed.get("sha256"):
        return
    raise ManifestError(
        f"{path}: not the file {path.parent / SIDECAR} lists ({listed.get('bytes')} bytes, sha256 "
        f"{str(listed.get('sha256'))[:12]}..., this one has {size} bytes): the folder mixes files of two "
        f"writes (a `mfhq cluster-sample` or `mfhq split` stopped part-way, or a file changed by hand); "
        f"re-run `mfhq cluster-sample` into {path.parent}")


def _listed_files(folder: Path) -> dict:
    try:
        meta = json.loads((Path(folder) / SIDECAR).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}  # no sidecar or a damaged one: read_sidecar names that
    files = meta.get("files") if isinstance(meta, dict) else None
    return files if isinstance(files, dict) else {}


def read_sidecar(folder: Path) -> dict:
    path = Path(folder) / SIDECAR
    if not path.is_file():
        if any((Path(folder) / name).is_file() for name in (*WRITTEN, WRITING)):
            raise ManifestError(f"{path}: missing, so {folder} is unfinished: its last `mfhq cluster-sample` "
                                "(or `mfhq split`) stopped before writing it (it is written last, once every "
                                "file is in place); run it again")
        raise ManifestError(f"{path}: missing; {folder} is not a folder written by `mfhq cluster-sample`")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc}); {REBUILD}") from exc
    if not isinstance(meta, dict) or meta.get("schema_version") not in MANIFEST_READABLE:
        version = meta.get("schema_version") if isinstance(meta, dict) else "?"
        older = ", ".join(sorted(set(MANIFEST_READABLE) - {MANIFEST_VERSION}))
        raise ManifestError(f"{path}: manifest schema version {version}, this code reads version "
                            f"{MANIFEST_VERSION} (and {older}); {REBUILD}")
    return check_runs_once(path, meta)


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
    def open(cls, path: Path, roots: dict[str, Path] | None = None, pending_ok: bool = False) -> "ManifestFolder":
        """path: the folder, or one of its Parquet files. A folder whose crops are not written yet
        is refused (its rows name files that do not exist) unless pending_ok."""
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        if not path.exists():  # named as given, never as the folder it would sit in
            what = "file" if path.suffix else "folder"
            raise ManifestError(f"{path}: no such manifest {what}; make it with `mfhq cluster-sample`")
        opened = cls(folder, read_sidecar(folder), {k: Path(v) for k, v in (roots or {}).items()})
        if opened.crops == "pending" and not pending_ok:
            raise ManifestError(f"{folder}: its crops and masks are not written yet (its runs recorded candidate "
                                f"faces only: align.crops: materialize); run `mfhq materialize --manifest {folder}` "
                                "(it resumes where it stopped)")
        remade = opened.remade_runs() if opened.crops == "materialized" and not pending_ok else []
        if remade:
            raise ManifestError(f"{folder}: run(s) {', '.join(remade)} were deleted and extracted again since `mfhq "
                                "materialize` wrote their crops and masks (run.json's run_id differs), so those "
                                f"files are gone; run `mfhq materialize --manifest {folder}` to make them again")
        return opened

    @property
    def crops(self) -> str:
        """written | pending | materialized (CROPS_STATES); folders from before the field: written."""
        return self.sidecar.get("crops", "written")

    def remade_runs(self) -> list[str]:
        """Runs whose run.json's run_id is not the one `mfhq materialize` made crops for (a folder
        materialized before it recorded them, or a run not found, names none)."""
        made = (self.sidecar.get("materialize") or {}).get("run_ids")
        remade = []
        for name, run_id in sorted(made.items() if isinstance(made, dict) else []):
            try:
                meta = json.loads((self.run_root(name) / "run.json").read_text())
            except (ManifestError, OSError, json.JSONDecodeError, UnicodeDecodeError):
                continue  # a run that cannot be read is named by whoever reads it
            if run_id and (meta.get("run_id") if isinstance(meta, dict) else None) != run_id:
                remade.append(name)
        return remade

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

    def locate(self, relative: str) -> Path:
        """The file a crop_path / mask_path value names, found through the rows that list it (it
        is relative to the folder of the extract run that made it, which the rows name)."""
        wanted = Path(relative).as_posix()
        runs = set()
        for split in SPLITS:
            if not (self.folder / f"{split}.parquet").is_file():
                continue
            rows = self.split(split, ["run", "crop_path", "mask_path"]).to_pydict()
            runs |= {run for run, crop, mask in zip(rows["run"], rows["crop_path"], rows["mask_path"])
                     if wanted in (crop, mask)}
        if not runs:
            raise ManifestError(f"{relative}: no such file, and no crop_path or mask_path of {self.folder} is "
                                "that path (a manifest's paths are relative to the extract run folder)")
        if len(runs) > 1:
            raise ManifestError(f"{relative}: listed by {len(runs)} runs of {self.folder} ({', '.join(sorted(runs))}); "
                                "give the file's full path")
        found = self.resolve(runs.pop(), wanted)
        if not found.is_file():
            raise ManifestError(f"{relative}: {self.folder} resolves it to {found}, which does not exist")
        return found


def resolve_listed_path(path: str | Path, manifest: str | Path, roots: dict[str, Path] | None = None) -> Path:
    """An image path as a user gives it: a file that exists is returned as it is; otherwise a
    crop_path / mask_path value of `manifest` (a manifest folder or one of its files), resolved
    through its sidecar's runs. Anything else raises ManifestError naming the path."""
    if Path(path).is_file():
        return Path(path)
    return ManifestFolder.open(Path(manifest), roots).locate(str(path))


def split_path(manifest: str | Path, split: str) -> Path:
    """The `split` Parquet file of a manifest folder given as the folder or as any of its files,
    so a folder of manifests works wherever a manifest file does."""
    if split not in SPLITS + ("identities",):
        raise ValueError(f"split must be one of {SPLITS + ('identities',)}, got {split!r}")
    path = Path(manifest)
    return (path if path.is_dir() else path.parent) / f"{split}.parquet"


def mark_materialized(folder: Path, record: dict) -> None:
    """The sidecar says the crops are written (`mfhq materialize` finished), with `record` (what
    made them) under "materialize". Only the sidecar changes; the caller holds ManifestLock."""
    sidecar = read_sidecar(folder)
    atomic_write_json(Path(folder) / SIDECAR, {**sidecar, "crops": "materialized", "materialize": record})
    fsync_folder(Path(folder))


def foreign_entries(folder: Path) -> list[str]:
    """The entries of `folder` that no manifest writer makes (hidden ones aside), sorted."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name not in ENTRIES and not p.name.startswith("."))


def write_manifest_folder(out: Path, parts: dict[str, pa.Table], sidecar: dict, schema: pa.Schema,
                          files: dict[str, pa.Table | bytes] | None = None) -> None:
    """Write each split's rows (cast to the contract's schema) and `files` (name -> a table,
    written as Parquet as it is, or bytes), as one unit: the old sidecar goes first, the new one
    comes last listing every file with its size and sha256; meanwhile WRITING says whose write it
    is. The caller holds ManifestLock."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writes = {f"{name}.parquet": table.cast(schema) for name, table in parts.items()}
    writes.update(files or {})
    if not set(writes) <= ENTRIES:  # a new file must be named in ENTRIES, or re-runs refuse the folder
        raise ValueError(f"not a manifest folder's file: {sorted(set(writes) - ENTRIES)}; add it to ENTRIES")
    remove_stray_temps(out, [*writes, SIDECAR, WRITING])
    atomic_write_json(out / WRITING, {**sidecar, "schema_version": MANIFEST_VERSION})
    (out / SIDECAR).unlink(missing_ok=True)
    fsync_folder(out)  # the sidecar is gone before any file changes, also after a power loss
    listed = {}
    for name, content in writes.items():
        if isinstance(content, pa.Table):
            atomic_write_arrow(out / name, content)
        else:
            atomic_write_bytes(out / name, content)
        listed[name] = file_digest(out / name)
    atomic_write_json(out / SIDECAR, {**sidecar, "schema_version": MANIFEST_VERSION, "files": listed})
    (out / WRITING).unlink()
    fsync_folder(out)

