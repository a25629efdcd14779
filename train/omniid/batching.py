"""Few-to-many batches: the sampler of (identity, draw) indices, the collation, and a DataLoader
that counts the unreadable files its batches report.

Global batch g holds `batch_size * world` identities, each rank its slice; every draw index is
unique over the whole stream, so a batch is a pure function of (seed, g, rank) and a resumed run
sees what an uninterrupted one would have.
"""
from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from omniid.errors import BadCropsError, DataError


def default_max_bad(n_faces: int) -> int:
    return max(10, n_faces // 100)


def bad_crops_error(bad: dict[str, str], limit: int) -> BadCropsError:
    shown = "\n  ".join(f"{p} ({why})" for p, why in list(bad.items())[:10])
    return BadCropsError(f"{len(bad)} crop/mask files could not be read, more than the limit of {limit}; "
                         f"stopping. Re-run `mfhq extract` on their clips or drop them from the manifest:\n  {shown}")


def collate(items: list[dict]) -> dict:
    """Pads inputs (and `identity_inputs` where the items carry them) to the largest M; `input_valid`
    [B, M] marks the real ones (key padding). `masks` only when the items carry them; the crops'
    paths as lists per identity; `item_keys`, each item's own random seed (`omniid.draws.item_key`)."""
    m = max(item["inputs"].shape[0] for item in items)
    inputs = _padded([item["inputs"] for item in items], m)
    valid = torch.zeros(len(items), m, dtype=torch.bool)
    for b, item in enumerate(items):
        valid[b, :item["inputs"].shape[0]] = True
    batch = {
        "identity": [item["identity"] for item in items],
        "inputs": inputs,
        "input_valid": valid,
        "targets": torch.stack([item["targets"] for item in items]),
        "bad_crops": {k: v for item in items for k, v in item.get("bad_crops", {}).items()},
    }
    for key in ("input_paths", "target_paths"):
        if key in items[0]:
            batch[key] = [item[key] for item in items]
    if "item_key" in items[0]:  # a list of ints: it stays on the CPU, where the items' draws are made
        batch["item_keys"] = [item["item_key"] for item in items]
    if "masks" in items[0]:
        batch["masks"] = torch.stack([item["masks"] for item in items])
    if "identity_inputs" in items[0]:  # the `arcface` baselines' 112 px reads, padded as the inputs are
        batch["identity_inputs"] = _padded([item["identity_inputs"] for item in items], m)
    return batch


def _padded(tensors: list, m: int):
    """[k_b, ...] each -> [B, m, ...], zeros after each k_b (the dtype kept)."""
    out = tensors[0].new_zeros(len(tensors), m, *tensors[0].shape[1:])
    for b, tensor in enumerate(tensors):
        out[b, :tensor.shape[0]] = tensor
    return out


class FewToManySampler(Sampler):
    """Endless batches of (identity index, draw index); epoch e shuffles identities with (seed, e).

    Global batch g holds `batch_size * world` identities; rank r takes its slice. Starting at
    `start_batch` replays exactly the stream an uninterrupted run would have seen from there.
    An epoch is the `len(self)` whole global batches its shuffle fills: like `drop_last`, the last
    `left_out` identities of each epoch's order (n mod batch_size * world, a different few each
    epoch) are left out of it, so that every batch holds exactly `batch_size` identities.
    """

    def __init__(self, num_identities: int, batch_size: int, seed: int = 0, rank: int = 0,
                 world: int = 1, start_batch: int = 0):
        self.n, self.batch_size, self.seed = num_identities, batch_size, seed
        self.rank, self.world, self.start_batch = rank, world, start_batch
        self.per_epoch = num_identities // (batch_size * world) if batch_size > 0 else 0
        self.left_out = num_identities - self.per_epoch * batch_size * world
        if self.per_epoch == 0:
            raise DataError(f"{num_identities} identities cannot fill one global batch of "
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


def quiet_worker(worker_id: int) -> None:
    """A DataLoader worker ignores Ctrl-C (the trainer stops it) and exits quietly on SIGTERM: a
    terminal's Ctrl-C, or a SIGTERM to the process group, reaches every worker too, and a worker
    that died of it would print its own traceback, or make the loader raise in the trainer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # status 0: the loader reports a worker killed by a signal as a crash
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    sys.excepthook = _quiet_when_the_trainer_left(sys.excepthook)


def _quiet_when_the_trainer_left(previous):
    """sys.excepthook for a worker: multiprocessing's resource sharer (the thread that hands the
    trainer the file descriptors of a batch's tensors) reports a connection the trainer dropped
    mid-handshake, as it does when Ctrl-C stops the trainer, through sys.excepthook: a traceback
    under the one stop line, though nothing went wrong. Only that is silenced; the rest goes on."""
    def hook(exc_type, exc, tb):
        gone = issubclass(exc_type, (ConnectionError, EOFError))
        if gone and any(frame.f_code.co_filename.endswith("resource_sharer.py") for frame, _ in traceback.walk_tb(tb)):
            return
        previous(exc_type, exc, tb)
    return hook


class FewToManyLoader(DataLoader):
    """A DataLoader that counts the unreadable files its batches report (from every worker) and
    stops with BadCropsError past `max_bad_crops`. Its workers exit quietly on a signal."""

    def __init__(self, *args, max_bad_crops: int, **kwargs):
        if kwargs.get("num_workers"):
            kwargs.setdefault("worker_init_fn", quiet_worker)
        super().__init__(*args, **kwargs)
        self.max_bad_crops = max_bad_crops
        self.bad_crops: dict[str, str] = {}

    def __iter__(self):
        for batch in super().__iter__():
            self.bad_crops.update(batch.pop("bad_crops", {}))
            if len(self.bad_crops) > self.max_bad_crops:
                raise bad_crops_error(self.bad_crops, self.max_bad_crops)
            yield batch
