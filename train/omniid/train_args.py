"""omniid-train's flags and how they override the preset (no torch import: `--help` is instant)."""
from __future__ import annotations

import argparse

from omniid import __version__
from omniid.cli_format import parser
from omniid.config import DEFAULT_PRESET, FEW_TO_MANY, PRESETS, REPRESENTATION_NAMES, STAGES, get_preset
from omniid.preset_flags import preset_overrides

WEIGHTS_HELP = """\
weights each preset needs (nothing is ever downloaded):
  tiny       nothing: random tiny CLIP, FLUX and VAE configs (CPU tests)
  tiny-swap  nothing: tiny, trained on a CPU until the identity-swap gap
             shows (make demo; ours)
  paper  mtd:  CLIP ViT-H/14 laion2b_s32b_b79k (--clip-weights FILE,
               $OMNIID_CLIP_WEIGHTS, or open_clip's Hugging Face cache)
         flow: the same CLIP weights, unless --init-from gives a trained
               encoder, and FLUX.1-dev in diffusers format (--flux-path DIR
               or $OMNIID_FLUX_PATH)
         adapter: as flow; --representation omniid needs --init-from (a
               finished run)

the two-stage schedule (paper §4.1; M: manifests/train.parquet):
  omniid-train --manifest M --preset paper --stage mtd --out runs/mtd
  omniid-train --manifest M --preset paper --stage flow --init-from runs/mtd \\
               --out runs/flow

an --out that holds a run continues it (same options and data) or is refused
(other options, each named); --restart starts it over.
"""


# Whose the `paper` preset's value of a flag is, where docs/train.md says: the paper's own
# (§4.1's 250K and 10K steps, §3's 95% masking) or ours (the paper gives none); the preset is
# named after the paper, so its help must not pass our choices off as the paper's.
PAPER_PRESET_SOURCE = {"optim.total_steps": "the paper's", "model.mask_ratio": "the paper's",
                       "data.batch_size": "ours", "optim.lr": "ours", "optim.warmup_steps": "ours",
                       "optim.grad_accum": "ours", "flow.guidance": "ours"}


def preset_default(key: str) -> str:
    """'tiny 0.001, paper 1e-05 (ours)' (mtd/flow where the stages differ): what --preset gives a
    flag, the paper preset's marked with whose it is (`PAPER_PRESET_SOURCE`)."""
    parts = []
    for name in sorted(PRESETS):
        values = []
        for stage in ("mtd", "flow"):  # the adapter stage uses the flow stage's sections
            preset = get_preset(name, stage=stage)
            section, _, leaf = key.rpartition(".")
            values.append(getattr(getattr(preset, section) if section else preset, leaf))
        shown = values[0] if len(set(map(str, values))) == 1 else "/".join(map(str, values))
        source = PAPER_PRESET_SOURCE.get(key) if name == "paper" else None
        parts.append(f"{name} {shown}" + (f" ({source})" if source else ""))
    return "preset: " + ", ".join(parts) + (" (mtd/flow)" if any("/" in p for p in parts) else "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("omniid-train", "Train the Omni-ID encoder from an mfhq manifest.", __version__, WEIGHTS_HELP)
    p.add_argument("--manifest", required=True, metavar="PATH", help="a manifest file or folder (train.parquet)")
    p.add_argument("--test-manifest", metavar="PATH", help="evaluated periodically (default: test.parquet of the "
                                                          "--manifest folder, if present)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                   help="tiny and tiny-swap need no weights (like mfhq's sample); paper needs pretrained weights")
    p.add_argument("--stage", default="mtd", choices=STAGES,
                   help="mtd: masked transformer decoder; flow: flow matching on FLUX (paper §3.3); "
                        "adapter: Table 1's setting, a frozen representation with a ControlNet (landmark "
                        "images) and an IP-Adapter on FLUX")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/omniid-PRESET[-flow])")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", metavar="DIR", help="a step folder to resume from (the run's newer steps are moved "
                                                     "into checkpoints/superseded/; 'auto': the newest intact one, "
                                                     "the default when --out holds this run)")
    run.add_argument("--restart", action="store_true", help="delete --out's checkpoints and log, start over")
    p.add_argument("--init-from", metavar="DIR", help="start the encoder from this run folder, its checkpoints/latest "
                                                      "or a step folder (the MTD decoder is dropped)")
    p.add_argument("--clip-weights", metavar="FILE", help="open_clip weights file for the paper preset "
                                                         "(or $OMNIID_CLIP_WEIGHTS)")
    p.add_argument("--models-dir", metavar="DIR", help="mfhq's model weights folder (or $MFHQ_MODELS_DIR): the "
                                                       "identity model of --representation arcface, arcface+clip")
    flow = p.add_argument_group("flow and adapter stages")
    flow.add_argument("--representation", default="omniid", choices=REPRESENTATION_NAMES,
                      help="what conditions the FLUX decoder")
    flow.add_argument("--flux-path", metavar="DIR", help="diffusers-format FLUX.1-dev folder (or $OMNIID_FLUX_PATH)")
    flow.add_argument("--prompt-embeds", metavar="FILE", help="cached prompt embeddings (default: OUT/"
                                                             "prompt_embeds.safetensors, written once with FLUX's "
                                                             "T5 + CLIP text encoders)")
    flow.add_argument("--timesteps", choices=("uniform", "logit_normal"), help=preset_default("flow.timesteps"))
    flow.add_argument("--guidance", type=float, metavar="X", help="FLUX guidance in training; "
                                                                  + preset_default("flow.guidance"))
    flow.add_argument("--patience", type=int, metavar="N", help="a baseline stops after N evaluations without a new "
                      "best eval loss (0: trains to --steps; ours); preset: "
                      + ", ".join(f"{n} {PRESETS[n].baseline.convergence.patience}" for n in sorted(PRESETS)))
    _optim_args(p)
    _swap_args(p)
    return p.parse_args(argv)


def _optim_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("schedule and data (defaults from --preset)")
    g.add_argument("--steps", type=int, metavar="N", help="total optimizer steps (a baseline's cap, ours: 100K); "
                   + preset_default("optim.total_steps"))
    g.add_argument("--stop-after", type=int, metavar="N", help="stop after N steps of this invocation")
    g.add_argument("--few-to-many", choices=sorted(FEW_TO_MANY), help="|X^s|-|X^r| ablation (paper: 3-8)")
    g.add_argument("--num-inputs-min", type=int, metavar="N", help="draw M per identity in [N, |X^s|]")
    g.add_argument("--mask-ratio", type=float, metavar="X", help="MTD masking; " + preset_default("model.mask_ratio"))
    g.add_argument("--batch-size", type=int, metavar="N", help="identities per process per micro-batch; "
                   + preset_default("data.batch_size"))
    g.add_argument("--grad-accum", type=int, metavar="N", help=preset_default("optim.grad_accum"))
    g.add_argument("--lr", type=float, metavar="X", help=preset_default("optim.lr"))
    g.add_argument("--warmup-steps", type=int, metavar="N", help=preset_default("optim.warmup_steps"))
    g.add_argument("--optimizer", choices=("adamw", "adamw_fused", "adamw_8bit"),
                   help="adamw is fused on CUDA; adamw_8bit needs bitsandbytes (not installed by make)")
    g.add_argument("--workers", type=int, metavar="N", help="DataLoader processes; " + preset_default("data.workers"))
    g.add_argument("--seed", type=int, metavar="N", help=preset_default("seed"))
    g.add_argument("--log-every", type=int, metavar="N", help=preset_default("log_every"))
    g.add_argument("--eval-every", type=int, metavar="N", help=preset_default("eval_every"))
    g.add_argument("--save-every", type=int, metavar="N", help=preset_default("save_every"))
    g.add_argument("--keep-checkpoints", type=int, metavar="N", help="keep the newest N step folders (0: all); "
                   + preset_default("keep_checkpoints"))
    g.add_argument("--milestone-every", type=int, metavar="N", help="and every Nth step for good (0: none); "
                   + preset_default("milestone_every"))
    g.add_argument("--no-bf16", action="store_true", help="train in fp32 on CUDA")
    g.add_argument("--no-grad-checkpointing", action="store_true", help="off for the encoder and FLUX's blocks")


def _swap_args(p: argparse.ArgumentParser) -> None:
    swap = p.add_argument_group("identity-swap check (docs/train.md)")
    swap.add_argument("--holdout-faces", type=int, metavar="N", help="hold out each identity's last N faces from "
                      "training and evaluate them; 0 or at least 2; " + preset_default("data.holdout_faces"))
    swap.add_argument("--swap-warmup-steps", type=int, metavar="N", help="no near-zero swap gap warning before "
                      "this step; " + preset_default("swap_warmup_steps"))
    swap.add_argument("--swap-min-gap", type=float, metavar="X", help="a swap gap under this fraction of the eval "
                      "loss is near zero; " + preset_default("swap_min_gap"))
    swap.add_argument("--representation-lr-scale", type=float, metavar="X", help="the representation's lr = lr x X; "
                      + preset_default("optim.representation_lr_scale"))
    swap.add_argument("--latents", choices=("sample", "mean"), help="flow: the VAE posterior's sample or mean; "
                      + preset_default("flow.latents"))


def preset_from_args(args: argparse.Namespace):
    """The preset the flags choose, each field a flag gives overridden (`omniid.preset_flags`)."""
    return get_preset(args.preset, stage=args.stage, representation=args.representation, **preset_overrides(args))
