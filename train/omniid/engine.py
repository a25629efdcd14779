"""The training loop of any objective: optimisation, logging, eval, checkpoint, resume, init-from.

The engine is given a built objective (see `omniid.objectives`) and a loader factory; it never
names a decoder. One process per GPU under torchrun (DDP; gloo on CPU). Every source of
randomness is keyed by (seed, step, rank): batches come from `FewToManySampler`, the objective's
randomness (MTD masks; flow noise and t) from a generator seeded per micro-step, so a resumed
run produces the same losses as an uninterrupted one.
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

from omniid.checkpoint import (CheckpointError, capture_rng, find_checkpoint, load_checkpoint, read_state,
                               require_files, resolve_checkpoint, save_checkpoint)
from omniid.config import Preset
from omniid.encoder import CONFIG_FILE, WEIGHTS_FILE

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


OPTIMIZERS = ("adamw", "adamw_fused", "adamw_8bit")


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
        raise ValueError(f"unknown optimizer {kind!r}; one of {', '.join(OPTIMIZERS)}")
    fused = kind == "adamw_fused"
    if fused and not all(p.is_cuda for g in groups for p in g["params"]):
        raise ValueError("--optimizer adamw_fused runs on CUDA only")
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), fused=fused or None)


def mask_generator(device: torch.device, *key: int) -> torch.Generator:
    """The objective's generator (MTD masks, flow noise and t) keyed by integers: (seed, 0, step,
    rank, micro) in training, (seed, 1, batch) in eval, so they never depend on what ran before."""
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
        return model(batch, generator).loss


@torch.no_grad()
def evaluate(model, loader, batches: int, seed: int, device, autocast: bool) -> float:
    """Mean loss over the first `batches` batches of the test stream, with fixed randomness."""
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


ENCODER_FIELDS = ("clip_model", "image_size", "num_queries", "width", "heads", "cross_blocks", "self_blocks",
                  "mlp_ratio")


def check_init_from(path: str | Path, preset: Preset) -> Path:
    """The checkpoint folder `--init-from` names, checked to hold an encoder of this preset."""
    folder = resolve_checkpoint(path)
    require_files(folder, (CONFIG_FILE, WEIGHTS_FILE), "not an Omni-ID checkpoint",
                  "--init-from takes a run folder, its checkpoints/latest or a step folder")
    state = read_state(folder)
    saved = json.loads((folder / CONFIG_FILE).read_text()).get("model", {})
    ours = preset.model.to_dict()
    # what shapes the encoder; MTD-only settings (mask ratio, decoder patch) may differ
    differs = [k for k in ENCODER_FIELDS if saved.get(k) != ours[k]]
    theirs = state.get("preset")
    if (theirs and theirs != preset.name) or differs:
        raise CheckpointError(f"{folder}: a checkpoint of preset {theirs or '?'} (encoder settings differ: "
                              f"{', '.join(differs) or 'none'}); this run uses preset {preset.name}")
    return folder


def _ddp(model, device):
    # frozen parts (FLUX, the VAE) are neither synchronised nor broadcast: every rank loads them
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    frozen += [n for n, _ in model.named_buffers()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, frozen)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def train(preset: Preset, model: torch.nn.Module, make_loader, out: str | Path, test_loader=None,
          resume: str | None = None, init_from: str | Path | None = None, stop_after: int | None = None,
          record: dict | None = None) -> dict:
    """Train `model` (an objective, already on this rank's device) to `preset.optim.total_steps`
    (or `stop_after` optimizer steps of this invocation).

    make_loader(start_batch) -> an iterable of batches starting at that global batch (so a resume
    sees what an uninterrupted run would have). init_from: a checkpoint whose encoder starts this
    run (ignored when resuming: the run's own checkpoint holds it). record: extra run facts
    (representation, prompt cache...) written to state.json.
    """
    rank, world, device = setup_distributed()
    out = Path(out)
    main = rank == 0
    stage = getattr(model, "stage", preset.stage)
    if not main:  # one console log per run, from rank 0
        logging.getLogger("omniid").setLevel(logging.WARNING)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "preset.json").write_text(json.dumps(preset.to_dict(), indent=2))
    opt = preset.optim
    autocast = opt.bf16 and device.type == "cuda"
    if device.type == "cpu" and preset.cpu_threads:
        torch.set_num_threads(preset.cpu_threads)

    model.set_grad_checkpointing(opt.grad_checkpointing)
    optimizer = build_optimizer(model, opt)
    trainable = [p for p in model.parameters() if p.requires_grad]

    step, samples = 0, 0
    checkpoint = find_checkpoint(out, resume) if resume else None
    record = dict(record or {})
    if checkpoint is not None:
        theirs = read_state(checkpoint).get("stage", "mtd")
        if theirs != stage:
            raise CheckpointError(f"{checkpoint}: a {theirs} checkpoint; the {stage} stage resumes only its own "
                                  f"(start it from this one with --init-from and a new --out)")
        state = load_checkpoint(checkpoint, model, optimizer, rank)
        step, samples = state["step"], state["samples"]
        record.setdefault("init_from", state.get("init_from"))
        log.info("resumed from %s at step %d", checkpoint, step)
    elif init_from is not None:
        folder = check_init_from(init_from, preset)
        model.init_from(folder)
        record["init_from"] = str(folder)
        log.info("encoder from %s (its decoder, if any, is dropped)", folder)
    ddp = _ddp(model, device) if world > 1 else model

    loader = make_loader(step * opt.grad_accum)
    jsonl = JsonlLog(out / "log.jsonl", main)
    end = opt.total_steps if stop_after is None else min(opt.total_steps, step + stop_after)
    bar = tqdm(total=end, initial=step, disable=not main, desc=f"omniid {stage}", dynamic_ncols=True)
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
            torch.nn.utils.clip_grad_norm_(trainable, opt.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        n = preset.data.batch_size * opt.grad_accum * world
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
            _save(out, model, optimizer, step, samples, preset, world, main, {"stage": stage, **record})
        if not window_loss:  # samples/s counts training only, not eval or checkpoint writing
            window_start = time.perf_counter()
    bar.close()
    if world > 1:
        dist.barrier()
    return {"step": step, "samples": samples, **last}


def _save(out, model, optimizer, step, samples, preset, world, main, record) -> None:
    rngs = [capture_rng()]
    # a checksum of the weights per rank: DDP keeps them identical, and the record shows it
    checksums = [sum(p.detach().double().sum().item() for p in model.parameters() if p.requires_grad)]
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
                                                             "weight_checksums": checksums, **record}, rngs)
        log.info("saved %s", path)
    if world > 1:
        dist.barrier()
