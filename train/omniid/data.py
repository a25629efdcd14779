"""Manifest -> torch datasets: per-face items and few-to-many identity items (paper §3.2).

The public `omniid.data` API:

- `load_faces(manifest, roots=None)` -> [Face]: the rows the trainer uses, paths resolved;
- `load_manifest(manifest)` -> {identity_id: [(crop, mask), ...]};
- `FaceDataset`: one face per item, {"identity", "image" [3,S,S], "mask" [1,S,S], "crop_path",
  "yaw", "pitch", "roll", "quality"};
- `FewToManyDataset`: item (identity index, draw index) -> {"identity", "inputs" [M,3,S,S],
  "targets" [R,3,S,S], "masks" [R,1,S,S] (not for a stage that reads none), "input_paths",
  "target_paths"} (`omniid.draws`); `build_loader` streams its batches (the
  sampler, collation and loader themselves are in `omniid.batching`);
- `split_holdout(identities, n)`: each identity's last n faces held out (frames of the training
  identities the trainer never trains on, evaluated with the identity-swap gap).

Manifests are read only through the contract (`mfhq.manifest`): `manifest` is a manifest folder
or one of its Parquet files, `manifest.json` must sit beside it with the version this code reads,
and `crop_path` / `mask_path` are resolved through the sidecar's runs (see docs/manifests.md).
A crop or mask that cannot be read (truncated, not an image) is logged with its path, skipped
(another face of the same identity takes its place) and counted; past `max_bad_crops`
(default: 1% of the faces, at least 10) the run stops with BadCropsError naming the files.
Every draw is a pure function of (seed, draw index), so batches do not depend on the number of
DataLoader workers, and a resumed run sees the same batches. Manifest problems raise mfhq's
`ManifestError` (re-exported here); those found here raise `DataError`, which is both that and an
`OmniIDError`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mfhq.manifest import ManifestError, ManifestFolder, read_manifest
from omniid.batching import FewToManyLoader, FewToManySampler, bad_crops_error, collate, default_max_bad
from omniid.crop_reader import CropReader, masks_to_tensor
from omniid.draws import FewToManyDataset
from omniid.errors import BadCropsError, DataError

log = logging.getLogger(__name__)

COLUMNS = ("identity_id", "run", "crop_path", "mask_path", "yaw", "pitch", "roll", "quality")
__all__ = ["BadCropsError", "DataError", "Face", "FaceDataset", "FewToManyDataset", "FewToManySampler", "ManifestError",
           "build_loader", "collate", "load_faces", "load_manifest", "split_holdout"]


@dataclass(frozen=True)
class Face:
    identity: str
    crop: Path
    mask: Path | None
    yaw: float
    pitch: float
    roll: float
    quality: float


def _manifest_file(manifest: Path) -> Path:
    return manifest / "train.parquet" if manifest.is_dir() else manifest


POSE = ("yaw", "pitch", "roll", "quality")
SHOWN = 20  # lines listed in one error; the rest are counted


def load_faces(manifest: str | Path, roots: dict[str, Path] | None = None, check_files: bool = True,
               masks: bool = False, crops_only: bool = False) -> list[Face]:
    """The manifest's faces, sorted by identity then crop path. Every row is checked (empty keys,
    null pose values, a run the sidecar cannot place, with `masks` a row without mask_path, with
    `check_files` a crop or mask that is not there) and all the problems found are one DataError.
    crops_only: for a reader of crops alone (omniid-eval): masks are neither resolved nor checked
    (every Face's mask is None), so a manifest without them, or without their files, is read."""
    path = _manifest_file(Path(manifest))
    if not path.exists():
        raise DataError(f"manifest not found: {path}")
    folder = ManifestFolder.open(path, roots)
    table = read_manifest(path, list(COLUMNS), kind="manifest").to_pydict()
    run_roots, rows, faces = _run_roots(folder, table["run"]), [], []
    runs = [f"{why} ({n} row(s))" for why, n in run_roots.values() if why is not None]
    for i, ident in enumerate(table["identity_id"]):
        row = {c: table[c][i] for c in COLUMNS}
        wrong = _row_problems(row, masks)
        if wrong:
            rows.append(f"row {i}: {'; '.join(wrong)}")
        elif run_roots[row["run"]][0] is None:
            mask = None if crops_only else folder.resolve(row["run"], row["mask_path"])
            faces.append(Face(str(ident), folder.resolve(row["run"], row["crop_path"]), mask,
                              *(float(row[c]) for c in POSE)))
    absent = [str(p) for f in faces for p in (f.crop, f.mask) if p is not None and not p.is_file()] \
        if check_files else []
    if runs or rows or absent:
        heads = [f"{len(runs)} run(s) not found" if runs else "", f"{len(rows)} row(s) with problems" if rows else "",
                 f"{len(absent)} file(s) listed but missing" if absent else ""]
        lines = runs + rows + absent
        more = f"\n  ... and {len(lines) - SHOWN} more" if len(lines) > SHOWN else ""
        raise DataError(f"{path}: {', '.join(h for h in heads if h)}:\n  " + "\n  ".join(lines[:SHOWN]) + more)
    if not faces:
        raise DataError(f"{path}: no rows")
    return sorted(faces, key=lambda f: (f.identity, str(f.crop)))


def _run_roots(folder: ManifestFolder, runs: list) -> dict:
    """{run: (why its folder cannot be found or None, rows naming it)}: each run is one problem, not one per row."""
    found = {}
    for run in runs:
        if run in found:
            found[run] = (found[run][0], found[run][1] + 1)
            continue
        why = None
        if run not in (None, ""):
            try:
                folder.run_root(run)
            except ManifestError as error:
                why = str(error)
        found[run] = (why, 1)
    return found


def _row_problems(row: dict, masks: bool) -> list[str]:
    """What is wrong with one manifest row (empty when nothing is)."""
    wrong = [f"empty {c}" for c in ("identity_id", "run", "crop_path") if row[c] in (None, "")]
    wrong += [f"{c} is null" for c in POSE if row[c] is None]
    if masks and row["mask_path"] in (None, ""):
        wrong.append("no mask_path (training reads each face's mask)")
    return wrong


def load_manifest(manifest: str | Path, check_files: bool = True,
                  roots: dict[str, Path] | None = None) -> dict[str, list[tuple[Path, Path]]]:
    """identity_id -> [(crop, mask), ...], identities and faces in a stable sorted order."""
    identities: dict[str, list[tuple[Path, Path]]] = {}
    for face in load_faces(manifest, roots, check_files, masks=True):
        identities.setdefault(face.identity, []).append((face.crop, face.mask))
    return identities


class FaceDataset(Dataset):
    """One face per item (see the module docstring). An unreadable face is replaced by the next
    readable one in the list and counted in this process; past max_bad_crops it raises."""

    def __init__(self, faces: list[Face], image_size: int, max_bad_crops: int | None = None):
        self.faces, self.reader = faces, CropReader(image_size)
        self.max_bad = default_max_bad(len(faces)) if max_bad_crops is None else max_bad_crops

    @classmethod
    def from_manifest(cls, manifest: str | Path, image_size: int, roots: dict[str, Path] | None = None,
                      max_bad_crops: int | None = None) -> "FaceDataset":
        return cls(load_faces(manifest, roots), image_size, max_bad_crops)

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, index: int) -> dict:
        for step in range(len(self.faces)):
            face = self.faces[(index + step) % len(self.faces)]
            read = self.reader.read(face.crop, face.mask)
            if len(self.reader.bad) > self.max_bad:
                raise bad_crops_error(self.reader.bad, self.max_bad)
            if read is not None:
                image, mask = read
                item = {"identity": face.identity, "image": self.reader.tensors([image])[0], "crop_path": str(face.crop),
                        "yaw": face.yaw, "pitch": face.pitch, "roll": face.roll, "quality": face.quality}
                return item if mask is None else {**item, "mask": masks_to_tensor([mask])[0]}
        raise bad_crops_error(self.reader.bad, self.max_bad)


def split_holdout(identities: dict[str, list], n: int) -> tuple[dict[str, list], dict[str, list]]:
    """(kept, held out): each identity's last `n` faces (in the manifest's crop-path order, so
    the latest frames of its last clip) held out; an identity with `n` faces or fewer is kept whole."""
    kept, held = {}, {}
    for name, faces in identities.items():
        cut = len(faces) - n if 0 < n < len(faces) else len(faces)
        kept[name] = faces[:cut]
        if cut < len(faces):
            held[name] = faces[cut:]
    return kept, held


def build_loader(manifest: str | Path, image_size: int, num_inputs: int, num_targets: int,
                 batch_size: int, workers: int = 0, seed: int = 0, rank: int = 0, world: int = 1,
                 start_batch: int = 0, num_inputs_min: int | None = None, clamp_batch: bool = False,
                 roots: dict[str, Path] | None = None, max_bad_crops: int | None = None,
                 target_size: int | None = None, target_pixels: str = "clip", holdout: int = 0,
                 part: str = "kept", masks: bool = True, target_reader=None,
                 disjoint: bool = False, name: str = "train", identity_side: int | None = None) -> FewToManyLoader:
    """clamp_batch: shrink the batch to the number of identities (eval sets may be small).
    roots: {run name: folder} for runs moved away from where the manifest records them.
    target_size / target_pixels: the targets' own side and pixel range (see FewToManyDataset).
    holdout / part: with holdout N > 0, the faces `split_holdout` keeps ("kept") or holds out ("heldout").
    masks: False when the stage never reads the targets' face masks (they are not decoded).
    disjoint: targets never among the inputs (the flow stage), else drawn from all the faces (MTD).
    target_reader(manifest, target side, roots) -> a CropReader: an objective's own reading of its
    targets (the adapter stage's adds each target's landmark image).
    name: the set's name in the log lines (train, eval, heldout).
    identity_side: each input crop also read at this side (`identity_inputs`: the `arcface`
    baselines' identity model reads its face there, not from the encoder's input)."""
    identities = load_manifest(manifest, roots=roots)
    if holdout:
        kept, held = split_holdout(identities, holdout)
        identities = held if part == "heldout" else kept
        if not identities:
            raise DataError(f"{manifest}: no identity has more than --holdout-faces {holdout} faces")
    dataset = FewToManyDataset(identities, image_size, num_inputs, num_targets, num_inputs_min, seed,
                               target_size, target_pixels, masks, disjoint, name=name, identity_side=identity_side)
    if target_reader is not None:
        dataset.target_reader = target_reader(manifest, dataset.target_size, roots)
    if clamp_batch:
        batch_size = min(batch_size, len(dataset) // world)
    sampler = FewToManySampler(len(dataset), batch_size, seed, rank, world, start_batch)
    if sampler.left_out and not clamp_batch:  # eval sets read a fixed few batches: no epochs
        log.info("%s: each epoch leaves out %d of %d identities, a different %d each epoch (%d global batch%s "
                 "of %d x %d, like drop_last)", name, sampler.left_out, len(dataset), sampler.left_out, len(sampler),
                 "" if len(sampler) == 1 else "es", batch_size, world)
    limit = default_max_bad(sum(len(f) for f in identities.values())) if max_bad_crops is None else max_bad_crops
    # an own generator keeps DataLoader from drawing its base seed from the global RNG
    return FewToManyLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                           generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0,
                           pin_memory=torch.cuda.is_available(), max_bad_crops=limit)
