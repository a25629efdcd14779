"""What a training run reports: log.jsonl (rank 0), the progress bar and the console lines."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from omniid.checkpoint import LOG_FILE
from omniid.cli_format import progress_enabled
from omniid.swap import SwapGap, eval_record

log = logging.getLogger("omniid.engine")
# tqdm's default layout with "step" before the count: 'omniid mtd:   0%|   | step 1200/250000 [...]'
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| step {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
# GB as the keys say (`gpu_mem_gb`, `peak_gb`): 10^9 bytes, the unit of docs/train.md's memory
# arithmetic they are read beside (2^30 bytes read 7% low against it)
BYTES_PER_GB = 10**9


def gigabytes(nbytes: int) -> float:
    return nbytes / BYTES_PER_GB


def peak_gpu_gb(device: torch.device) -> float | None:
    """The peak of memory allocated by tensors on `device` in GB (10^9 bytes); None off CUDA."""
    return gigabytes(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


class JsonlLog:
    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")


class Progress:
    """What a run reports (log.jsonl on rank 0, the progress bar, the console lines), and the
    window of steps since the last log line: its losses, samples and training seconds.

    samples/s is the window's samples (every rank's: batch x --grad-accum x processes a step) over
    the seconds its steps took on this rank, each step timed from `begin_step` to `add` (fetching
    the batch, forward, backward, optimizer): evaluations, checkpoint saves and log writes between
    steps are not training time, wherever they fall in the window."""

    def __init__(self, run, step: int, total: int):  # run: the engine's run (out, main, stage, device, ...)
        """The bar counts the run's optimizer steps out of the run's `total` (the preset's, a
        resumed run's earlier steps included), so its percentage and time left are the run's; an
        invocation that ends sooner says where in its label (`stops_at`)."""
        self.run, self.jsonl = run, JsonlLog(run.out / LOG_FILE, run.main)
        self.bar = tqdm(total=total, initial=step, disable=not (run.main and progress_enabled()),
                        desc=f"omniid {run.stage}", unit="step", dynamic_ncols=True, bar_format=BAR_FORMAT)
        self.losses, self.samples, self.seconds, self.started = [], 0, 0.0, None
        self.shown: dict[str, str] = {}     # the bar's loss and lr, from the last record
        self.postfix: dict[str, str] = {}   # the bar's {set}_gap, from each set's last evaluation

    def stops_at(self, end: int, why: str) -> None:
        """Label an end before the run's total: this invocation stops at step `end` because `why`."""
        self.bar.set_description_str(f"omniid {self.run.stage}, stops at step {end} ({why})")

    def begin_step(self) -> None:
        self.started = time.perf_counter()

    def add(self, loss: float, samples: int) -> None:
        """One step done: its loss (every rank's mean) and samples (every rank's)."""
        if self.started is not None:
            self.seconds += time.perf_counter() - self.started
            self.started = None
        self.samples += samples
        self.losses.append(loss)
        self.bar.update(1)

    def log_step(self, step: int, samples: int, lrs: dict) -> dict:
        """lrs: {"lr": the schedule's lr at the step} and, where the representation trains at a
        scaled lr, {"representation_lr": its lr} (`lrs_of`)."""
        # loss: the mean over the steps since the previous record, loss_steps of them: fewer than
        # --log-every at a stop (the last step is logged) and so in the next record after a resume
        last = {"step": step, "loss": float(np.mean(self.losses)), "loss_steps": len(self.losses), **lrs,
                "samples_per_s": self.samples / max(self.seconds, 1e-9), "samples": samples, "world": self.run.world,
                "gpu_mem_gb": peak_gpu_gb(self.run.device)}
        self.jsonl.write(last)
        self._show(last)
        log.info("step %d loss %.5f lr %.3e %.1f samples/s", step, last["loss"], last["lr"], last["samples_per_s"])
        self.losses, self.samples, self.seconds = [], 0, 0.0
        return last

    def _show(self, last: dict | None = None) -> None:
        """The bar's fields: the last record's loss and lr, each set's latest swap gap."""
        if last is not None:
            self.shown = {"loss": f"{last['loss']:.4f}", "lr": f"{last['lr']:.2e}"}
        self.bar.set_postfix(**self.shown, **self.postfix)

    def log_eval(self, step: int, results: dict[str, SwapGap]) -> dict:
        preset = self.run.preset
        record = eval_record(results, step, self.run.stage, preset.swap_warmup_steps, preset.swap_min_gap)
        # two decimals: the near-zero threshold (--swap-min-gap, 0.1%) and a working flow gap (a few
        # tenths of a percent) must not both read +0.0%
        self.postfix.update({f"{name}_gap": f"{100 * r.swap_gap_rel:+.2f}%" for name, r in results.items()
                             if r.swap_gap_rel is not None})
        self._show()  # the gap just measured, not the previous evaluation's
        self.jsonl.write(record)
        return record


def lrs_of(optimizer) -> dict:
    """{"lr": the schedule's lr (the groups at full lr)}, plus {"representation_lr": ...} when the
    representation's groups train at lr x `representation_lr_scale` (`omniid.optim.set_lr`)."""
    lrs = {"lr": optimizer.param_groups[0]["lr"]}
    scaled = [group["lr"] for group in optimizer.param_groups if "lr_scale" in group]
    if scaled:
        lrs["representation_lr"] = scaled[0]
    return lrs
