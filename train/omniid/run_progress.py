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


class JsonlLog:
    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")


class Progress:
    """What a run reports (log.jsonl on rank 0, the progress bar, the console lines), and the
    window of steps since the last log line: its losses, samples and start time."""

    def __init__(self, run, step: int, end: int):  # run: the engine's run (out, main, stage, device, ...)
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
        # loss: the mean over the steps since the previous record, loss_steps of them: fewer than
        # --log-every at a stop (the last step is logged) and so in the next record after a resume
        last = {"step": step, "loss": float(np.mean(self.losses)), "loss_steps": len(self.losses), "lr": lr,
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
