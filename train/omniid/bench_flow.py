"""One flow-stage training step at growing batch sizes: identities/s, targets/s and peak GPU memory.

    python -m omniid.bench_flow --preset paper --batch-sizes 1,2,4,8

The paper preset runs FLUX.1-dev's real transformer and VAE configs with random weights (bf16 on
CUDA) and a randomly initialised CLIP ViT-H/14, so it needs no weights; the step is the trainer's
own (`step_time`: objective, gradient clipping, AdamW over the trainable parts, gradient
checkpointing as the preset says) on synthetic batches of the preset's shapes, in one process.
It stops at the first batch size that runs out of memory. A batch size is the identities of one
micro-batch (one forward and backward); an optimizer step is `--grad-accum` of them (default: the
preset's), as in omniid-train. One JSON line per batch size goes to stdout:
`identities_per_micro_batch` (the batch size), `targets_per_micro_batch`, `grad_accum`,
`identities_per_optimizer_step`; `s_per_step`, seconds per optimizer step; `identities_per_s` and
`targets_per_s` of this one GPU; `peak_gb`, the peak (GB: 10^9 bytes) of memory allocated by
tensors during that batch size's steps, the weights and optimizer state (kept from the first batch
size on) included.
"""
from __future__ import annotations

import itertools
import json
import logging
import sys
import time
from types import SimpleNamespace

import torch

from omniid import __version__
from omniid.cli_format import parser, setup_logging
from omniid.config import FLUX_DEV, FLUX_DEV_VAE, get_preset
from omniid.objectives import build_objective
from omniid.optim import build_optimizer
from omniid.representations import REPRESENTATIONS
from omniid.run_progress import peak_gpu_gb
from omniid.train_step import optimizer_step

log = logging.getLogger(__name__)


def loader_extras(loader_options: dict, identities: int, inputs: int, device) -> dict:
    """What a model's loader options add to its batches (`omniid.data.build_loader`), at their
    shapes: with `identity_side` (the `arcface` baselines') `identity_inputs`, uint8 [B, M, s, s, 3],
    so a synthetic step runs the identity model on its own 112 px reads, as training's does, not
    on the encoder's inputs resized (the fallback of a batch without them)."""
    side = loader_options.get("identity_side")
    if not side:
        return {}
    return {"identity_inputs": torch.randint(0, 256, (identities, inputs, side, side, 3), dtype=torch.uint8,
                                             device=device)}


def synthetic_batch(preset, identities: int, device, loader_options: dict | None = None) -> dict:
    """A flow batch of the preset's shapes, with what the model's `loader_options` add (loader_extras)."""
    m, d, f = preset.model, preset.data, preset.flow
    return {"inputs": torch.randn(identities, d.num_inputs, 3, m.image_size, m.image_size, device=device),
            "input_valid": torch.ones(identities, d.num_inputs, dtype=torch.bool, device=device),
            "targets": torch.rand(identities, d.num_targets, 3, f.image_size, f.image_size, device=device) * 2 - 1,
            **loader_extras(loader_options or {}, identities, d.num_inputs, device)}


def step_time(model, optimizer, batch, steps: int, preset, device) -> float:
    """Seconds per optimizer step of the trainer's own step (`omniid.train_step.optimizer_step`:
    the lr schedule, --grad-accum micro-batches of `batch`, backward, gradient clipping, AdamW, the
    loss read back), the mean over `steps` after one warm-up step, in one process: no DDP
    all-reduce, no data loading (`batch` is already on the device), no evaluation or saving."""
    run = SimpleNamespace(preset=preset, device=device, rank=0, world=1,
                          autocast=preset.optim.bf16 and device.type == "cuda")
    trainable = [p for p in model.parameters() if p.requires_grad]
    batches = itertools.repeat(batch)
    optimizer_step(run, model, optimizer, batches, trainable, 0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        optimizer_step(run, model, optimizer, batches, trainable, i + 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    # the shared grammar: 80 columns, a default shown only where there is one, --version, -v/-q
    p = parser("python -m omniid.bench_flow", "One flow-stage training step at growing batch sizes:\n"
               "identities/s, targets/s and peak GPU memory.", __version__)
    p.add_argument("--preset", default="paper", metavar="NAME", help="whose architectures and shapes")
    p.add_argument("--batch-sizes", default="1,2,4,8", metavar="LIST",
                   help="identities per micro-batch (each with the preset's targets); an optimizer step is "
                        "--grad-accum micro-batches")
    p.add_argument("--grad-accum", type=int, metavar="N",
                   help="micro-batches per optimizer step, as omniid-train's flag (default: the preset's)")
    p.add_argument("--targets", type=int, metavar="N", help="targets per identity (default: the preset's flow stage)")
    p.add_argument("--steps", type=int, default=3, metavar="N", help="timed optimizer steps after a warm-up step")
    p.add_argument("--representation", default="omniid", choices=sorted(REPRESENTATIONS), metavar="NAME",
                   help=f"as omniid-train's: {', '.join(sorted(REPRESENTATIONS))} (a baseline needs its identity model)")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "adamw_fused", "adamw_8bit"),
                   help="as omniid-train's")
    p.add_argument("--no-grad-checkpointing", action="store_true",
                   help="off for the encoder and FLUX's blocks")
    args = p.parse_args(argv)
    if args.grad_accum is not None and args.grad_accum < 1:
        p.error("--grad-accum takes at least 1")
    setup_logging(args)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    overrides = {"data.num_targets": args.targets, "optim.optimizer": args.optimizer,
                 "optim.grad_accum": args.grad_accum,
                 "optim.grad_checkpointing": False if args.no_grad_checkpointing else None}
    preset = get_preset(args.preset, stage="flow", **overrides)
    if preset.flow.transformer is None:  # the real configs, random weights: no FLUX folder needed
        preset = get_preset(args.preset, stage="flow", **overrides,
                            **{"flow.transformer": FLUX_DEV, "flow.vae": FLUX_DEV_VAE})
    if device.type == "cpu" and preset.cpu_threads:
        torch.set_num_threads(preset.cpu_threads)
    torch.manual_seed(0)
    model = build_objective("flow", preset, representation=args.representation, pretrained_clip=False,
                            device=device).to(device)
    model.set_grad_checkpointing(preset.optim.grad_checkpointing)
    model.train()
    optimizer = build_optimizer(model, preset.optim)
    accum = preset.optim.grad_accum  # micro-batches of a batch size an optimizer step
    for identities in (int(b) for b in args.batch_sizes.split(",")):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        record = {"preset": preset.name, "representation": args.representation,
                  "identities_per_micro_batch": identities,
                  "targets_per_micro_batch": identities * preset.data.num_targets, "grad_accum": accum,
                  "identities_per_optimizer_step": identities * accum,
                  "grad_checkpointing": preset.optim.grad_checkpointing, "optimizer": args.optimizer,
                  "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
        try:
            batch = synthetic_batch(preset, identities, device, model.loader_options)
            seconds = step_time(model, optimizer, batch, args.steps, preset, device)
        except torch.cuda.OutOfMemoryError:
            print(json.dumps({**record, "oom": True}), flush=True)
            break
        record.update(s_per_step=seconds, identities_per_s=accum * identities / seconds,
                      targets_per_s=accum * record["targets_per_micro_batch"] / seconds,
                      peak_gb=peak_gpu_gb(device))
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
