"""omniid-eval and omniid-generate: flags -> evaluate / OmniIDGenerator. No logic lives here.

Errors a user can cause (a missing checkpoint, adapter, image, FLUX folder or CLIP weights, a bad
manifest) end in one logged line naming the file, and exit code 2; never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from omniid import __version__
from omniid.cli_format import parser, setup_logging

log = logging.getLogger("omniid")


def _user_errors() -> tuple[type[BaseException], ...]:
    """omniid's user errors and mfhq's (the metric models' preset and weights), nothing wider."""
    from mfhq.faces import MfhqError
    from omniid.errors import OmniIDError

    return (OmniIDError, MfhqError)


def _parse_inputs(text: str) -> tuple[int, ...] | None:
    """--inputs "1,3,5" -> (1, 3, 5); None unless every item is a positive integer."""
    items = [item.strip() for item in text.split(",")]
    if not all(item.isdecimal() for item in items):
        return None
    ks = tuple(sorted({int(item) for item in items}))
    return ks if ks[0] >= 1 else None


def _cpu_threads(preset, device: str) -> None:
    """The preset's CPU thread count (tiny: 1, faster on shared cores), as omniid-train uses it."""
    import torch

    if preset is not None and not str(device).startswith("cuda") and preset.cpu_threads:
        torch.set_num_threads(preset.cpu_threads)


def _check_first(args: argparse.Namespace, counts: dict, owner, keep: frozenset[str] = frozenset()) -> None:
    """The counts in their ranges and --out usable, before any model loads: a result that cannot
    be written is never computed, and an earlier output is never overwritten without --force."""
    from omniid.checks import check_device, check_minimums, check_out_outside_manifests
    from omniid.eval_out import check_out

    check_minimums({"--steps": (args.steps, 1), **counts})
    check_device(args.device)
    check_out(args.out, owner, args.force, keep)
    # its files among a manifest's would stop `mfhq cluster-sample` rebuilding the folder, as a run's do
    manifests = {"--manifest": getattr(args, "manifest", None)}
    check_out_outside_manifests(args.out, manifests, f"{owner.command}'s files", "--out eval/NAME")
    if getattr(args, "export_multiid", None):
        check_out_outside_manifests(args.export_multiid, manifests, "the export's entries", "--export-multiid multiid/NAME")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", metavar="DEVICE", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--flux-path", metavar="DIR", help="diffusers-format FLUX.1-dev folder for the paper preset (or $OMNIID_FLUX_PATH)")
    p.add_argument("--clip-weights", metavar="FILE", help="open_clip weights file, for a baseline's frozen CLIP (paper preset)")
    p.add_argument("--steps", metavar="N", type=int, default=28, help="sampler steps")
    p.add_argument("--guidance", metavar="X", type=float, help="FLUX guidance value (default: each checkpoint's run's "
                                                  "flow.guidance, as it trained)")
    p.add_argument("--scale", metavar="X", type=float, help="adapter scale (default: the checkpoint's)")
    p.add_argument("--force", action="store_true", help="replace this command's earlier output in --out (its own "
                                                        "files are deleted first; other files are never touched)")


def eval_args(argv):
    p = parser("omniid-eval", "Generate and score held-out identities in the layout of the paper's Table 1\n(each "
               "row says its setting: Table 1-like with a ControlNet, or decoder-only).", __version__)
    p.add_argument("--checkpoint", metavar="DIR", nargs="+", default=[],
                   help="flow-stage run folder(s), checkpoints/latest or step folder(s): one decoder-only row each")
    p.add_argument("--controlnet", metavar="DIR", nargs="+", default=[],
                   help="adapter-stage run folder(s) (omniid-train --stage adapter): one Table 1-like row each, "
                        "generated with the run's ControlNet from each target's landmarks")
    p.add_argument("--manifest", metavar="PATH", help="manifests/test.parquet, or a manifest folder (its test.parquet)")
    p.add_argument("--bench", metavar="DIR", help="a MultiID-Bench folder as the evaluation set instead: per entry, "
                                                  "ref_*.jpg as inputs, ori.jpg as target, out.jpg scored if present")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder")
    p.add_argument("--inputs", metavar="LIST", default="1,3,5", help="numbers of input images k (those the data cannot serve are "
                                                     "left out, with a warning; the default is ours: an account of the "
                                                     "paper's Table 1 gives 1,3,5,7 on MFHQ, one target left of 8 faces)")
    p.add_argument("--targets", metavar="N", type=int, help="ground-truth faces per identity (default: every face after the "
                                               "inputs)")
    p.add_argument("--recognisers", metavar="LIST", help="identity models scoring every image, comma-separated registry names "
                                         "(default: the pipeline's own, then sface,dlib-resnet)")
    p.add_argument("--no-real-row", action="store_true", help="leave out the real-photos ceiling row")
    p.add_argument("--samples", metavar="N", type=int, default=1, help="generations per target")
    p.add_argument("--seed", metavar="N", type=int, default=0, help="first seed")
    p.add_argument("--identities", metavar="N", type=int, help="evaluate the first N identities only")
    p.add_argument("--pipeline", metavar="NAME|FILE", help="mfhq preset naming the metric models, a packaged name or a YAML file "
                                      "(default: paper for the paper preset, sample otherwise)")
    p.add_argument("--models-dir", metavar="DIR", help="mfhq's weights folder (or $MFHQ_MODELS_DIR): the metric "
                                                       "models' and the arcface baselines' identity model's")
    p.add_argument("--no-copy-row", action="store_true", help="leave out the copy-input calibration row")
    p.add_argument("--no-swap", action="store_true", help="leave out the identity-swap check (own vs another "
                                                         "identity's inputs)")
    p.add_argument("--swap-k", metavar="N", type=int, help="k of the identity-swap check, one of the evaluated "
                                                           "--inputs (default: the largest evaluated)")
    p.add_argument("--bootstrap", metavar="N", type=int, default=1000, help="resamples of every interval over identities "
                                                               "(seed: --seed)")
    p.add_argument("--report-identities", metavar="N", type=int, default=4, help="identities shown in report.html")
    p.add_argument("--export-multiid", metavar="DIR", help="also write every scored image in MultiID-Bench's "
                                                           "layout, one root per representation")
    _common(p)
    return p.parse_args(argv)


def _refused(args: argparse.Namespace, ks: tuple[int, ...] | None) -> str | None:
    """Why omniid-eval's flags cannot work together, or None."""
    if ks is None:
        return f"--inputs takes positive integers separated by commas, got {args.inputs!r}"
    if args.swap_k is not None and args.swap_k not in ks:
        return f"--swap-k {args.swap_k} is not one of --inputs {args.inputs}; give one of them"
    if (args.manifest is None) == (args.bench is None):
        return "omniid-eval takes one of --manifest or --bench"
    if not (args.checkpoint or args.controlnet or args.bench):
        return "nothing to evaluate: give --checkpoint (flow-stage runs) and/or --controlnet (adapter-stage runs)"
    if args.controlnet and args.bench:
        return "--controlnet draws each target's landmarks from a manifest: use it with --manifest, not --bench"
    return None


def eval_main(argv: list[str] | None = None) -> int:
    args = eval_args(argv)
    setup_logging(args)
    from omniid.eval_export import check_export_dir
    from omniid.eval_out import EVAL, kept_export
    from omniid.errors import check_weights
    from omniid.eval_rows import EvalRows
    from omniid.evaluate import Protocol, evaluate
    from omniid.metrics import FaceMetrics, default_pipeline
    from omniid.multiid import bench_seeds, read_bench

    ks = _parse_inputs(args.inputs)
    refused = _refused(args, ks)
    if refused:
        log.error("%s", refused)
        return 2
    try:
        _check_first(args, {"--targets": (args.targets, 1), "--samples": (args.samples, 1),
                            "--identities": (args.identities, 1), "--bootstrap": (args.bootstrap, 1),
                            "--report-identities": (args.report_identities, 1)},
                     EVAL, kept_export(args.out, args.export_multiid))
        if args.export_multiid:
            check_export_dir(args.export_multiid, args.out, args.force)
        rows = EvalRows(args.checkpoint, args.controlnet, args.device, args.flux_path, args.clip_weights,
                        args.models_dir)
        if args.bench and rows.labels:  # generated again: each entry with its meta.json's seed
            metas = read_bench(args.bench)[1]  # its skipped folders: evaluate says them
            bench_seeds(args.bench, {n: metas[n] for n in list(metas)[: args.identities]}, required=True)
        preset = rows.preset
        _cpu_threads(preset, args.device)
        protocol = Protocol(inputs=ks, targets=args.targets, samples=args.samples, seed=args.seed,
                            steps=args.steps, guidance=args.guidance, scale=args.scale, identities=args.identities,
                            copy_row=not args.no_copy_row, real_row=not args.no_real_row, swap=not args.no_swap,
                            swap_k=args.swap_k, bootstrap=args.bootstrap, report_identities=args.report_identities)
        recognisers = [r.strip() for r in args.recognisers.split(",") if r.strip()] if args.recognisers else None
        pipeline = args.pipeline or default_pipeline(preset.name if preset else "sample")
        # the rows' frozen weights and the metric models': every missing one named at once
        _, metrics = check_weights(rows.check_weights,
                                   lambda: FaceMetrics(pipeline, args.models_dir, args.device, recognisers))
        started = time.perf_counter()
        summary = evaluate(rows, args.manifest, args.out, metrics, protocol, args.bench, args.export_multiid,
                           replace=args.force)
    except _user_errors() as error:
        log.error("%s", error)
        return 2
    print(summary["table"], flush=True)  # the table itself, on stdout; the logs go to stderr
    # The total counts building the generators (the metric models were loaded before it); the mean is
    # one identity's own generating and scoring, so the two do not divide into each other.
    log.info("%d identities in %.1f s, building the generators included (%.1f s per identity generating and scoring); "
             "table: %s, report: %s", len(summary["identities"]),
             time.perf_counter() - started, summary["timing"]["mean_s"] or 0.0, Path(args.out) / "table.md",
             Path(args.out) / "report.html")
    _log_swap(summary["swap"].get("margins", []))
    return 0


def _log_swap(margins: list[dict]) -> None:
    """The identity-swap margins on the console; a row without a measured pair says so, not a number."""
    for m in margins:
        if m["margin"] != m["margin"]:  # NaN: no pair of own and swapped generations had a face
            log.warning("identity swap, %s (k=%d): not measured, no pair of own and swapped generations with a face "
                        "(no face: %.0f%% of its generations)", m["representation"], m["k"], 100 * m["no_face_rate"])
            continue
        log.info("identity swap, %s (k=%d): ID sim (%s) own %.3f, swapped %.3f, margin %+.3f [%+.3f, %+.3f] over "
                 "%d identities (%d pairs; no face: %.0f%% of its generations)", m["representation"], m["k"],
                 m["recogniser"], m["own"], m["swapped"], m["margin"], m["low"], m["high"], m["identities"],
                 m["pairs"], 100 * m["no_face_rate"])


def generate_args(argv):
    p = parser("omniid-generate", "Generate images of one identity.", __version__)
    p.add_argument("--checkpoint", metavar="DIR", required=True, help="flow-stage run folder, checkpoints/latest or step folder")
    p.add_argument("--images", metavar="PATH", required=True, nargs="+", help="input images of one person: photos (the face is "
                   "detected and aligned as extract aligns crops; of several faces the largest, with a warning) or "
                   "aligned crops (used as they are). The presets train with 3 inputs: another number is beyond "
                   "training")
    p.add_argument("--manifest", metavar="PATH", help="manifest folder or file whose crop_path values --images may give (they are "
                                      "relative to the extract run folder; its manifest.json says where that is)")
    p.add_argument("--prompt", metavar="TEXT", help="text prompt; the paper preset needs FLUX's text encoders in --flux-path for "
                                    "any prompt but the trained one (default: the checkpoint's prompt)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder")
    p.add_argument("--num-images", metavar="N", type=int, default=1, help="images, with seeds seed, seed+1, ...")
    p.add_argument("--seed", metavar="N", type=int, default=0, help="first seed")
    p.add_argument("--size", metavar="N", type=int, help="image side (default: the preset's)")
    p.add_argument("--pipeline", metavar="NAME|FILE", help="mfhq preset whose detector finds and aligns the face of each input image, a "
                                      "packaged name or a YAML file (default: paper for the paper preset, sample "
                                      "otherwise)")
    p.add_argument("--models-dir", metavar="DIR", help="mfhq's weights folder (or $MFHQ_MODELS_DIR): that "
                                                       "detector's and the arcface baselines' identity model's")
    _common(p)
    return p.parse_args(argv)


def generate_main(argv: list[str] | None = None) -> int:
    args = generate_args(argv)
    setup_logging(args)
    from omniid.eval_out import GENERATE, claim_out, complete_out, write_json
    from omniid.face_inputs import input_paths
    from omniid.generation import OmniIDGenerator

    out = Path(args.out)
    try:
        _check_first(args, {"--num-images": (args.num_images, 1), "--size": (args.size, 1)}, GENERATE)
        images = input_paths(args.images, args.manifest)  # every path found and read before any model loads
        gen = OmniIDGenerator.from_checkpoint(args.checkpoint, args.device, args.flux_path, args.clip_weights,
                                              pipeline=args.pipeline, models_dir=args.models_dir)
        _cpu_threads(gen.preset, args.device)
        _check_size(args.size, gen.side_multiple)
        if args.prompt is not None:
            gen.set_prompt(args.prompt, args.flux_path)
        seeds = [args.seed + i for i in range(args.num_images)]
        tokens = gen.tokens([images])  # training's preprocessing: a photo without a face is refused
        started = time.perf_counter()
        results = gen.generate(tokens.expand(len(seeds), *tokens.shape[1:]), seeds, steps=args.steps,
                               guidance=args.guidance, scale=args.scale, size=args.size)
        seconds = time.perf_counter() - started
        claim_out(out, GENERATE, args.force)  # the earlier output goes only once the new one exists
        names = _save_images(out, seeds, results)
    except _user_errors() as error:
        log.error("%s", error)
        return 2
    settings = {**gen.settings_used(args.guidance, args.scale), "images": [str(Path(p)) for p in args.images],
                "preprocessing": [{"image": str(p), **record} for p, record in zip(images, gen.preprocessing[0])],
                "seeds": seeds, "steps": args.steps, "size": args.size or gen.image_size, "outputs": names, "device": args.device,
                "seconds": round(seconds, 3)}
    write_json(out / "settings.json", settings)
    complete_out(out, GENERATE)  # last: a folder without it is not a complete output
    log.info("wrote %d image(s) to %s", len(names), out)
    return 0


def _check_size(size: int | None, multiple: int) -> None:
    """--size a side the run's FLUX makes, or a FlagError naming the two nearest (never an image of
    another size than settings.json records)."""
    from omniid.errors import FlagError

    if size is not None and size % multiple:
        lower, upper = size - size % multiple, size - size % multiple + multiple
        raise FlagError(f"--size {size}: this run's FLUX makes images whose side is a multiple of {multiple}; give "
                        + (f"{lower} or {upper}" if lower else f"{upper}"))


def _save_images(out: Path, seeds: list[int], images: list) -> list[str]:
    """seed<N>.png per image; a full disk is one message, not a traceback."""
    from mfhq.manifest.io import is_disk_full
    from omniid.checks import disk_full

    names = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for seed, image in zip(seeds, images):
            names.append(f"seed{seed}.png")
            image.save(out / names[-1])
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise disk_full(out, error, f"{len(names) - 1} of {len(images)} images were written.") from None
    return names


if __name__ == "__main__":
    sys.exit(generate_main())
