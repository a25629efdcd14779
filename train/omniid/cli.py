"""omniid-train: flags -> preset overrides -> objective + loaders -> engine.train. No training logic here."""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path

from omniid import __version__
from omniid.config import FEW_TO_MANY, PRESETS, get_preset
from omniid.checks import check_minimums, check_out_dir
from omniid.errors import FlagError, Interrupted, OmniIDError

log = logging.getLogger("omniid")

WEIGHTS_HELP = """\
weights each preset needs (nothing is ever downloaded):
  tiny       nothing: random tiny CLIP, FLUX and VAE configs (CPU tests)
  tiny-swap  nothing: tiny, trained on a CPU until the identity-swap gap shows (make demo; ours)
  paper  --stage mtd:  CLIP ViT-H/14 laion2b_s32b_b79k (--clip-weights FILE, $OMNIID_CLIP_WEIGHTS,
                       or open_clip's Hugging Face cache)
         --stage flow: the same CLIP weights, unless --init-from gives a trained encoder, and
                       FLUX.1-dev in diffusers format (--flux-path DIR or $OMNIID_FLUX_PATH)

the two-stage schedule (paper §4.1):
  omniid-train --manifest M --preset paper --stage mtd --out runs/mtd                  # 250K steps
  omniid-train --manifest M --preset paper --stage flow --init-from runs/mtd --out runs/flow  # 10K
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from omniid.objectives import OBJECTIVES
    from omniid.representations import REPRESENTATIONS

    p = argparse.ArgumentParser(prog="omniid-train", description="Train the Omni-ID encoder from an mfhq manifest.",
                                formatter_class=lambda prog: _Formatter(prog, max_help_position=32),
                                epilog=WEIGHTS_HELP)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--manifest", required=True, help="manifests/train.parquet")
    p.add_argument("--test-manifest", help="evaluated periodically (default: test.parquet beside --manifest, if present)")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS),
                   help="paper needs pretrained weights (see below); tiny needs none")
    p.add_argument("--stage", default="mtd", choices=sorted(OBJECTIVES),
                   help="mtd: masked transformer decoder; flow: flow matching on FLUX (paper §3.3)")
    p.add_argument("--out", help="run folder: logs and checkpoints (default: runs/omniid-<preset>[-flow])")
    p.add_argument("--resume", help="'auto' (the latest checkpoint in --out, if any) or a checkpoint folder")
    p.add_argument("--init-from", help="start the encoder from this run folder, its checkpoints/latest or a "
                                       "step folder (the MTD decoder is dropped)")
    p.add_argument("--clip-weights", help="open_clip weights file for the paper preset (or $OMNIID_CLIP_WEIGHTS)")
    flow = p.add_argument_group("flow stage")
    flow.add_argument("--representation", default="omniid", choices=sorted(REPRESENTATIONS),
                      help="what conditions the FLUX decoder")
    flow.add_argument("--flux-path", help="diffusers-format FLUX.1-dev folder (or $OMNIID_FLUX_PATH)")
    flow.add_argument("--prompt-embeds", help="cached prompt embeddings (default: OUT/prompt_embeds.safetensors, "
                                              "written once with FLUX's T5 + CLIP text encoders)")
    flow.add_argument("--timesteps", choices=("uniform", "logit_normal"), help="t sampling (preset: uniform)")
    flow.add_argument("--guidance", type=float, help="FLUX guidance value in training (preset: 3.5)")
    p.add_argument("--steps", type=int, help="total optimizer steps (preset: mtd 250K, flow 10K for paper)")
    p.add_argument("--stop-after", type=int, help="stop after this many steps of this invocation (schedule unchanged)")
    p.add_argument("--few-to-many", choices=sorted(FEW_TO_MANY), help="|X^s|-|X^r| ablation (paper: 3-8)")
    p.add_argument("--num-inputs-min", type=int, help="draw M per identity in [this, |X^s|] (mixed-M batches)")
    p.add_argument("--mask-ratio", type=float, help="MTD masking ratio (paper: 0.95; ablations 0.99, 0.85)")
    p.add_argument("--batch-size", type=int, help="identities per process per micro-batch")
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--optimizer", choices=("adamw", "adamw_fused", "adamw_8bit"),
                   help="adamw_fused: CUDA only; adamw_8bit: needs bitsandbytes (not installed by make)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument("--seed", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--save-every", type=int)
    p.add_argument("--no-bf16", action="store_true", help="train in fp32 on CUDA")
    p.add_argument("--no-grad-checkpointing", action="store_true", help="off for the encoder and FLUX's blocks")
    _swap_args(p)
    return p.parse_args(argv)


def _swap_args(p: argparse.ArgumentParser) -> None:
    swap = p.add_argument_group("identity-swap check (docs/train.md)")
    swap.add_argument("--holdout-faces", type=int, help="hold out each identity's last N faces from training and "
                                                          "evaluate them; 0 or at least 2 (preset: tiny-swap 2, else 0)")
    swap.add_argument("--swap-warmup-steps", type=int, help="no near-zero swap gap warning before this step "
                                                              "(preset: paper 2000, tiny 50, tiny-swap 200)")
    swap.add_argument("--swap-min-gap", type=float, help="a swap gap under this fraction of the eval loss is near "
                                                          "zero (preset: 0.001)")
    swap.add_argument("--representation-lr-scale", type=float, help="the representation's lr = lr x this "
                                                                      "(preset: 1; tiny-swap flow 0.01)")
    swap.add_argument("--latents", choices=("sample", "mean"), help="flow: the VAE posterior's sample or mean "
                                                                      "(preset: sample; tiny-swap mean)")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown; the epilog's layout kept. `None` defaults (the preset decides) are not shown."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def preset_from_args(args: argparse.Namespace):
    inputs, targets = FEW_TO_MANY[args.few_to_many] if args.few_to_many else (None, None)
    return get_preset(
        args.preset, stage=args.stage,
        **{
            "optim.total_steps": args.steps, "optim.grad_accum": args.grad_accum, "optim.lr": args.lr,
            "optim.warmup_steps": args.warmup_steps, "optim.optimizer": args.optimizer,
            "optim.bf16": False if args.no_bf16 else None,
            "optim.grad_checkpointing": False if args.no_grad_checkpointing else None,
            "data.num_inputs": inputs, "data.num_targets": targets, "data.num_inputs_min": args.num_inputs_min,
            "data.batch_size": args.batch_size, "data.workers": args.workers,
            "model.mask_ratio": args.mask_ratio,
            "flow.flux_path": args.flux_path, "flow.timesteps": args.timesteps, "flow.guidance": args.guidance,
            "data.holdout_faces": args.holdout_faces, "optim.representation_lr_scale": args.representation_lr_scale,
            "flow.latents": args.latents, "swap_warmup_steps": args.swap_warmup_steps,
            "swap_min_gap": args.swap_min_gap,
            "seed": args.seed, "log_every": args.log_every, "eval_every": args.eval_every,
            "save_every": args.save_every,
        },
    )


def run_stage(args: argparse.Namespace, preset, out: Path) -> dict:
    """The composition root: objective + loaders for this rank, then the engine."""
    import torch
    import torch.distributed as dist

    from omniid.checkpoint import PROMPT_EMBEDS_FILE
    from omniid.data import build_loader, load_manifest
    from omniid.distributed import setup_distributed
    from omniid.encoder import quiet_random_init
    from omniid.engine import check_init_from, train
    from omniid.recovery import resume_from
    from omniid.flux.loading import check_flux_files
    from omniid.flux.prompt import ensure_prompt_embeds
    from omniid.objectives import build_objective

    manifest = Path(args.manifest)
    load_manifest(manifest, check_files=False)  # a bad manifest fails before any model is built
    if args.representation != "omniid" and args.stage != "flow":
        raise FlagError("--representation applies to --stage flow only")
    rank, world, device = setup_distributed()
    # checked (damaged checkpoints set aside) before any model is built; the engine asks again
    resumed = resume_from(out, args.resume, rank, world) is not None
    if args.init_from and not resumed:
        check_init_from(args.init_from, preset)  # before any model is built; the engine checks again
    options = {"clip_weights": args.clip_weights, "representation": args.representation, "device": device,
               "flux_path": args.flux_path,
               # an encoder taken from --init-from (or a resumed checkpoint) needs no pretrained CLIP
               "pretrained_clip": not (args.init_from or resumed)}
    if args.stage == "flow":
        options["prompt_embeds"] = Path(args.prompt_embeds or out / PROMPT_EMBEDS_FILE)
        check_flux_files(preset.flow, args.flux_path, options["prompt_embeds"])
        if rank == 0:  # written once, before any rank loads FLUX (the text encoders are freed by then)
            ensure_prompt_embeds(preset.flow, options["prompt_embeds"], args.flux_path)
        if world > 1:
            dist.barrier()
    torch.manual_seed(preset.seed)  # the same initial weights on every rank
    # open_clip's "initialized randomly" warning is false when trained weights load right after
    quiet = quiet_random_init() if not options["pretrained_clip"] else contextlib.nullcontext()
    with quiet:
        model = build_objective(args.stage, preset, **options).to(device)
    torch.manual_seed(preset.seed + rank)
    data, loader_options = preset.data, getattr(model, "loader_options", {})

    def make_loader(start_batch: int):
        return build_loader(manifest, preset.model.image_size, data.num_inputs, data.num_targets, data.batch_size,
                            data.workers, preset.seed, rank, world, start_batch=start_batch,
                            num_inputs_min=data.num_inputs_min, holdout=data.holdout_faces, **loader_options)

    test_loader, heldout = _eval_loaders(args, preset, loader_options) if rank == 0 else (None, None)
    record = {"representation": args.representation}
    if args.stage == "flow":
        record["prompt_embeds"] = str(options["prompt_embeds"].resolve())
    return train(preset, model, make_loader, out, test_loader=test_loader, resume=args.resume,
                 init_from=args.init_from, stop_after=args.stop_after, record=record, heldout_loader=heldout)


def _eval_loaders(args: argparse.Namespace, preset, loader_options: dict) -> tuple:
    """(test.parquet's loader or None, the held-out frames' loader or None). Their batches hold two
    identities at least, so that the identity-swap gap has a pair to swap."""
    from omniid.data import build_loader

    manifest, data = Path(args.manifest), preset.data

    def loader(path: Path, **split):
        return build_loader(path, preset.model.image_size, data.num_inputs, data.num_targets,
                            max(2, data.batch_size), 0, preset.seed, clamp_batch=True, **loader_options, **split)

    test = Path(args.test_manifest or manifest.with_name("test.parquet"))
    return (loader(test) if test.is_file() else None,
            loader(manifest, holdout=data.holdout_faces, part="heldout") if data.holdout_faces else None)


def check_flags(args: argparse.Namespace, out: Path) -> None:
    """Every count in its range and --out usable, before anything is built."""
    check_minimums({"--steps": (args.steps, 1), "--stop-after": (args.stop_after, 1),
                    "--batch-size": (args.batch_size, 1), "--grad-accum": (args.grad_accum, 1),
                    "--num-inputs-min": (args.num_inputs_min, 1), "--warmup-steps": (args.warmup_steps, 0),
                    "--workers": (args.workers, 0), "--log-every": (args.log_every, 1),
                    "--eval-every": (args.eval_every, 1), "--save-every": (args.save_every, 1),
                    "--holdout-faces": (args.holdout_faces, 0), "--swap-warmup-steps": (args.swap_warmup_steps, 0)})
    check_out_dir(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # open_clip logs its model-building steps at INFO on the root logger: keep those quiet
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    from mfhq.faces import MfhqError

    try:
        preset = preset_from_args(args)
    except OmniIDError as error:  # flags that break a preset's rule (DataConfig's few-to-many checks)
        log.error("%s", error)
        return 2
    out = Path(args.out or f"runs/omniid-{preset.name}{'' if args.stage == 'mtd' else '-' + args.stage}")
    try:
        with _sigterm_as_interrupt():
            check_flags(args, out)
            result = run_stage(args, preset, out)
    except KeyboardInterrupt:  # before the engine took over: nothing of this invocation was saved
        from omniid.recovery import resume_hint

        log.warning("interrupted before training started; %s", resume_hint(out))
        return 130
    except Interrupted as error:  # Ctrl-C / SIGTERM in training: one line, no traceback
        log.warning("%s", error)
        return 130
    except (OmniIDError, MfhqError) as error:  # a user's mistake, one line; a bug stays a traceback
        log.error("%s", error)
        return 2
    finally:
        from omniid.distributed import teardown_distributed

        teardown_distributed()
    log.info("done: %s", result)
    for name in ("eval", "heldout"):
        if result.get(f"{name}_swap_gap") is not None:
            log.info("identity-swap gap reached (%s, step %d): %+.5f (%+.1f%% of the loss %.5f)", name,
                     result["step"], result[f"{name}_swap_gap"], 100 * result[f"{name}_swap_gap_rel"],
                     result[f"{name}_loss"])
    return 0


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM stops training the way Ctrl-C does (KeyboardInterrupt), so both end cleanly."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if main_thread else None
    try:
        yield
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":
    sys.exit(main())
