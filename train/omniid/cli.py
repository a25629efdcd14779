"""omniid-train: flags -> preset overrides -> objective + loaders -> engine.train. No training logic here."""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path

from omniid.checks import check_minimums, check_out_dir, check_out_outside_manifests
from omniid.cli_format import setup_logging, terminal
from omniid.errors import FlagError, Interrupted, OmniIDError
from omniid.train_args import parse_args, preset_from_args

log = logging.getLogger("omniid")
FLUX_STAGES = ("flow", "adapter")  # the stages that train on FLUX (a prompt cache, FLUX files)

def run_stage(args: argparse.Namespace, preset, out: Path) -> dict:
    """The composition root: objective + loaders for this rank, then the engine."""
    import torch

    from omniid.data import build_loader, load_manifest
    from omniid.distributed import setup_distributed
    from omniid.encoder import quiet_random_init
    from omniid.engine import train
    from omniid.objectives import build_objective
    from omniid.recovery import resume_from
    from omniid.run_start import check_init_from

    manifest = Path(args.manifest)
    load_manifest(manifest, check_files=False)  # a bad manifest fails before any model is built
    check_out_outside_manifests(out, {"--manifest": args.manifest, "--test-manifest": args.test_manifest})
    if args.representation != "omniid" and args.stage == "mtd":
        raise FlagError("--representation applies to --stage flow and adapter only")
    if args.representation != "omniid" and args.init_from:  # a baseline starts from its pretrained models
        raise FlagError(f"--init-from takes an Omni-ID encoder; the {args.representation} baseline has none")
    rank, world, device = setup_distributed()
    resume, inputs, preset = _continue_or_refuse(args, preset, out, rank, world)
    # checked (damaged checkpoints set aside) before any model is built; the engine asks again
    resumed = resume_from(out, resume, rank, world) is not None
    if args.init_from and not resumed:
        check_init_from(args.init_from, preset)  # before any model is built; the engine checks again
    elif args.stage == "adapter" and args.representation == "omniid" and not resumed:
        raise FlagError("--stage adapter freezes a trained Omni-ID encoder: give --init-from a finished run")
    options = {"clip_weights": args.clip_weights, "representation": args.representation, "device": device,
               "flux_path": args.flux_path, "models_dir": args.models_dir,
               # an encoder taken from --init-from (or a resumed checkpoint) needs no pretrained CLIP;
               # a baseline's frozen CLIP is never in a checkpoint and always loads the preset's weights
               "pretrained_clip": not (args.init_from or resumed)}
    if args.stage in FLUX_STAGES:
        options["prompt_embeds"] = _prompt_cache(args, preset, out, rank, world)
    torch.manual_seed(preset.seed)  # the same initial weights on every rank
    # open_clip's "initialized randomly" warning is false when trained weights load right after,
    # and expected of a preset whose CLIP is random by design (tiny)
    random_by_design = preset.model.clip_pretrained is None
    quiet = (quiet_random_init() if not options["pretrained_clip"] or random_by_design
             else contextlib.nullcontext())
    with quiet:
        model = build_objective(args.stage, preset, **options).to(device)
    torch.manual_seed(preset.seed + rank)
    data, loader_options = preset.data, getattr(model, "loader_options", {})

    def make_loader(start_batch: int):
        return build_loader(manifest, preset.model.image_size, data.num_inputs, data.num_targets, data.batch_size,
                            data.workers, preset.seed, rank, world, start_batch=start_batch,
                            num_inputs_min=data.num_inputs_min, holdout=data.holdout_faces, **loader_options)

    test_loader, heldout = _eval_loaders(args, preset, loader_options) if rank == 0 else (None, None)
    record = {"representation": args.representation, **inputs}
    if args.stage in FLUX_STAGES:
        record["prompt_embeds"] = str(options["prompt_embeds"].resolve())
    if random_by_design and not resumed and not args.init_from:
        log.info("preset %s: random CLIP weights by design (it needs no weights)", preset.name)
    return train(preset, model, make_loader, out, test_loader=test_loader, resume=resume,
                 init_from=args.init_from, stop_after=args.stop_after, record=record, heldout_loader=heldout)


def _prompt_cache_path(args: argparse.Namespace, out: Path) -> Path:
    from omniid.checkpoint import PROMPT_EMBEDS_FILE

    return Path(args.prompt_embeds or out / PROMPT_EMBEDS_FILE)


def _prompt_cache(args: argparse.Namespace, preset, out: Path, rank: int, world: int) -> Path:
    """The prompt cache written once by rank 0 before any rank loads FLUX (the text encoders are
    freed by then); the FLUX files were checked by `_continue_or_refuse`."""
    from omniid.distributed import barrier
    from omniid.flux.prompt import ensure_prompt_embeds

    cache = _prompt_cache_path(args, out)
    if rank == 0:
        ensure_prompt_embeds(preset.flow, cache, args.flux_path)
    barrier(world)
    return cache


def _continue_or_refuse(args: argparse.Namespace, preset, out: Path, rank: int,
                        world: int) -> tuple[str | None, dict, object]:
    """(the --resume value to run with, the manifests' and frozen weights' facts for state.json, the
    preset to train with):
    an --out holding this run (same options, data, frozen weights, --init-from and number of
    processes) continues it; one holding another is refused before any work (an explicit --resume
    continues with a warning naming what differs, for the engine to record); --restart clears it (rank 0)."""
    from omniid.command_facts import frozen_facts, init_from_fact, manifest_facts
    from omniid.continuation import continuation, explicit_resume, restart_run
    from omniid.resume_record import CONTINUED_WITH, RESUMED_WITH
    from omniid.distributed import barrier

    flux = args.stage in FLUX_STAGES  # every missing FLUX file and frozen weight named at once
    data = manifest_facts(Path(args.manifest), _test_manifest(args))
    _refuse_training_data_as_test(data)
    if rank == 0:
        _say_shared_identities(data)
    inputs = {**data,
              **frozen_facts(preset, args.representation, flux, args.clip_weights, args.flux_path, args.models_dir,
                             _prompt_cache_path(args, out) if flux else None)}
    facts = {"representation": args.representation, "world": world, "init_from": init_from_fact(args.init_from),
             **inputs}
    resume = continuation(out, preset.to_dict(), facts, args.resume, args.restart, rank, world)
    if args.resume and not args.restart:  # the escape hatch continues anyway, saying what differs
        preset, inputs[RESUMED_WITH] = explicit_resume(out, preset, facts, args.resume, rank, world)
        if inputs[RESUMED_WITH] and rank == 0:
            log.warning("--resume %s continues the run with other options or inputs than it was trained with "
                        "(recorded in state.json and log.jsonl as %s): %s", args.resume, CONTINUED_WITH,
                        "; ".join(inputs[RESUMED_WITH]))
    if args.restart and rank == 0:
        restart_run(out)
    barrier(world)
    return resume, inputs, preset


def _test_manifest(args: argparse.Namespace) -> Path | None:
    """--test-manifest, or test.parquet of the --manifest folder (it may not exist); None where that
    default is the training file itself (`--manifest M/test.parquet`): no test set then."""
    from mfhq.manifest import split_path

    if args.test_manifest:
        return Path(args.test_manifest)
    test, train = split_path(Path(args.manifest), "test"), Path(args.manifest)
    return None if not train.is_dir() and test.resolve() == train.resolve() else test


def _refuse_training_data_as_test(facts: dict) -> None:
    """The eval_* losses and swap gap are logged as held out: never measured on the training file."""
    test = facts["test_manifest"]
    if test and (test == facts["manifest"] or facts["test_manifest_sha256"] == facts["manifest_sha256"]):
        how = "is" if test == facts["manifest"] else "has the same content (sha256) as"
        raise FlagError(f"test manifest {test} (--test-manifest, or test.parquet beside --manifest) {how} the "
                        f"training manifest {facts['manifest']}: its eval_* losses and swap gap would be measured on "
                        "identities the run trains on, logged as a test set's. Give a manifest of other identities "
                        "(cluster-sample's test.parquet); --holdout-faces N evaluates faces held out of training")


def _say_shared_identities(facts: dict) -> None:
    """A test manifest that shares some identities with the training one (cluster-sample's split
    never does; one made otherwise may): their eval_* losses and swap gap are not held out."""
    if not facts["test_manifest"]:
        return
    from mfhq.manifest import read_manifest  # the contract's checked reader: a bad file is named, not a traceback

    train, test = (set(read_manifest(facts[key], ["identity_id"], kind="manifest").column(0).to_pylist())
                   for key in ("manifest", "test_manifest"))
    if shared := sorted(train & test):
        log.warning("test manifest %s: %d of its %d identities are in the training manifest %s too (e.g. %s): "
                    "the eval_* losses and swap gap are not held out for them", facts["test_manifest"], len(shared),
                    len(test), facts["manifest"], shared[0])


def _eval_loaders(args: argparse.Namespace, preset, loader_options: dict) -> tuple:
    """(test.parquet's loader or None, the held-out frames' loader or None). Their batches hold two
    identities at least, so that the identity-swap gap has a pair to swap. In every stage their
    targets are never among the inputs (ours): an MTD target that is also an input asks the decoder
    to repeat a face the representation was given, so its loss and swap gap would show that ℓ
    encodes the given photos, not that it carries the identity to other views."""
    from omniid.data import build_loader

    manifest, data = Path(args.manifest), preset.data
    options = {**loader_options, "disjoint": True}

    def loader(path: Path, **split):
        return build_loader(path, preset.model.image_size, data.num_inputs, data.num_targets,
                            max(2, data.batch_size), 0, preset.seed, clamp_batch=True, **options, **split)

    test = _test_manifest(args)
    if test is None:
        log.warning("no test set: --manifest %s is itself the test.parquet beside it, so the eval_* losses are not logged "
                    "(--test-manifest)", manifest)
    elif not test.is_file():
        log.warning("no test set: %s not found, so the eval_* losses are not logged (--test-manifest)", test)
    held = {"holdout": data.holdout_faces, "part": "heldout", "name": "heldout"}
    return (loader(test, name="eval") if test is not None and test.is_file() else None,
            loader(manifest, **held) if data.holdout_faces else None)


def check_flags(args: argparse.Namespace, out: Path) -> None:
    """Every count in its range, the optimizer buildable, --out usable and not --init-from's run,
    before anything is built."""
    from omniid.optim import check_optimizer
    from omniid.run_start import check_init_from_apart

    check_minimums({"--keep-checkpoints": (args.keep_checkpoints, 0), "--milestone-every": (args.milestone_every, 0),
                    "--steps": (args.steps, 1), "--stop-after": (args.stop_after, 1),
                    "--batch-size": (args.batch_size, 1), "--grad-accum": (args.grad_accum, 1),
                    "--num-inputs-min": (args.num_inputs_min, 1), "--warmup-steps": (args.warmup_steps, 0),
                    "--workers": (args.workers, 0), "--log-every": (args.log_every, 1),
                    "--eval-every": (args.eval_every, 1), "--save-every": (args.save_every, 1),
                    "--holdout-faces": (args.holdout_faces, 0), "--swap-warmup-steps": (args.swap_warmup_steps, 0),
                    "--patience": (args.patience, 0)})
    check_optimizer(args.optimizer)
    check_out_dir(out)
    check_init_from_apart(args.init_from, out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)  # open_clip logs its model-building steps at INFO on the root logger: kept quiet
    from mfhq.faces import MfhqError

    try:
        preset = preset_from_args(args)
    except OmniIDError as error:  # flags that break a preset's rule (DataConfig's few-to-many checks)
        log.error("%s", error)
        return 2
    out = Path(args.out or f"runs/omniid-{preset.name}{'' if args.stage == 'mtd' else '-' + args.stage}")
    try:
        with _sigterm_as_interrupt(), terminal():
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
            # the own loss the gap is a share of: that of the batches with a pair, which the gap is over
            log.info("identity-swap gap reached (%s, step %d): %+.5f (%+.2f%% of the loss %.5f)", name,
                     result["step"], result[f"{name}_swap_gap"], 100 * result[f"{name}_swap_gap_rel"],
                     result[f"{name}_swap_loss_own"])
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
