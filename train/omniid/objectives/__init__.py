"""Training objectives as plug-ins, one per stage, chosen by `omniid-train --stage`.

An objective is an `nn.Module` holding everything one stage trains (and any frozen parts):

    forward(batch, generator, tokens=None) -> ObjectiveOutput(loss, pred, aux)
        batch: the loader's dict; generator: the stage's randomness for a batch made by hand,
        keyed by the engine per (seed, step, rank, micro-step); a loader's batch carries
        `item_keys`, one per item, and each item draws from its own (`omniid.noise`: masks,
        posterior sample, t, noise), so a resume replays them exactly and a step does not depend
        on how its items are split over micro-batches or processes;
        tokens: a representation to decode from instead of the batch's own (drawing the same
        randomness), for the identity-swap check (`omniid.swap`)
    represent(batch) -> tokens [B, ...]     the representation of the batch's inputs
    representation_module: nn.Module         its parameters (`representation_lr_scale`)
    save_pretrained(folder) / load_pretrained(folder)   what a checkpoint stores of the weights
    init_from(folder)       the encoder of another stage's checkpoint (the schedule's hand-over)
    set_grad_checkpointing(enable)
    loader_options: dict    extra `build_loader` arguments the stage's batches need
    stage: str

The engine trains whatever parameters have `requires_grad`; it never names a decoder.
`OBJECTIVES` is one table, stage -> builder, importing each objective's `build` by name; the
objectives import `ObjectiveOutput` from `omniid.objectives.base`, never this registry.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from omniid.objectives.base import ObjectiveOutput
from omniid.objectives.controlnet import build as build_adapter
from omniid.objectives.flow import build as build_flow
from omniid.objectives.mtd import build as build_mtd

__all__ = ["OBJECTIVES", "ObjectiveOutput", "build_objective", "register_objective"]

ObjectiveBuilder = Callable[..., nn.Module]
# one table, stage -> builder; the objectives know nothing of it
OBJECTIVES: dict[str, ObjectiveBuilder] = {"mtd": build_mtd, "flow": build_flow, "adapter": build_adapter}


def register_objective(stage: str):
    """`@register_objective("mine")` on a builder adds one more stage."""
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
