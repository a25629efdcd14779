"""The training loop of the `mtd` stage: optimisation, logging, eval, checkpoint and resume.

One process per GPU under torchrun (DDP; gloo on CPU). Every source of randomness is keyed by
(seed, step, rank): batches come from `FewToManySampler`, the MTD masks from a generator seeded
per micro-step, so a resumed run produces the same losses as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from omniid.checkpoint import capture_rng, find_checkpoint, load_checkpoint, save_checkpoint
from omniid.config import Preset
from omniid.data import build_loader
from omniid.mtd import OmniIDMTD

log = logging.getLogger(__name__)

NO_DECAY = ("queries", "pos_embed", "mask_token", "class_embedding", "positional_embedding")


class NonFiniteLoss(FloatingPointError):
    """Training stopped: the loss became NaN or infinite."""


def lr_at(step: int, optim) -> float:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at `total_steps`."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    span = max(1, optim.total_steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    floor = optim.lr * optim.min_lr_ratio
    return floor + (optim.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, optim) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or any(k in name for k in NO_DECAY) else decay).append(param)
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas))


def mask_generator(device: torch.device, *key: int) -> torch.Generator:
    """A generator for MTD masks keyed by integers: (seed, 0, step, rank, micro) in training,
    (seed, 1, batch) in eval, so masks never depend on what ran before."""
    key = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(key)


def setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def run_model(model, batch: dict, generator, autocast: bool) -> torch.Tensor:
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        return model(batch["inputs"], batch["input_valid"], batch["targets"], batch["masks"], generator)


@torch.no_grad()
def evaluate(model: OmniIDMTD, loader, batches: int, seed: int, device, autocast: bool) -> float:
    """Mean MTD loss over the first `batches` batches of the test stream, with fixed masks."""
    was_training = model.training
    model.eval()
    losses = []
    for i, batch in zip(range(batches), loader):
        losses.append(run_model(model, to_device(batch, device), mask_generator(device, seed, 1, i), autocast).item())
    model.train(was_training)
    return float(np.mean(losses))


class JsonlLog:
    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")


def train(preset: Preset, manifest: str | Path, out: str | Path, test_manifest: str | Path | None = None,
          resume: str | None = None, clip_weights: str | None = None, stop_after: int | None = None) -> dict:
    """Train the encoder + MTD to `preset.optim.total_steps` (or `stop_after` optimizer steps)."""
    rank, world, device = setup_distributed()
    out = Path(out)
    main = rank == 0
    if not main:  # one console log per run, from rank 0
        logging.getLogger("omniid").setLevel(logging.WARNING)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "preset.json").write_text(json.dumps(preset.to_dict(), indent=2))
    opt, data = preset.optim, preset.data
    autocast = opt.bf16 and device.type == "cuda"
    if device.type == "cpu" and preset.cpu_threads:
        torch.set_num_threads(preset.cpu_threads)

    torch.manual_seed(preset.seed)  # the same initial weights on every rank
    model = OmniIDMTD(preset.model, clip_weights).to(device)
    model.set_grad_checkpointing(opt.grad_checkpointing)
    optimizer = build_optimizer(model, opt)
    torch.manual_seed(preset.seed + rank)

    step, samples = 0, 0
    checkpoint = find_checkpoint(out, resume) if resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, rank)
        step, samples = state["step"], state["samples"]
        log.info("resumed from %s at step %d", checkpoint, step)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model

    loader = build_loader(manifest, preset.model.image_size, data.num_inputs, data.num_targets, data.batch_size,
                          data.workers, preset.seed, rank, world, start_batch=step * opt.grad_accum,
                          num_inputs_min=data.num_inputs_min)
    test_loader = None
    if main and test_manifest and Path(test_manifest).is_file():
        test_loader = build_loader(test_manifest, preset.model.image_size, data.num_inputs, data.num_targets,
                                   data.batch_size, 0, preset.seed, clamp_batch=True)
    jsonl = JsonlLog(out / "log.jsonl", main)
    end = opt.total_steps if stop_after is None else min(opt.total_steps, step + stop_after)
    bar = tqdm(total=end, initial=step, disable=not main, desc="omniid mtd", dynamic_ncols=True)
    batches = iter(loader)
    window_loss, window_samples, window_start = [], 0, time.perf_counter()
    last = {}
    model.train()
    while step < end:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, opt)
        step_loss = torch.zeros((), device=device)
        for micro in range(opt.grad_accum):
            batch = to_device(next(batches), device)
            sync = micro == opt.grad_accum - 1 or world == 1
            with (contextlib.nullcontext() if sync else ddp.no_sync()):
                loss = run_model(ddp, batch, mask_generator(device, preset.seed, 0, step, rank, micro), autocast)
                (loss / opt.grad_accum).backward()
            step_loss += loss.detach() / opt.grad_accum
        if world > 1:  # every rank sees the global loss, so all of them stop together on NaN
            dist.all_reduce(step_loss)
            step_loss /= world
        value = step_loss.item()
        if not math.isfinite(value):
            raise NonFiniteLoss(f"loss is {value} at step {step}; stopping (lower the lr or check the data)")
        if opt.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        n = data.batch_size * opt.grad_accum * world
        samples += n
        window_samples += n
        window_loss.append(value)
        bar.update(1)
        if step % preset.log_every == 0 or step == end:
            elapsed = time.perf_counter() - window_start
            last = {"step": step, "loss": float(np.mean(window_loss)), "lr": optimizer.param_groups[0]["lr"],
                    "samples_per_s": window_samples / max(elapsed, 1e-9), "samples": samples, "world": world,
                    "gpu_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}
            jsonl.write(last)
            bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}")
            log.info("step %d loss %.5f lr %.3e %.1f samples/s", step, last["loss"], last["lr"], last["samples_per_s"])
            window_loss, window_samples = [], 0
        if test_loader is not None and (step % preset.eval_every == 0 or step == end):
            eval_loss = evaluate(model, test_loader, preset.eval_batches, preset.seed, device, autocast)
            jsonl.write({"step": step, "eval_loss": eval_loss})
            log.info("step %d eval loss %.5f", step, eval_loss)
        if step % preset.save_every == 0 or step == end:
            _save(out, model, optimizer, step, samples, preset, world, main)
        if not window_loss:  # samples/s counts training only, not eval or checkpoint writing
            window_start = time.perf_counter()
    bar.close()
    if world > 1:
        dist.barrier()
    return {"step": step, "samples": samples, **last}


def _save(out, model, optimizer, step, samples, preset, world, main) -> None:
    rngs = [capture_rng()]
    # a checksum of the weights per rank: DDP keeps them identical, and the record shows it
    checksums = [sum(p.detach().double().sum().item() for p in model.parameters())]
    if world > 1:  # each rank's RNG state, so that every rank resumes exactly
        rngs, local = [None] * world, checksums[0]
        dist.all_gather_object(rngs, capture_rng())
        checksums = [None] * world
        dist.all_gather_object(checksums, local)
    if main:
        if len(set(checksums)) > 1:
            log.warning("ranks hold different weights at step %d: %s", step, checksums)
        path = save_checkpoint(out, model, optimizer, step, {"samples": samples, "world": world,
                                                             "preset": preset.name,
                                                             "weight_checksums": checksums}, rngs)
        log.info("saved %s", path)
    if world > 1:
        dist.barrier()
