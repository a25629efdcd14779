"""Training objectives as plug-ins, one per stage, chosen by `omniid-train --stage`.

An objective is an `nn.Module` holding everything one stage trains (and any frozen parts):

    forward(batch, generator) -> ObjectiveOutput(loss, pred, aux)
        batch: the loader's dict; generator: the stage's randomness (masks, noise, t), keyed by
        the engine per (seed, step, rank, micro-step) so that a resume replays it exactly.
    save_pretrained(folder) / load_pretrained(folder)   what a checkpoint stores of the weights
    init_from(folder)       the encoder of another stage's checkpoint (the schedule's hand-over)
    set_grad_checkpointing(enable)
    loader_options: dict    extra `build_loader` arguments the stage's batches need
    stage: str

The engine trains whatever parameters have `requires_grad`; it never names a decoder.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn


class ObjectiveOutput(NamedTuple):
    loss: torch.Tensor            # scalar, the mean over the batch's targets
    pred: torch.Tensor | None     # the decoder's prediction (MTD: patches; flow: velocity)
    aux: dict                     # anything else worth a look (masks, timesteps, targets)


ObjectiveBuilder = Callable[..., nn.Module]
OBJECTIVES: dict[str, ObjectiveBuilder] = {}


def register_objective(stage: str):
    def add(builder: ObjectiveBuilder) -> ObjectiveBuilder:
        OBJECTIVES[stage] = builder
        return builder
    return add


def build_objective(stage: str, preset, **options) -> nn.Module:
    """options (each builder takes what it needs): clip_weights, representation, flux_path,
    prompt_embeds (a cache file), device."""
    if stage not in OBJECTIVES:
        raise KeyError(f"unknown stage {stage!r}; registered: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[stage](preset, **options)


from omniid.objectives import flow, mtd  # noqa: E402,F401  (each registers itself)
