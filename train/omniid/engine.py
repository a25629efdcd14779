"""The training loop of any objective: optimisation, logging, eval, checkpoint, resume, init-from.

The engine is given a built objective (see `omniid.objectives`) and a loader factory; it never
names a decoder. One process per GPU under torchrun (`omniid.distributed`; gloo on CPU). Every
source of randomness is keyed by (seed, step, rank): batches come from `FewToManySampler`, the
objective's randomness (MTD masks; flow noise and t) from a generator seeded per micro-step, so a
resumed run produces the same losses as an uninterrupted one. The optimiser and its schedule live
in `omniid.optim`, the run folder and its checkpoints in `omniid.checkpoint`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from omniid.checkpoint import (CHECKPOINTS, LOG_FILE, STATE_FILE, CheckpointError, load_checkpoint, read_state,
                               require_files, resolve_checkpoint, write_run_preset)
from omniid.cli_format import progress_enabled
from omniid.config import Preset
from omniid.continuation import CONTINUED_WITH, RESUMED_WITH, continued_with
from omniid.convergence import start_rule
from omniid.distributed import barrier, mean_over_ranks, setup_distributed, wrap_ddp
from omniid.encoder import CONFIG_FILE, WEIGHTS_FILE
from omniid.errors import NonFiniteLoss
from omniid.optim import build_optimizer, lr_at, set_lr
from omniid.swap import SwapGap, eval_record
from omniid.swap import evaluate as swap_evaluate
from omniid.recovery import keep_log_until, problem_of, remove_stale_temps, resume_from, stopping_cleanly
from omniid.retention import record_use, remove_leftovers
from omniid.saving import save_step

log = logging.getLogger(__name__)


def mask_generator(device: torch.device, *key: int) -> torch.Generator:
    """The objective's generator (MTD masks, flow noise and t) keyed by integers: (seed, 0, step,
    rank, micro) in training, (seed, 1, batch) in eval, so they never depend on what ran before."""
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
    problem = problem_of(folder) if (folder / STATE_FILE).is_file() else None
    if problem is not None:
        raise CheckpointError(f"{folder}: a damaged checkpoint ({problem}); --init-from takes an intact one")
    return folder


@dataclass
class _Run:
    """What every helper of one `train` call shares."""
    preset: Preset
    out: Path
    rank: int
    world: int
    device: torch.device
    stage: str
    step: int = 0               # optimizer steps done
    end: int = 0
    saved: int | None = None    # the step of the checkpoint saved or resumed from last
    bar: tqdm | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def autocast(self) -> bool:
        return self.preset.optim.bf16 and self.device.type == "cuda"


class _Progress:
    """What a run reports (log.jsonl on rank 0, the progress bar, the console lines), and the
    window of steps since the last log line: its losses, samples and start time."""

    def __init__(self, run: _Run, step: int, end: int):
        self.run, self.jsonl = run, JsonlLog(run.out / LOG_FILE, run.main)
        self.bar = tqdm(total=end, initial=step, disable=not (run.main and progress_enabled()),
                        desc=f"omniid {run.stage}", dynamic_ncols=True)
        self.losses, self.samples, self.start = [], 0, time.perf_counter()
        self.postfix: dict[str, str] = {}

    def add(self, loss: float, samples: int) -> None:
        self.samples += samples
        self.losses.append(loss)
        self.bar.update(1)

    def log_step(self, step: int, samples: int, lr: float) -> dict:
        elapsed = time.perf_counter() - self.start
        device = self.run.device
        last = {"step": step, "loss": float(np.mean(self.losses)), "lr": lr,
                "samples_per_s": self.samples / max(elapsed, 1e-9), "samples": samples, "world": self.run.world,
                "gpu_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}
        self.jsonl.write(last)
        self.bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}", **self.postfix)
        log.info("step %d loss %.5f lr %.3e %.1f samples/s", step, last["loss"], last["lr"], last["samples_per_s"])
        self.losses, self.samples = [], 0
        return last

    def log_eval(self, step: int, results: dict[str, SwapGap]) -> dict:
        preset = self.run.preset
        record = eval_record(results, step, self.run.stage, preset.swap_warmup_steps, preset.swap_min_gap)
        self.postfix.update({f"{name}_gap": f"{100 * r.swap_gap_rel:+.1f}%" for name, r in results.items()
                             if r.swap_gap_rel is not None})
        self.jsonl.write(record)
        return record

    def restart_window(self) -> None:
        if not self.losses:  # samples/s counts training only, not eval or checkpoint writing
            self.start = time.perf_counter()


def _prepare(run: _Run) -> None:
    if not run.main:  # one console log per run, from rank 0
        logging.getLogger("omniid").setLevel(logging.WARNING)
    if run.main:
        run.out.mkdir(parents=True, exist_ok=True)
        write_run_preset(run.out, run.preset.to_dict())
        remove_stale_temps(run.out)
        remove_leftovers(run.out / CHECKPOINTS)
    if run.device.type == "cpu" and run.preset.cpu_threads:
        torch.set_num_threads(run.preset.cpu_threads)


def _start(run: _Run, model, optimizer, resume, init_from, record) -> tuple[int, int, dict]:
    """(step, samples, state.json record) to start from: a resumed checkpoint's, or step 0 with
    --init-from's encoder."""
    step, samples = 0, 0
    checkpoint = resume_from(run.out, resume, run.rank, run.world)
    record = dict(record or {})
    differed = record.pop(RESUMED_WITH, None)  # what an explicit --resume continues despite (omniid.continuation)
    if checkpoint is not None:
        theirs = read_state(checkpoint).get("stage", "mtd")
        if theirs != run.stage:
            raise CheckpointError(f"{checkpoint}: a {theirs} checkpoint; the {run.stage} stage resumes only its own "
                                  f"(start it from this one with --init-from and a new --out)")
        state = load_checkpoint(checkpoint, model, optimizer, run.rank)
        step, samples = state["step"], state["samples"]
        run.saved = step
        record.update({k: record.get(k, state.get(k)) for k in ("init_from", "convergence")})
        record.update(continued_with(state, checkpoint, differed))  # kept in every later checkpoint
        if differed:
            JsonlLog(run.out / LOG_FILE, run.main).write({"step": step, CONTINUED_WITH: differed})
        log.info("resumed from %s at step %d", checkpoint, step)
    elif init_from is not None:
        folder = check_init_from(init_from, run.preset)
        model.init_from(folder)
        record["init_from"] = str(folder.resolve())  # compared on a re-run from any working folder
        if run.main:  # so that its own run never prunes, replaces or restarts it away
            record_use(folder, run.out)
        log.info("encoder from %s (its decoder, if any, is dropped)", folder)
    return step, samples, record


def _optimizer_step(run: _Run, ddp, optimizer, batches, trainable: list, step: int) -> float:
    """One optimizer step over `grad_accum` micro-batches -> its loss, the mean over every rank."""
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


def train(preset: Preset, model: torch.nn.Module, make_loader, out: str | Path, test_loader=None,
          resume: str | None = None, init_from: str | Path | None = None, stop_after: int | None = None,
          record: dict | None = None, heldout_loader=None) -> dict:
    """Train `model` (an objective, already on this rank's device) to `preset.optim.total_steps`
    (or `stop_after` optimizer steps of this invocation).

    make_loader(start_batch) -> an iterable of batches starting at that global batch (so a resume
    sees what an uninterrupted run would have). init_from: a checkpoint whose encoder starts this
    run (ignored when resuming: the run's own checkpoint holds it). record: extra run facts
    (representation, prompt cache...) written to state.json. test_loader / heldout_loader: the
    eval sets (other identities / held-out frames of the training ones), logged as eval_* / heldout_*.

    Ctrl-C (and SIGTERM, which the CLI turns into it) abandons the step in flight, a full disk
    stops the run, and a non-finite loss sets aside the checkpoint that gave it: each raises an
    OmniIDError whose message says what `latest` names and how to go on.
    """
    rank, world, device = setup_distributed()
    run = _Run(preset, Path(out), rank, world, device, getattr(model, "stage", preset.stage))
    eval_sets = {name: loader for name, loader in (("eval", test_loader), ("heldout", heldout_loader)) if loader}
    with stopping_cleanly(run):
        return _train(run, model, make_loader, eval_sets, resume, init_from, stop_after, record)


def _train(run: _Run, model, make_loader, eval_sets, resume, init_from, stop_after, record) -> dict:
    preset, device, world = run.preset, run.device, run.world
    _prepare(run)
    opt = preset.optim
    model.set_grad_checkpointing(opt.grad_checkpointing)
    optimizer = build_optimizer(model, opt)
    trainable = [p for p in model.parameters() if p.requires_grad]
    step, samples, record = _start(run, model, optimizer, resume, init_from, record)
    rule = start_rule(preset, eval_sets, record.pop("convergence", None), run.rank, world)  # baselines'
    ddp = wrap_ddp(model, device, world)
    loader = make_loader(step * opt.grad_accum)
    end = rule.cap(step, opt.total_steps if stop_after is None else min(opt.total_steps, step + stop_after))
    run.step, run.end = step, end
    progress, last, evaluated = _Progress(run, step, end), {}, {}
    run.bar = progress.bar  # closed before a stop's message, which is then the last line
    if run.main:
        keep_log_until(run.out / LOG_FILE, step)
    if step >= end:
        log.info("%s is already complete at step %d of %d: nothing to train", run.out, step, opt.total_steps)
    batches = iter(loader)
    model.train()
    while step < end:
        value = _optimizer_step(run, ddp, optimizer, batches, trainable, step)
        step = run.step = step + 1
        n = preset.data.batch_size * opt.grad_accum * world
        samples += n
        progress.add(value, n)
        if step % preset.log_every == 0 or step == end:
            last = progress.log_step(step, samples, optimizer.param_groups[0]["lr"])
        if eval_sets and (step % preset.eval_every == 0 or step == end):
            evaluated = progress.log_eval(step, {name: evaluate(model, loader, preset.eval_batches, preset.seed,
                                                                device, run.autocast)
                                                 for name, loader in eval_sets.items()})
        end = run.end = rule.after_eval(step, end, evaluated, progress.jsonl, world)
        if step % preset.save_every == 0 or step == end:
            save_step(run, model, optimizer, step, samples, {"stage": run.stage, **record, **rule.record()})
        progress.restart_window()
    progress.bar.close()
    barrier(world)
    return {"step": step, "samples": samples, **last, **evaluated, **rule.record()}
