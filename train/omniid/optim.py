"""The optimiser and its schedule: AdamW over what trains, warmup then cosine decay."""
from __future__ import annotations

import math

import torch

from omniid.errors import FlagError

NO_DECAY = ("queries", "pos_embed", "mask_token", "class_embedding", "positional_embedding")
OPTIMIZERS = ("adamw", "adamw_fused", "adamw_8bit")


def lr_at(step: int, optim) -> float:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at `total_steps`."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    span = max(1, optim.total_steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    floor = optim.lr * optim.min_lr_ratio
    return floor + (optim.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def build_optimizer(model: torch.nn.Module, optim) -> torch.optim.Optimizer:
    """AdamW over the parameters that require grad (frozen parts, e.g. FLUX, are left out).

    `adamw_fused`: torch's fused CUDA kernel (same maths, fewer launches); `adamw_8bit`:
    bitsandbytes' 8-bit AdamW (optimizer state in 8 bits), which is not installed by default."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or any(k in name for k in NO_DECAY) else decay).append(param)
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kind = getattr(optim, "optimizer", "adamw")
    if kind == "adamw_8bit":
        try:
            import bitsandbytes
        except ImportError as error:
            raise ImportError("--optimizer adamw_8bit needs bitsandbytes (pip install bitsandbytes; "
                              "CUDA only), which is not among the project's requirements") from error
        return bitsandbytes.optim.AdamW8bit(groups, lr=optim.lr, betas=tuple(optim.betas))
    if kind not in OPTIMIZERS:
        raise FlagError(f"unknown optimizer {kind!r}; one of {', '.join(OPTIMIZERS)}")
    fused = kind == "adamw_fused"
    if fused and not all(p.is_cuda for g in groups for p in g["params"]):
        raise FlagError("--optimizer adamw_fused runs on CUDA only")
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), fused=fused or None)
