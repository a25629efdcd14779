"""The optimiser and its schedule: AdamW over what trains, warmup then cosine decay."""
from __future__ import annotations

import importlib.util
import math

import torch

from omniid.errors import FlagError

NO_DECAY = ("queries", "pos_embed", "mask_token", "class_embedding", "positional_embedding")
OPTIMIZERS = ("adamw", "adamw_fused", "adamw_8bit")


def check_optimizer(kind: str | None) -> None:
    """FlagError for an optimizer this machine cannot build, so that omniid-train refuses it in one
    line before any work (a run folder started and then stopped would refuse the next command's
    optimizer as another option)."""
    if kind == "adamw_8bit" and importlib.util.find_spec("bitsandbytes") is None:
        raise FlagError("--optimizer adamw_8bit needs bitsandbytes (pip install bitsandbytes; CUDA only), which is "
                        "not among the project's requirements")


def lr_at(step: int, optim) -> float:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at `total_steps`."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    span = max(1, optim.total_steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    floor = optim.lr * optim.min_lr_ratio
    return floor + (optim.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group at `lr`, times the group's `lr_scale` where it has one (the representation's)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def _param_groups(model: torch.nn.Module, optim) -> list[dict]:
    """Decay and no-decay groups; with `representation_lr_scale` != 1, the parameters of the
    objective's `representation_module` get groups of their own with that `lr_scale`."""
    scale = getattr(optim, "representation_lr_scale", 1.0)
    module = getattr(model, "representation_module", None) if scale != 1.0 else None
    scaled = {id(p) for p in module.parameters()} if module is not None else set()
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            decays = not (param.ndim < 2 or any(k in name for k in NO_DECAY))
            groups.setdefault((id(param) in scaled, decays), []).append(param)
    out = []
    for rep, decays in ((False, True), (False, False), (True, True), (True, False)):
        if (rep, decays) in groups or not rep:  # the two unscaled groups always exist, as before
            group = {"params": groups.get((rep, decays), []), "weight_decay": optim.weight_decay if decays else 0.0}
            out.append({**group, "lr_scale": scale} if rep else group)
    return out


def build_optimizer(model: torch.nn.Module, optim) -> torch.optim.Optimizer:
    """AdamW over the parameters that require grad (frozen parts, e.g. FLUX, are left out).

    `adamw`: fused on CUDA (`adamw_kernel`); `adamw_fused`: the same, refused off CUDA; `adamw_8bit`:
    bitsandbytes' 8-bit AdamW (optimizer state in 8 bits), which is not installed by default.
    The representation's groups start at lr x their `lr_scale` (`set_lr` keeps them there)."""
    groups = _param_groups(model, optim)
    kind = getattr(optim, "optimizer", "adamw")
    check_optimizer(kind)
    if kind == "adamw_8bit":
        import bitsandbytes

        return bitsandbytes.optim.AdamW8bit(_scaled(groups, optim.lr), lr=optim.lr, betas=tuple(optim.betas))
    if kind not in OPTIMIZERS:
        raise FlagError(f"unknown optimizer {kind!r}; one of {', '.join(OPTIMIZERS)}")
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    if kind == "adamw_fused" and not on_cuda:
        raise FlagError("--optimizer adamw_fused runs on CUDA only")
    return torch.optim.AdamW(_scaled(groups, optim.lr), lr=optim.lr, betas=tuple(optim.betas),
                             **adamw_kernel(kind, on_cuda))


def adamw_kernel(kind: str, on_cuda: bool) -> dict:
    """On CUDA, AdamW is fused by default: the foreach kernel's temporaries cost about a copy of
    the trainable weights per GPU (about 10 GB in the paper flow stage). On CPU, torch's default."""
    return {"fused": True} if on_cuda or kind == "adamw_fused" else {}


def _scaled(groups: list[dict], lr: float) -> list[dict]:
    return [{**g, "lr": lr * g["lr_scale"]} if "lr_scale" in g else g for g in groups]
