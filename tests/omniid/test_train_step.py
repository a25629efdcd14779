"""One optimizer step over grad_accum micro-batches (omniid.train_step.optimizer_step): its gradient
is the mean of the micro-batches' (each loss divided by grad_accum before backward, so that the
step does not grow with the accumulation), clipped to grad_clip; its loss is their mean."""
from __future__ import annotations

import dataclasses
import types

import pytest
import torch

from omniid.config import get_preset
from omniid.objectives import build_objective
from omniid.optim import lr_at
from omniid.train_step import mask_generator, optimizer_step, run_model
from omniid_fixtures import one_torch_thread  # noqa: F401  (pytest fixture)


def _batch(preset, seed: int, b: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    side = preset.model.image_size
    return {"identity": [f"id{seed}-{i}" for i in range(b)], "inputs": torch.randn(b, 3, 3, side, side, generator=g),
            "input_valid": torch.ones(b, 3, dtype=torch.bool),
            "targets": torch.rand(b, 2, 3, side, side, generator=g) * 2 - 1,
            "masks": torch.ones(b, 2, 1, side, side)}


@pytest.mark.parametrize("grad_clip", [0.0, 1e-3])
def test_an_accumulated_step_takes_the_mean_of_its_micro_batches_gradients(grad_clip):
    tiny = get_preset("tiny", stage="mtd")
    # lr 1: updates far above the parameters' float32 rounding, so that they compare closely
    preset = dataclasses.replace(tiny, optim=dataclasses.replace(tiny.optim, lr=1.0, grad_accum=2, grad_clip=grad_clip))
    torch.manual_seed(0)
    model = build_objective("mtd", preset).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    batches, step, cpu = [_batch(preset, 1), _batch(preset, 2)], 5, torch.device("cpu")
    # The reference: the mean of the two micro-batches' losses, drawn with the step's own masks.
    torch.manual_seed(1)
    losses = [run_model(model, batch, mask_generator(cpu, preset.seed, 0, step, 0, micro), False)
              for micro, batch in enumerate(batches)]
    mean = (losses[0] + losses[1]) / 2
    grads = [g if g is not None else torch.zeros_like(p)
             for p, g in zip(trainable, torch.autograd.grad(mean, trainable, allow_unused=True))]
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
    assert norm > 10 * 1e-3  # the clip below is active
    if grad_clip:
        grads = [g * (grad_clip / norm) for g in grads]
    # Plain SGD makes the update the gradient itself: parameter change = -lr x gradient.
    before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.SGD(trainable, lr=1.0)
    run = types.SimpleNamespace(preset=preset, device=cpu, rank=0, world=1, autocast=False)
    torch.manual_seed(1)
    value = optimizer_step(run, model, optimizer, iter(batches), trainable, step)
    assert value == pytest.approx(float(mean.detach()), rel=1e-5)
    # Compared as one vector: a parameter's change is a few float32 steps of the parameter, so
    # each element carries rounding of about 1e-7 of the parameter's size.
    moved = torch.cat([(old - p.detach()).ravel() for p, old in zip(trainable, before)])
    expected = lr_at(step, preset.optim) * torch.cat([g.ravel() for g in grads])
    assert float(torch.linalg.vector_norm(moved - expected) / torch.linalg.vector_norm(expected)) < 1e-2
