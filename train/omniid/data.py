"""Manifest -> few-to-many identity batches (paper §3.2).

The manifest contract (written by `mfhq cluster-sample`): one row per sampled face with at least
`identity_id`, `crop_path` and `mask_path` (the trainer reads only these). Relative paths are
resolved against `resolve_root(manifest)`. Per identity we draw |X^s| inputs and |X^r| targets
with their face masks. Every draw is a pure function of (seed, draw index), so batches do not
depend on the number of DataLoader workers, and a resumed run sees the same batches.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from omniid.preprocess import image_to_tensor, mask_to_tensor

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("identity_id", "crop_path", "mask_path")
ROOT_KEYS = ("root", "run_dir")  # sidecar keys naming the folder relative paths start from


class ManifestError(ValueError):
    """A manifest the trainer cannot use; the message names what is wrong."""


def resolve_root(manifest: Path) -> Path:
    """The folder relative crop/mask paths start from: the sidecar's `root` or `run_dir` (itself
    relative to the sidecar's folder if relative), else the manifest's own folder."""
    sidecar = manifest.with_suffix(".json")
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text())
        for key in ROOT_KEYS:
            if meta.get(key):
                root = Path(meta[key])
                return root if root.is_absolute() else (sidecar.parent / root)
    return manifest.parent


def load_manifest(manifest: str | Path, check_files: bool = True) -> dict[str, list[tuple[Path, Path]]]:
    """identity_id -> [(crop, mask), ...], identities and faces in a stable sorted order."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ManifestError(f"manifest not found: {manifest}")
    columns = pq.read_schema(manifest).names
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(f"{manifest}: missing column(s) {', '.join(missing)}; it has {', '.join(columns)}")
    table = pq.read_table(manifest, columns=list(REQUIRED_COLUMNS)).to_pydict()
    root = resolve_root(manifest)

    def resolve(value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else root / path

    identities: dict[str, list[tuple[Path, Path]]] = {}
    for ident, crop, mask in zip(table["identity_id"], table["crop_path"], table["mask_path"]):
        if ident is None or crop is None or mask is None:
            raise ManifestError(f"{manifest}: a row has an empty identity_id, crop_path or mask_path")
        identities.setdefault(str(ident), []).append((resolve(crop), resolve(mask)))
    if not identities:
        raise ManifestError(f"{manifest}: no rows")
    if check_files:
        absent = [str(p) for faces in identities.values() for pair in faces for p in pair if not p.is_file()]
        if absent:
            shown = "\n  ".join(absent[:10])
            raise ManifestError(
                f"{manifest}: {len(absent)} file(s) listed but missing (paths resolved against {root}):\n  {shown}"
                + ("\n  ..." if len(absent) > 10 else "")
            )
    return {k: sorted(v) for k, v in sorted(identities.items())}


class FewToManyDataset(Dataset):
    """Item (identity index, draw index) -> {inputs [M,3,S,S], targets [R,3,T,T], masks [R,1,T,T]}.

    Targets default to the inputs' size and CLIP normalisation (T=S); the flow stage asks for its
    own (`target_size=448, target_pixels="signed"`: VAE input in [-1, 1]).
    """

    def __init__(self, identities: dict[str, list[tuple[Path, Path]]], image_size: int,
                 num_inputs: int, num_targets: int, num_inputs_min: int | None = None, seed: int = 0,
                 target_size: int | None = None, target_pixels: str = "clip"):
        self.target_size, self.target_pixels = target_size or image_size, target_pixels
        self.names = list(identities)
        self.faces = [identities[n] for n in self.names]
        self.image_size, self.seed = image_size, seed
        self.num_inputs, self.num_targets = num_inputs, num_targets
        self.num_inputs_min = num_inputs_min or num_inputs
        if not 1 <= self.num_inputs_min <= num_inputs or num_targets < 1:
            raise ValueError(f"need 1 <= num_inputs_min <= num_inputs and num_targets >= 1, got "
                             f"{self.num_inputs_min}, {num_inputs}, {num_targets}")
        short = sum(len(f) < max(num_inputs, num_targets) for f in self.faces)
        if short:  # drawn with replacement for these; worth knowing, not worth failing
            log.warning("%d of %d identities have fewer than %d faces", short, len(self.faces),
                        max(num_inputs, num_targets))

    def __len__(self) -> int:
        return len(self.names)

    def _draw(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        return rng.choice(n, size=k, replace=n < k)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, draw = item
        rng = np.random.default_rng([self.seed, draw])
        faces = self.faces[index]
        m = int(rng.integers(self.num_inputs_min, self.num_inputs + 1))
        inputs = self._draw(rng, len(faces), m)
        targets = self._draw(rng, len(faces), self.num_targets)
        size, tsize = self.image_size, self.target_size
        return {
            "identity": self.names[index],
            "inputs": torch.stack([image_to_tensor(faces[i][0], size) for i in inputs]),
            "targets": torch.stack([image_to_tensor(faces[i][0], tsize, self.target_pixels) for i in targets]),
            "masks": torch.stack([mask_to_tensor(faces[i][1], tsize) for i in targets]),
        }


def collate(items: list[dict]) -> dict:
    """Pads inputs to the largest M; `input_valid` [B, M] marks the real ones (key padding)."""
    m = max(item["inputs"].shape[0] for item in items)
    shape = items[0]["inputs"].shape[1:]
    inputs = torch.zeros(len(items), m, *shape)
    valid = torch.zeros(len(items), m, dtype=torch.bool)
    for b, item in enumerate(items):
        k = item["inputs"].shape[0]
        inputs[b, :k], valid[b, :k] = item["inputs"], True
    return {
        "identity": [item["identity"] for item in items],
        "inputs": inputs,
        "input_valid": valid,
        "targets": torch.stack([item["targets"] for item in items]),
        "masks": torch.stack([item["masks"] for item in items]),
    }


class FewToManySampler(Sampler):
    """Endless batches of (identity index, draw index); epoch e shuffles identities with (seed, e).

    Global batch g holds `batch_size * world` identities; rank r takes its slice. Starting at
    `start_batch` replays exactly the stream an uninterrupted run would have seen from there.
    """

    def __init__(self, num_identities: int, batch_size: int, seed: int = 0, rank: int = 0,
                 world: int = 1, start_batch: int = 0):
        self.n, self.batch_size, self.seed = num_identities, batch_size, seed
        self.rank, self.world, self.start_batch = rank, world, start_batch
        self.per_epoch = num_identities // (batch_size * world)
        if self.per_epoch == 0:
            raise ManifestError(f"{num_identities} identities cannot fill one global batch of "
                                f"{batch_size} x {world} processes; lower --batch-size")

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = self.start_batch
        while True:
            epoch, pos = divmod(g, self.per_epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            lo = (pos * self.world + self.rank) * self.batch_size
            ids = order[lo:lo + self.batch_size]
            # the draw index is unique over the whole stream: ranks, batches and epochs
            base = (g * self.world + self.rank) * self.batch_size
            yield [(int(i), base + j) for j, i in enumerate(ids)]
            g += 1

    def __len__(self) -> int:  # batches per epoch; the stream itself is endless
        return self.per_epoch


def build_loader(manifest: str | Path, image_size: int, num_inputs: int, num_targets: int,
                 batch_size: int, workers: int = 0, seed: int = 0, rank: int = 0, world: int = 1,
                 start_batch: int = 0, num_inputs_min: int | None = None, clamp_batch: bool = False,
                 target_size: int | None = None, target_pixels: str = "clip") -> DataLoader:
    """clamp_batch: shrink the batch to the number of identities (eval sets may be small);
    target_size / target_pixels: the targets' own side and pixel range (see FewToManyDataset)."""
    identities = load_manifest(manifest)
    dataset = FewToManyDataset(identities, image_size, num_inputs, num_targets, num_inputs_min, seed,
                               target_size, target_pixels)
    if clamp_batch:
        batch_size = min(batch_size, len(dataset) // world)
    sampler = FewToManySampler(len(dataset), batch_size, seed, rank, world, start_batch)
    # an own generator keeps DataLoader from drawing its base seed from the global RNG
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0,
                      pin_memory=torch.cuda.is_available())
