"""`omniid-bench-data`: what the trainer's data path costs on a manifest, per stage.

    omniid-bench-data --manifest manifests/train.parquet --preset paper
    omniid-bench-data --manifest manifests/train.parquet --stages flow --representation arcface

For each stage the trainer's own dataset (`FewToManyDataset` with the stage's counts, sizes and
loader options, in the flow stage joined by `--representation`'s as in training: the `arcface`
baselines' 112 px read of each input crop) builds `--items` items one after another on one
thread, as a loader worker does: CPU ms and wall ms per item, hence items/s per loader worker; beside it, the floor: the same
items' distinct crop files decoded in full by PIL and nothing else. A real DataLoader with
`--workers` processes then streams batches, for its items/s with collation and the hand-over
between processes. The loader cores one GPU needs (`loader_cores_per_gpu_at_assumed_rate`) = the
GPU's items/s x the measured CPU seconds per item (docs/performance.md), hence its name: the GPU's
items/s is a stated assumption (the `assumed_*` fields), not a measurement. It is optimizer
steps/s (`--mtd-steps-per-s` / `--flow-steps-per-s`, what omniid-train's bar shows as step/s) x the
identities one optimizer step takes on one GPU, the stage's batch x `--grad-accum` micro-batches.
Left out, the step rate is the default micro-batch rate (`DEFAULT_MICRO_BATCHES_PER_S`, a GPU's
work per forward and backward) over --grad-accum: accumulating does not make a GPU faster. One
JSON line per stage goes to stdout.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from itertools import islice
from pathlib import Path

import torch
from PIL import Image

from omniid import __version__
from omniid.cli_format import parser, setup_logging
from omniid.config import PRESETS, get_preset
from omniid.data import FewToManyDataset, build_loader, load_manifest
from omniid.objectives.flow import stage_loader_options
from omniid.representations import REPRESENTATIONS, loader_options_of

log = logging.getLogger(__name__)
# ours, order-of-magnitude assumptions (docs/performance.md), not measured, per micro-batch (one
# forward and backward) of the paper preset's shapes: one H100 consumes about 100 MTD items/s
# (8 identities a micro-batch); a flow micro-batch (FLUX.1-dev forward and backward on 8 targets
# at 448 px) takes about 2.5 s
DEFAULT_MICRO_BATCHES_PER_S = {"mtd": 12.5, "flow": 0.4}


def stage_options(preset, stage: str, representation: str = "omniid") -> dict:
    """The loader options of `omniid-train --stage STAGE --representation NAME` (the flow stage's
    joined by the representation's, read from its class: no weights are loaded)."""
    return stage_loader_options(preset.flow, loader_options_of(representation)) if stage == "flow" else {}


def stage_dataset(manifest: Path, preset, stage: str, representation: str = "omniid") -> FewToManyDataset:
    """The dataset `omniid-train --stage STAGE --representation NAME` would read."""
    data = preset.data
    options = stage_options(preset, stage, representation)
    return FewToManyDataset(load_manifest(manifest), preset.model.image_size, data.num_inputs, data.num_targets,
                            data.num_inputs_min, preset.seed, **options)


def time_items(dataset: FewToManyDataset, draws: list[tuple[int, int]]) -> tuple[float, float, list[dict]]:
    """(CPU s, wall s, items) of building `draws` one after another in this thread."""
    cpu, wall = time.process_time(), time.perf_counter()
    items = [dataset[draw] for draw in draws]
    return time.process_time() - cpu, time.perf_counter() - wall, items


def jpeg_floor(items: list[dict]) -> float:
    """CPU s to decode, in full with PIL and nothing else, each item's distinct crop files."""
    files = [sorted(set(item["input_paths"]) | set(item["target_paths"])) for item in items]
    cpu = time.process_time()
    for paths in files:
        for path in paths:
            with Image.open(path) as image:
                image.convert("RGB")
    return time.process_time() - cpu


def loader_rate(manifest: Path, preset, stage: str, workers: int, batches: int,
                representation: str = "omniid") -> tuple[float, int]:
    """(items/s, identities per batch) of a real DataLoader with `workers` processes, after its
    first batch (worker start-up) is discarded."""
    data = preset.data
    options = stage_options(preset, stage, representation)
    loader = build_loader(manifest, preset.model.image_size, data.num_inputs, data.num_targets, data.batch_size,
                          workers, preset.seed, num_inputs_min=data.num_inputs_min, clamp_batch=True, **options)
    stream = iter(loader)
    size = len(next(stream)["identity"])
    start = time.perf_counter()
    for _ in islice(stream, batches):
        pass
    return batches * size / (time.perf_counter() - start), size


def gpu_rate(preset, stage: str, steps_per_s: float | None) -> dict:
    """The assumed items/s of one GPU and what it is made of, each field named for its unit: an
    optimizer step is `grad_accum` micro-batches of the stage's batch (`omniid.train_step`).
    `steps_per_s`: optimizer steps/s (None: the default micro-batch rate over grad_accum)."""
    accum, batch = preset.optim.grad_accum, preset.data.batch_size
    stated = steps_per_s is not None
    steps = steps_per_s if stated else DEFAULT_MICRO_BATCHES_PER_S[stage] / accum
    return {"assumed_optimizer_steps_per_s": steps, "assumed_micro_batches_per_s": steps * accum,
            "step_rate_from": f"--{stage}-steps-per-s" if stated else "default micro-batches/s over grad_accum",
            "grad_accum": accum, "identities_per_micro_batch": batch, "identities_per_optimizer_step": batch * accum,
            "assumed_items_per_s_per_gpu": steps * batch * accum}


def bench_stage(manifest: Path, preset_name: str, stage: str, args: argparse.Namespace) -> dict:
    preset = get_preset(preset_name, stage=stage, **{"optim.grad_accum": args.grad_accum})
    representation = args.representation if stage == "flow" else "omniid"
    dataset = stage_dataset(manifest, preset, stage, representation)
    draws = [(d % len(dataset), d) for d in range(args.items)]
    time_items(dataset, draws[: min(4, len(draws))])  # warm: files in the page cache, lazy imports
    cpu, wall, items = time_items(dataset, draws)
    floor = jpeg_floor(items)
    cpu_ms, n = 1000 * cpu / len(items), len(items)
    rate = gpu_rate(preset, stage, getattr(args, f"{stage}_steps_per_s"))
    needed = rate["assumed_items_per_s_per_gpu"]
    record = {
        "stage": stage, "representation": representation, "preset": preset.name, "manifest": str(manifest),
        "identities": len(dataset), "identity_reads_per_item": sum(len(i.get("identity_inputs", ())) for i in items) / n,
        "items": n, "inputs": preset.data.num_inputs, "targets": preset.data.num_targets,
        "input_side": preset.model.image_size, "target_side": dataset.target_size, "masks": dataset.masks,
        "crops_per_item": sum(len(set(i["input_paths"]) | set(i["target_paths"])) for i in items) / n,
        "cpu_ms_per_item": cpu_ms, "wall_ms_per_item": 1000 * wall / n,
        "items_per_s_per_worker": n / wall, "jpeg_floor_ms_per_item": 1000 * floor / n,
        "item_over_floor": cpu / floor if floor else None,
        **rate, "loader_cores_per_gpu_at_assumed_rate": needed * cpu_ms / 1000,
    }
    if args.workers:
        rate, size = loader_rate(manifest, preset, stage, args.workers, args.loader_batches, representation)
        record.update(loader_workers=args.workers, loader_batch=size, loader_items_per_s=rate,
                      loader_items_per_s_per_worker=rate / args.workers)
    return record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser("omniid-bench-data", "What the trainer's data path costs on a manifest, per stage.", __version__)
    p.add_argument("--manifest", required=True, metavar="PATH", help="a manifest folder or its train.parquet")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="whose batch shapes")
    p.add_argument("--stages", default="mtd,flow", metavar="LIST", help="comma-separated: mtd, flow")
    p.add_argument("--representation", default="omniid", choices=sorted(REPRESENTATIONS),
                   help="the flow stage's, as omniid-train's flag: its loader options join the stage's")
    p.add_argument("--items", type=int, default=64, metavar="N", help="items timed per stage, one after another")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="DataLoader processes for the loader's items/s (0: skip)")
    p.add_argument("--loader-batches", type=int, default=8, metavar="N", help="batches timed through the DataLoader")
    p.add_argument("--grad-accum", type=int, metavar="N",
                   help="micro-batches per optimizer step, as omniid-train's flag (default: the preset's)")
    for stage in ("mtd", "flow"):
        p.add_argument(f"--{stage}-steps-per-s", type=float, metavar="X",
                       help=f"assumed {stage} optimizer steps/s of one GPU (ours, not measured; default: "
                            f"{DEFAULT_MICRO_BATCHES_PER_S[stage]} micro-batches/s over --grad-accum)")
    args = p.parse_args(argv)
    stages = args.stages.split(",")
    if not set(stages) <= {"mtd", "flow"} or args.items < 1 or args.workers < 0 or args.loader_batches < 1:
        p.error("--stages takes mtd and/or flow; --items and --loader-batches at least 1, --workers at least 0")
    if (args.grad_accum is not None and args.grad_accum < 1) or any(
            rate is not None and rate <= 0 for rate in (args.mtd_steps_per_s, args.flow_steps_per_s)):
        p.error("--grad-accum takes at least 1; --mtd-steps-per-s and --flow-steps-per-s more than 0")
    if args.representation != "omniid" and "mtd" in stages:
        p.error("--representation applies to the flow stage only, as in omniid-train: give --stages flow")
    args.stages = stages
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    torch.set_num_threads(1)  # as in a DataLoader worker
    from mfhq.faces import MfhqError
    from omniid.errors import OmniIDError

    try:
        for stage in args.stages:
            print(json.dumps(bench_stage(Path(args.manifest), args.preset, stage, args)), flush=True)
    except (OmniIDError, MfhqError) as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
