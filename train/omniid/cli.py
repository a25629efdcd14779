"""omniid-train: flags -> preset overrides -> engine.train. No training logic lives here."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from omniid.config import FEW_TO_MANY, PRESETS, get_preset

log = logging.getLogger("omniid")

STAGES = ("mtd",)  # the flow-matching stage (paper §3.4) comes with flow.py


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="omniid-train", description="Train the Omni-ID encoder from an mfhq manifest.")
    p.add_argument("--manifest", required=True, help="manifests/train.parquet")
    p.add_argument("--test-manifest", help="evaluated periodically (default: test.parquet beside --manifest, if present)")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument("--stage", default="mtd", choices=STAGES)
    p.add_argument("--out", help="run folder: logs and checkpoints (default: runs/omniid-<preset>)")
    p.add_argument("--resume", help="'auto' (the latest checkpoint in --out, if any) or a checkpoint folder")
    p.add_argument("--clip-weights", help="open_clip weights file for the paper preset (or $OMNIID_CLIP_WEIGHTS)")
    p.add_argument("--steps", type=int, help="total optimizer steps (sets the cosine schedule's length)")
    p.add_argument("--stop-after", type=int, help="stop after this many steps of this invocation (schedule unchanged)")
    p.add_argument("--few-to-many", choices=sorted(FEW_TO_MANY), help="|X^s|-|X^r| ablation (paper: 3-8)")
    p.add_argument("--num-inputs-min", type=int, help="draw M per identity in [this, |X^s|] (mixed-M batches)")
    p.add_argument("--mask-ratio", type=float, help="MTD masking ratio (paper: 0.95; ablations 0.99, 0.85)")
    p.add_argument("--batch-size", type=int, help="identities per process per micro-batch")
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument("--seed", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--save-every", type=int)
    p.add_argument("--no-bf16", action="store_true", help="train in fp32 on CUDA")
    p.add_argument("--no-grad-checkpointing", action="store_true")
    return p.parse_args(argv)


def preset_from_args(args: argparse.Namespace):
    inputs, targets = FEW_TO_MANY[args.few_to_many] if args.few_to_many else (None, None)
    return get_preset(
        args.preset,
        **{
            "optim.total_steps": args.steps, "optim.grad_accum": args.grad_accum, "optim.lr": args.lr,
            "optim.warmup_steps": args.warmup_steps,
            "optim.bf16": False if args.no_bf16 else None,
            "optim.grad_checkpointing": False if args.no_grad_checkpointing else None,
            "data.num_inputs": inputs, "data.num_targets": targets, "data.num_inputs_min": args.num_inputs_min,
            "data.batch_size": args.batch_size, "data.workers": args.workers,
            "model.mask_ratio": args.mask_ratio,
            "seed": args.seed, "log_every": args.log_every, "eval_every": args.eval_every,
            "save_every": args.save_every,
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # open_clip logs its model-building steps at INFO on the root logger: keep those quiet
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    from omniid.clip_tower import ClipWeightsMissing
    from omniid.data import ManifestError
    from omniid.engine import NonFiniteLoss, train

    preset = preset_from_args(args)
    manifest = Path(args.manifest)
    test = args.test_manifest or manifest.with_name("test.parquet")
    out = args.out or f"runs/omniid-{preset.name}"
    try:
        result = train(preset, manifest, out, test_manifest=test, resume=args.resume,
                       clip_weights=args.clip_weights, stop_after=args.stop_after)
    except (ManifestError, ClipWeightsMissing, NonFiniteLoss) as error:
        log.error("%s", error)
        return 2
    log.info("done: %s", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
