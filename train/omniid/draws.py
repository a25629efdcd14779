"""Which faces a few-to-many item draws, and reading them once each (paper §3.2).

An item is (identity index, draw index); every draw is a pure function of (seed, draw index). A
draw orders the identity's faces at random and takes the first M readable ones as inputs. The
targets depend on the decoder:
- MTD (`disjoint=False`, the paper's setting): R faces sampled from the identity's whole set apart
  from the inputs' draw (the paper samples inputs and targets from the identity's images), so an
  input is a target only as often as chance makes it: 3 -> 1 reconstructs a face it was not given
  5 times in 8 on MFHQ's 8 faces an identity (the first R faces of the inputs' own order would
  make its one target always an input: autoencoding). Where R covers every face (3 -> 8 and 8 -> 8
  on 8 faces: every face is both) they are taken in the inputs' order. A face that is both is
  decoded once. An identity with fewer than R faces cycles through them (4 faces for 3 -> 8: 8
  targets, 4 distinct), counted in a log line.
- flow (`disjoint=True`): the next R readable faces after the inputs, never an input, so that the
  decoder is always asked for views it was not given (ours, issue 21: §3.2 asks for more targets than
  inputs, not for targets apart from them).
  An identity with fewer than M + R faces keeps at least one face for the targets (M shrinks to
  its faces - 1) and cycles through its non-input faces to fill R (ours: each before any
  repeats); one with a single face is left out.
An unreadable face is skipped, so the next one takes its role; fewer targets than R cycle.
With `identity_side` (the `arcface` baselines' loaders) each input crop is also read at that side
(112 px: a 448 px JPEG crop decoded at 1/4 scale) for the frozen identity model, as the metric reads
it; no other representation's batch carries it or pays for it.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from omniid.crop_reader import CropReader, masks_to_tensor
from omniid.errors import BadCropsError, DataError, FlagError

log = logging.getLogger("omniid.data")


def item_key(seed: int, draw: int) -> int:
    """The seed of an item's own randomness (`omniid.noise`: MTD's masks, the flow stages'
    posterior sample, t and noise): a function of (seed, draw index) alone, as its faces are, so
    that a step draws the same whichever process, micro-batch or batch size reads the item
    (`--grad-accum` over one process or DDP over several)."""
    return int(np.random.SeedSequence([seed, draw, 2]).generate_state(1, dtype=np.uint64)[0] >> 1)


def report_short(name: str, counts: list[int], m: int, r: int, disjoint: bool) -> None:
    """One log line for the identities of set `name` (train, eval, heldout) whose R targets repeat
    (identities with `counts` faces each), and whether their inputs shrink below M."""
    need = m + r if disjoint else r  # MTD's targets are sampled from all the faces, the inputs' too
    short = [n for n in counts if n < need]
    if not short:
        return
    # flow: M shrinks to faces - 1 (a target is kept); MTD: to the faces there are
    fewest = min(short) - 1 if disjoint else min(short)
    shrink = (f"; the inputs of {sum(n - disjoint < m for n in short)} of them shrink to their faces"
              f"{' - 1' if disjoint else ''} (to {fewest} at the fewest)" if fewest < m else "")
    what = f"{m} + {r}" if disjoint else f"{r}"
    never = " (never an input)" if disjoint else ""
    # MFHQ's usual case in the flow stage (8 faces an identity, 3 + 4 or more): no warning
    log.info("%s: %d of %d identities have fewer than %s faces: their %d targets repeat faces%s%s",
             name, len(short), len(counts), what, r, never, shrink)


class FewToManyDataset(Dataset):
    """Item (identity index, draw index) -> {inputs [M,3,S,S], targets [R,3,T,T], masks [R,1,T,T]},
    plus `input_paths` / `target_paths` (the crops used) and `bad_crops`: the files this item
    found unreadable (the loader counts them). `masks=False`: no mask is read (the flow stage).
    Targets default to the inputs' size and CLIP normalisation (T=S); the flow stage asks for its
    own (`target_size=448, target_pixels="signed"`: [-1, 1]). `identity_side`: also
    `identity_inputs`, uint8 [M, side, side, 3], each input crop read at that side."""

    def __init__(self, identities: dict[str, list[tuple[Path, Path]]], image_size: int,
                 num_inputs: int, num_targets: int, num_inputs_min: int | None = None, seed: int = 0,
                 target_size: int | None = None, target_pixels: str = "clip", masks: bool = True,
                 disjoint: bool = False, name: str = "train", identity_side: int | None = None):
        self.target_size, self.target_pixels, self.masks = target_size or image_size, target_pixels, masks
        self.disjoint = disjoint
        least = 2 if disjoint else 1
        self.names = [n for n in identities if len(identities[n]) >= least]
        if len(self.names) < len(identities):
            log.warning("%s: %d of %d identities have a single face (no target that is not an input): left out",
                        name, len(identities) - len(self.names), len(identities))
        if not self.names:
            raise DataError(f"{name}: no identity has {least} faces or more ({len(identities)} identities)")
        self.faces, self.image_size, self.seed = [identities[n] for n in self.names], image_size, seed
        self.reader = CropReader(image_size)
        self.target_reader = CropReader(self.target_size, target_pixels)
        self.identity_reader = CropReader(identity_side) if identity_side else None
        self.num_inputs, self.num_targets, self.num_inputs_min = num_inputs, num_targets, num_inputs_min or num_inputs
        if not 1 <= self.num_inputs_min <= num_inputs or num_targets < 1:
            raise FlagError(f"need 1 <= num_inputs_min <= num_inputs and num_targets >= 1, got "
                            f"{self.num_inputs_min}, {num_inputs}, {num_targets}")
        report_short(name, [len(f) for f in self.faces], num_inputs, num_targets, disjoint)

    def __len__(self) -> int:
        return len(self.names)

    def _shared_pixels(self) -> bool:
        """Whether an input's decoded pixels are also its pixels as a target (MTD: same side and range)."""
        return type(self.target_reader) is CropReader and (self.target_size, self.target_pixels) == (
            self.image_size, "clip")

    def _split(self, index: int, order: np.ndarray, m: int, target_order: np.ndarray | None) -> tuple[list, list]:
        """([(crop, image)] x <= m inputs, [(crop, image, mask)] x <= R distinct targets), read in
        `order` (the targets in `target_order` where given); each file decoded once."""
        inputs, targets = (self._read_in_order(index, order, m) if target_order is None
                           else self._read_apart(index, order, m, target_order))
        if not inputs or not targets:
            raise BadCropsError(f"identity {self.names[index]}: too few of its {len(order)} crops (and masks) "
                                f"can be read (first: {self.faces[index][0][0]})")
        return inputs, targets

    def _read_in_order(self, index: int, order: np.ndarray, m: int) -> tuple[list, list]:
        """Inputs and targets from one order: MTD's where R covers the faces, flow's always."""
        inputs, targets, shared = [], [], self._shared_pixels()
        for i in order:
            crop, mask = self.faces[index][i]
            if len(inputs) >= m and len(targets) >= self.num_targets:
                break
            image = None
            if len(inputs) < m:
                read = self.reader.read(crop, None)
                if read is None:
                    continue
                inputs.append((crop, read[0]))
                image = read[0] if shared else None
                if self.disjoint:
                    continue
            if len(targets) < self.num_targets:
                target = self._read_target(crop, mask, image)
                if target is not None:
                    targets.append(target)
        if self.disjoint and not targets and len(inputs) > 1:  # unreadable files left no target
            crop = inputs.pop()[0]
            target = self._read_target(crop, dict(self.faces[index])[crop], None)
            targets = [] if target is None else [target]
        return inputs, targets

    def _read_apart(self, index: int, order: np.ndarray, m: int, target_order: np.ndarray) -> tuple[list, list]:
        """MTD with fewer targets than faces: the first m readable faces of `order` as inputs, the
        first R readable ones of `target_order` as targets (an input among them is not decoded again)."""
        inputs, targets, shared = [], [], self._shared_pixels()
        for i in order:
            if len(inputs) >= m:
                break
            crop = self.faces[index][i][0]
            read = self.reader.read(crop, None)
            if read is not None:
                inputs.append((crop, read[0]))
        images = {crop: image for crop, image in inputs} if shared else {}
        for i in target_order:
            if len(targets) >= self.num_targets:
                break
            crop, mask = self.faces[index][i]
            target = self._read_target(crop, mask, images.get(crop))
            if target is not None:
                targets.append(target)
        return inputs, targets

    def _read_target(self, crop: Path, mask: Path | None, image) -> tuple | None:
        if image is None:
            read = self.target_reader.read(crop, mask if self.masks else None)
            return None if read is None else (crop, *read)
        face = self.target_reader.read_mask(mask) if self.masks and mask is not None else None
        return None if self.masks and face is None else (crop, image, face)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, draw = item
        rng = np.random.default_rng([self.seed, draw])
        n = len(self.faces[index])
        m = min(int(rng.integers(self.num_inputs_min, self.num_inputs + 1)), n - 1 if self.disjoint else n)
        order = rng.permutation(n)
        # MTD's targets apart from the inputs' draw, from a stream of their own (the inputs' draws
        # stay as they were); where R covers every face, the inputs' order (module docstring).
        apart = None if self.disjoint or self.num_targets >= n else np.random.default_rng(
            [self.seed, draw, 1]).permutation(n)
        inputs, distinct = self._split(index, order, m, apart)
        targets = [distinct[i % len(distinct)] for i in range(self.num_targets)]
        pixels = self.reader.tensors([image for _, image in inputs])
        # MTD: an input that is also a target is the same array, converted by the same rule.
        known = {id(image): slot for (_, image), slot in zip(inputs, pixels)} if self._shared_pixels() else None
        result = {
            "identity": self.names[index],
            "inputs": pixels,
            "targets": self.target_reader.tensors([t[1] for t in targets], known),
            "input_paths": [str(crop) for crop, _ in inputs],
            "target_paths": [str(t[0]) for t in targets],
            "bad_crops": {**self.reader.bad, **self.target_reader.bad},
            "item_key": item_key(self.seed, draw),
        }
        if self.masks:
            result["masks"] = masks_to_tensor([t[2] for t in targets])
        if self.identity_reader is not None:
            result["identity_inputs"] = self._identity_inputs(index, [crop for crop, _ in inputs])
            result["bad_crops"].update(self.identity_reader.bad)
        return result

    def _identity_inputs(self, index: int, crops: list[Path]) -> torch.Tensor:
        """The input crops read again at the identity model's side: uint8 [M, side, side, 3]."""
        read = [self.identity_reader.read(crop, None) for crop in crops]
        if any(r is None for r in read):  # the same file was read at the encoder's side a moment ago
            raise BadCropsError(f"identity {self.names[index]}: an input crop could not be read again at "
                                f"{self.identity_reader.image_size} px ({self.identity_reader.bad})")
        return torch.from_numpy(np.stack([r[0] for r in read]))
