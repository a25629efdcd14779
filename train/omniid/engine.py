"""The training loop of any objective: optimisation, logging, eval, checkpoint, resume, init-from.

The engine is given a built objective (see `omniid.objectives`) and a loader factory; it never
names a decoder. One process per GPU under torchrun (`omniid.distributed`; gloo on CPU). Every
source of randomness is keyed by integers: batches come from `FewToManySampler` (seed, global
batch, rank), the objective's randomness (MTD's masks; the flow stages' posterior sample, t and
noise) from each item's own key (seed, draw index; `omniid.noise`), so a resumed run produces the
same losses as an uninterrupted one, and a DDP step those of one process's --grad-accum step. The optimiser and its schedule live
in `omniid.optim`, the run folder and its checkpoints in `omniid.checkpoint`; one step and one
evaluation in `omniid.train_step`, where a run starts (resume, --init-from) in `omniid.run_start`,
what it reports in `omniid.run_progress`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from omniid.checkpoint import CHECKPOINTS, LOG_FILE, write_run_preset
from omniid.config import Preset
from omniid.convergence import start_rule
from omniid.distributed import barrier, setup_distributed, wrap_ddp
from omniid.optim import build_optimizer
from omniid.recovery import remove_stale_temps, stopping_cleanly
from omniid.retention import remove_leftovers
from omniid.run_progress import Progress, lrs_of
from omniid.run_start import start
from omniid.saving import save_step
from omniid.shelves import keep_log_until
from omniid.train_step import evaluate, optimizer_step

log = logging.getLogger(__name__)


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
    step, samples, record = start(run, model, optimizer, resume, init_from, record)
    rule = start_rule(preset, eval_sets, record.pop("convergence", None), run.rank, world)  # baselines'
    ddp = wrap_ddp(model, device, world)
    loader = make_loader(step * opt.grad_accum)
    end = rule.cap(step, opt.total_steps if stop_after is None else min(opt.total_steps, step + stop_after))
    run.step, run.end = step, end
    progress, last, evaluated = Progress(run, step, opt.total_steps), {}, {}
    if end < opt.total_steps:
        progress.stops_at(end, "converged" if rule.stopped else f"--stop-after {stop_after}")
    run.bar = progress.bar  # closed before a stop's message, which is then the last line
    if run.main:
        keep_log_until(run.out / LOG_FILE, step)
    if step >= end:
        log.info("%s is already complete at step %d of %d: nothing to train", run.out, step, opt.total_steps)
    batches = iter(loader)
    model.train()
    while step < end:
        progress.begin_step()
        value = optimizer_step(run, ddp, optimizer, batches, trainable, step)
        step = run.step = step + 1
        n = preset.data.batch_size * opt.grad_accum * world
        samples += n
        progress.add(value, n)
        if step % preset.log_every == 0 or step == end:
            last = progress.log_step(step, samples, lrs_of(optimizer))
        if eval_sets and (step % preset.eval_every == 0 or step == end):
            evaluated = progress.log_eval(step, {name: evaluate(model, loader, preset.eval_batches, preset.seed,
                                                                device, run.autocast)
                                                 for name, loader in eval_sets.items()})
        end = run.end = rule.after_eval(step, end, evaluated, progress.jsonl, world)
        if rule.stopped and step == end < opt.total_steps:
            progress.stops_at(end, "converged")
        if step == end and progress.losses:  # the rule stopped the run at a step --log-every had not logged
            last = progress.log_step(step, samples, lrs_of(optimizer))
        if step % preset.save_every == 0 or step == end:
            save_step(run, model, optimizer, step, samples, {"stage": run.stage, **record, **rule.record()})
    progress.bar.close()
    barrier(world)
    result = {"step": step, "samples": samples, **last, **evaluated, **rule.record()}
    result.update(step=step, samples=samples)  # the run's, never an earlier record's (kept in first place)
    return result
