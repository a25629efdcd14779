"""One optimizer step of a training run, and one evaluation, with randomness keyed by integers.

The objective's randomness comes from each item's own key where the loader's batch has them
(`omniid.noise`), else from a generator seeded per micro-step (`mask_generator`), so a resumed
run produces the same losses as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import math
from functools import partial

import numpy as np
import torch

from omniid.distributed import mean_over_ranks
from omniid.errors import NonFiniteLoss
from omniid.optim import lr_at, set_lr
from omniid.swap import SwapGap
from omniid.swap import evaluate as swap_evaluate


def mask_generator(device: torch.device, *key: int) -> torch.Generator:
    """The objective's generator (for a batch without item keys: `omniid.noise`) keyed
    by integers: (seed, 0, step, rank, micro) in training, (seed, 1, batch) in eval, so they never
    depend on what ran before."""
    key = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(key)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def run_model(model, batch: dict, generator, autocast: bool) -> torch.Tensor:
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        return model(batch, generator).loss


def evaluate(model, loader, batches: int, seed: int, device, autocast: bool) -> SwapGap:
    """The first `batches` batches of the test stream, with fixed randomness: the mean loss and
    the identity-swap gap (`omniid.swap.evaluate`)."""
    stream = (to_device(batch, device) for _, batch in zip(range(batches), loader))
    return swap_evaluate(model, stream, partial(mask_generator, device, seed, 1), seed, autocast)


def optimizer_step(run, ddp, optimizer, batches, trainable: list, step: int) -> float:
    """One optimizer step over `grad_accum` micro-batches -> its loss, the mean over every rank.
    run: the engine's run (preset, device, rank, world, autocast)."""
    opt = run.preset.optim
    set_lr(optimizer, lr_at(step, opt))
    step_loss = torch.zeros((), device=run.device)
    for micro in range(opt.grad_accum):
        batch = to_device(next(batches), run.device)
        sync = micro == opt.grad_accum - 1 or run.world == 1
        with (contextlib.nullcontext() if sync else ddp.no_sync()):
            generator = mask_generator(run.device, run.preset.seed, 0, step, run.rank, micro)
            loss = run_model(ddp, batch, generator, run.autocast)
            (loss / opt.grad_accum).backward()
        step_loss += loss.detach() / opt.grad_accum
    # every rank sees the global loss, so all of them stop together on NaN
    value = mean_over_ranks(step_loss, run.world).item()
    if not math.isfinite(value):
        raise NonFiniteLoss(f"loss is {value} at step {step + 1}; stopping (lower the lr or check the data)")
    if opt.grad_clip:
        torch.nn.utils.clip_grad_norm_(trainable, opt.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return value
