"""Identity representations the flow-matching decoder can be conditioned on, in a registry.

A representation is an `nn.Module` with
    forward(batch) -> tokens [B, N, D]     batch: the loader's dict (`inputs` [B, M, 3, S, S],
                                           `input_valid` [B, M], `identity`, ...)
    num_tokens: int (N), dim: int (D)
and optionally `set_grad_checkpointing(enable)`, `save_pretrained(folder)` and
`load_pretrained(folder)` (what a checkpoint stores of it; a representation without trainable
parameters needs neither), and `loader_options` (more `build_loader` arguments its batches need,
joined to the stage's: the `arcface` baselines' `identity_side`, whose batches then carry
`identity_inputs`, the input crops read at that side; inference prepares the same).

`REPRESENTATIONS` is one table, name -> builder(preset, **options): `omniid` (the Omni-ID
encoder, trained with the adapter; the default) and the baselines of the paper's Tables 1-2
(`clip`, `arcface`, `arcface+clip`), imported by name from `omniid.baselines` (which knows
nothing of this registry; its docstring says which of their details are ours). Adding one more is one line:

    register_representation("mine", build_mine)     # build_mine(preset, **options) -> nn.Module

`omniid-train --stage flow --representation NAME` picks one.
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file
from torch import nn

from omniid.baselines import build_arcface, build_arcface_clip, build_clip
from omniid.encoder import WEIGHTS_FILE, OmniIDEncoder

RepresentationBuilder = Callable[..., nn.Module]


def register_representation(name: str, builder: RepresentationBuilder | None = None):
    """`register_representation("x", build)` or `@register_representation("x")` on a builder."""
    def add(fn: RepresentationBuilder) -> RepresentationBuilder:
        REPRESENTATIONS[name] = fn
        return fn
    return add(builder) if builder is not None else add


def loader_options_of(name: str) -> dict:
    """The `build_loader` arguments representation `name`'s batches need (its `loader_options`),
    without building it: its builder's return annotation names its class, which holds them as a
    class attribute (the built module's too). The data-path benchmarks read them here, so they
    measure a baseline's batches as its training run reads them, with no weights loaded."""
    if name not in REPRESENTATIONS:
        raise KeyError(f"unknown representation {name!r}; registered: {', '.join(sorted(REPRESENTATIONS))}")
    made = typing.get_type_hints(REPRESENTATIONS[name]).get("return")
    if made is None:  # no silent {}: a baseline's reads left out of a benchmark is what this is for
        raise TypeError(f"representation {name!r}: its builder has no return annotation naming its class")
    return dict(getattr(made, "loader_options", {}))


def build_representation(name: str, preset, **options) -> nn.Module:
    """options: what a builder may use (`clip_weights`, `device`...); builders ignore the rest."""
    if name not in REPRESENTATIONS:
        raise KeyError(f"unknown representation {name!r}; registered: {', '.join(sorted(REPRESENTATIONS))}")
    module = REPRESENTATIONS[name](preset, **options)
    for attr in ("num_tokens", "dim"):
        if not isinstance(getattr(module, attr, None), int):
            raise TypeError(f"representation {name!r} has no integer `{attr}`")
    return module


class OmniIDRepresentation(nn.Module):
    """The Omni-ID encoder as a representation: ℓ [B, L, C], every parameter trained."""

    def __init__(self, encoder: OmniIDEncoder):
        super().__init__()
        self.encoder = encoder
        self.num_tokens = encoder.config.num_queries
        self.dim = encoder.config.width

    def forward(self, batch: dict) -> torch.Tensor:
        return self.encoder.forward_encoder(batch["inputs"], batch.get("input_valid"))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.encoder.set_grad_checkpointing(enable)

    def save_pretrained(self, folder: str | Path) -> None:
        # the step folder stays loadable by OmniIDEncoder.from_pretrained
        self.encoder.save_pretrained(folder)

    def load_pretrained(self, folder: str | Path) -> None:
        self.encoder.load_state_dict(load_file(str(Path(folder) / WEIGHTS_FILE)))


def build_omniid(preset, clip_weights=None, pretrained_clip: bool = True, **_) -> OmniIDRepresentation:
    return OmniIDRepresentation(OmniIDEncoder(preset.model, clip_weights, pretrained_clip))


# the baselines the paper compares in Table 1, so that `--representation clip` trains them the same way
REPRESENTATIONS: dict[str, RepresentationBuilder] = {
    "omniid": build_omniid,
    "clip": build_clip,
    "arcface": build_arcface,
    "arcface+clip": build_arcface_clip,
}
