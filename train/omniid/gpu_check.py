"""The first thing to run on a machine with a GPU: can one GPU take the paper's
training steps?

    python -m omniid.gpu_check                 # paper architectures, random weights, bf16
    python -m omniid.gpu_check --preset tiny --device cpu   # this script itself, on any machine

Needs no weights and no data: for each stage it builds the paper preset's real architectures
with random weights (CLIP ViT-H/14 + the Omni-ID encoder + the MTD decoder; FLUX.1-dev's
transformer and VAE configs + the IP-Adapter), takes `--steps` of the trainer's own optimizer
step (`omniid.train_step.optimizer_step`: gradient checkpointing, bf16 autocast, gradient
clipping and fused AdamW as in training) at the preset's batch per GPU on synthetic batches of
the preset's shapes, in one process, and prints one JSON line per stage: `peak_gb`, the peak (GB: 10^9 bytes) of
memory allocated by tensors on the GPU from the model's build on (weights, optimizer state,
activations; what the CUDA caching allocator reserves is more), `s_per_step`, seconds per
optimizer step after a warm-up step (no DDP all-reduce, no data loading), and `samples_per_s`,
the identities (each with the preset's inputs and targets) this one GPU trains on per second;
a DDP run's log.jsonl counts every GPU's. A stage that
runs out of memory says so (`"oom": true`) and the next one still runs. Figures measured here go
into docs/train.md, beside the memory arithmetic they check.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from omniid import __version__
from omniid.bench_flow import loader_extras, step_time
from omniid.cli_format import parser
from omniid.encoder import quiet_random_init
from omniid.config import FLUX_DEV, FLUX_DEV_VAE, get_preset
from omniid.objectives import build_objective
from omniid.optim import build_optimizer
from omniid.representations import REPRESENTATIONS
from omniid.run_progress import peak_gpu_gb

STAGES = ("mtd", "flow")  # the stages with a paper architecture to check


def random_weight_preset(name: str, stage: str, batch_size: int | None):
    """The preset for `stage` with FLUX.1-dev's configs instead of its folder (CLIP is built with
    random weights by `check_stage`)."""
    overrides = {"data.batch_size": batch_size}
    preset = get_preset(name, stage=stage, **overrides)
    if stage == "flow" and preset.flow.transformer is None:
        preset = get_preset(name, stage=stage, **overrides, **{"flow.transformer": FLUX_DEV, "flow.vae": FLUX_DEV_VAE})
    return preset


def synthetic_batch(preset, device, loader_options: dict | None = None) -> dict:
    """A batch of the stage's shapes: inputs at the encoder's size, targets (and MTD's face masks),
    and what the model's `loader_options` add (bench_flow.loader_extras: a baseline's 112 px reads)."""
    m, d = preset.model, preset.data
    side = preset.flow.image_size if preset.stage == "flow" else m.image_size
    b = d.batch_size
    batch = {"inputs": torch.randn(b, d.num_inputs, 3, m.image_size, m.image_size, device=device),
             "input_valid": torch.ones(b, d.num_inputs, dtype=torch.bool, device=device),
             "targets": torch.rand(b, d.num_targets, 3, side, side, device=device) * 2 - 1}
    if preset.stage == "mtd":
        batch["masks"] = torch.ones(b, d.num_targets, 1, side, side, device=device)
    return {**batch, **loader_extras(loader_options or {}, b, d.num_inputs, device)}


def check_stage(preset, device: torch.device, steps: int, representation: str = "omniid") -> dict:
    torch.manual_seed(0)
    chosen = {"representation": representation} if preset.stage == "flow" else {}  # MTD trains Omni-ID only
    record = {"stage": preset.stage, **chosen, "preset": preset.name, "identities_per_gpu": preset.data.batch_size,
              "inputs": preset.data.num_inputs, "targets": preset.data.num_targets,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "bf16": preset.optim.bf16 and device.type == "cuda"}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with quiet_random_init():  # random by design here
            model = build_objective(preset.stage, preset, pretrained_clip=False, device=device, **chosen).to(device)
        model.set_grad_checkpointing(preset.optim.grad_checkpointing)
        model.train()
        optimizer = build_optimizer(model, preset.optim)
        record["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        record["frozen_params"] = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        batch = synthetic_batch(preset, device, getattr(model, "loader_options", {}))
        seconds = step_time(model, optimizer, batch, steps, preset, device)
    except torch.cuda.OutOfMemoryError:
        return {**record, "oom": True}
    # samples: identities (each with its inputs and targets) this one GPU trains on per second
    record.update(s_per_step=seconds, samples_per_s=preset.data.batch_size * preset.optim.grad_accum / seconds,
                  peak_gb=peak_gpu_gb(device))
    return record


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m omniid.gpu_check", __doc__.split("\n\n")[0], __version__)  # 2 lines, < 80 columns
    p.add_argument("--preset", default="paper", help="whose architectures and batch per GPU")
    p.add_argument("--stages", default=",".join(STAGES), metavar="LIST", help="stages to check, comma-separated")
    p.add_argument("--steps", type=int, default=3, metavar="N", help="timed steps after one warm-up step")
    p.add_argument("--batch-size", type=int, metavar="N", help="identities per GPU (default: the preset's)")
    p.add_argument("--representation", default="omniid", choices=sorted(REPRESENTATIONS), metavar="NAME",
                   help=f"the flow stage's, as omniid-train's: {', '.join(sorted(REPRESENTATIONS))} (a baseline "
                        "needs its identity model's weights)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (to test this script)")
    args = p.parse_args(argv)
    unknown = [stage for stage in args.stages.split(",") if stage not in STAGES]
    if unknown:
        p.error(f"--stages {args.stages}: no stage {', '.join(unknown)}; the stages are {','.join(STAGES)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine "
              "(or `--preset tiny --device cpu` to test the script itself)", file=sys.stderr)
        return 2
    for stage in args.stages.split(","):
        preset = random_weight_preset(args.preset, stage, args.batch_size)
        if device.type == "cpu" and preset.cpu_threads:
            torch.set_num_threads(preset.cpu_threads)
        print(json.dumps(check_stage(preset, device, args.steps, args.representation)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
