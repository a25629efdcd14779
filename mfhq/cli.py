"""The `mfhq` command line: flags become config, the logic lives in the modules.

The grammar every command shares (global -v/-q anywhere, metavars, help layout, option names)
is in mfhq/cli_options.py; the curation commands are in cli_curate.py, `mfhq models` and
`mfhq bench-models` in cli_models.py.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from mfhq.cli_curate import register_curate_commands
from mfhq.cli_models import bench_models_command, models_app
from mfhq.cli_options import (DEFAULT_RULE, GlobalFlagsGroup, count_option, fail, flag, new_app, path_option,
                              pipeline_option)
from mfhq.config import load_pipeline
from mfhq.errors import MfhqError
from mfhq.materialize_cli import materialize_command

app = new_app(f"Build the MFHQ multi-view face dataset from videos.\n\n{DEFAULT_RULE} -v and -q may stand before "
              "or after any command.", cls=GlobalFlagsGroup)
app.command("materialize")(materialize_command)
log = logging.getLogger("mfhq")


def _version(value: bool) -> None:
    if value:
        from mfhq import __version__

        typer.echo(f"mfhq {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit"),
    verbose: bool = flag("--verbose", "-v", help="Debug messages too"),
    quiet: bool = flag("--quiet", "-q", help="Warnings and errors only; no progress bars"),
) -> None:
    if verbose and quiet:
        raise typer.BadParameter("give --verbose or --quiet, not both")
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)


@app.command()
def sample(out: Path = path_option(..., "--out", help="Folder for the sample videos and sample.json"),
           seed: int = count_option(0, "--seed", help="Seed for the generated motion and noise")) -> None:
    """Write the bundled sample: short H.264 clips made from face photos shipped in packages."""
    from mfhq.sample import make_sample

    try:
        meta = make_sample(out, seed=seed)
    except MfhqError as exc:  # --out holds other files, or another seed's sample: one line
        fail(str(exc))
    log.info("wrote %d clips to %s", len(meta["clips"]), out / "videos")


@app.command()
def extract(
    source: str = typer.Option("folder", metavar="NAME", help="Source adapter, or `all` for a root holding "
                               "several (see `mfhq sources`)"),
    root: Path = path_option(..., "--root", help="The source's root folder"),
    out: Path = path_option(..., "--out", help="The run folder (resumes if it exists)"),
    pipeline: Optional[str] = pipeline_option(),
    workers: Optional[int] = count_option(None, "--workers", help="Worker processes (overrides the preset)"),
    models_dir: Optional[Path] = path_option(None, "--models-dir", envvar="MFHQ_MODELS_DIR",
                                             help="Folder of model weights"),
    device: Optional[str] = typer.Option(None, metavar="DEVICE", help="cpu, cuda or cuda:N (overrides the "
                                         "preset's run.device)"),
    limit: Optional[int] = count_option(None, "--limit", min=1, help="Only the first N clips"),
    clips: Optional[Path] = path_option(None, "--clips", help="Only the clips this file lists, one "
                                        "`<source>/<clip id>` or clip id a line"),
    force: bool = flag("--force", help="Resume even if the run was made with another config"),
    executor: Optional[str] = typer.Option(None, metavar="NAME", help="local (worker processes here) or ray "
                                           "(overrides run.executor)"),
    address: Optional[str] = typer.Option(None, metavar="ADDRESS", help="ray: the cluster's address (default: "
                                          "start a local Ray instance)"),
    retry: Optional[str] = typer.Option(None, metavar="LIST", help="Re-run finished clips whose status is one of "
                                        "these, e.g. missing,crashed,timeout,error; `changed`: those whose video "
                                        "file changed since extract read it"),
) -> None:
    """Decode, detect, keep the clip's person, align, and score every face; write Parquet shards."""
    from mfhq.checks import check_run_folder
    from mfhq.manifest.io import check_output_dir
    from mfhq.extract import Interrupted, extract as run_extract
    from mfhq.run_summary import extract_lines

    try:
        cfg = load_pipeline(pipeline)
        overrides = {"workers": workers, "device": device, "executor": executor, "address": address}
        cfg = cfg.replace(run={k: v for k, v in overrides.items() if v is not None})
        statuses = [s.strip() for s in (retry or "").split(",") if s.strip()]
        # Before any work: never a silent CPU run recorded as cuda; said with the weights' state.
        _check_needs(cfg, "--device" if device is not None else f"{pipeline or 'sample'}: run.device", models_dir)
        check_output_dir(out)
        check_run_folder(out)
        summary = run_extract(source, root, out, cfg, models_dir=models_dir, force=force, limit=limit,
                              clips_file=clips, retry=statuses)
        lines = extract_lines(summary, out, statuses)
    except Interrupted as exc:  # Ctrl-C / SIGTERM: one line, no traceback
        log.warning(str(exc))
        raise typer.Exit(code=130)
    except MfhqError as exc:  # a user's mistake (a bad flag, file or environment): one line
        fail(str(exc))
    for line in lines:
        log.info("%s", line)


def _check_needs(cfg, origin: str, models_dir: Optional[Path]) -> None:
    """A device that is not here and the weights that are missing, in one message, not two rounds."""
    from mfhq.checks import check_device
    from mfhq.models.preflight import check_pipeline

    try:
        check_device(cfg.run.device, origin)
    except MfhqError as exc:
        try:
            check_pipeline(cfg, models_dir)
        except MfhqError as weights:
            raise type(exc)(f"{exc}\nand {weights}") from None
        raise


@app.command()
def sources() -> None:
    """List the source adapters and what each expects on disk."""
    from mfhq.sources.base import _REGISTRY

    for name in sorted(_REGISTRY):
        typer.echo(f"{name:16s} {_REGISTRY[name].expects}")


@app.command()
def summary(run: Path = path_option(..., "--run", help="A run folder made by `mfhq extract`"),
            full: bool = flag("--full", help="Each reason whole on its row (no wrapping)")) -> None:
    """Per-clip table of a run: its state first, then status, frames read, faces kept, reason."""
    from mfhq.run_summary import summary_text

    try:
        table = summary_text(run, full=full)
    except MfhqError as exc:
        fail(str(exc))
    typer.echo(table)


@app.command()
def bench(
    root: Optional[Path] = path_option(None, "--root", help="A folder of videos (e.g. the sample's videos/); with "
                                       "--make-clips, where the generated clips go (default "
                                       "runs/bench-clips/<resolution>)"),
    pipeline: Optional[str] = pipeline_option(),
    out: Path = path_option(Path("runs/bench"), "--out", help="Scratch run folder, replaced on each run; refused "
                            "if it holds files and bench did not make it (the profile uses OUT-profile)"),
    make_clips: int = count_option(0, "--make-clips", min=0, help="Generate N realistic clips (one large face in "
                                   "head-like motion) first"),
    resolution: str = typer.Option("1080p", metavar="NAME", help="Size of generated clips: 1080p (face ~550 px) "
                                   "or 4k (face ~760 px)"),
    seconds: float = typer.Option(4.0, metavar="S", help="Length of each generated clip"),
    slice_threads: bool = flag("--slice-threads", help="Encode generated clips with one slice per encoder "
                               "thread (PyAV's default), not one per frame as ffmpeg's command line does"),
    workers: int = count_option(1, "--workers", min=1, help="Extract workers, and decode-only processes to compare "
                                "with"),
    json_out: bool = flag("--json", help="Print one JSON object instead of text"),
    profile: bool = flag("--profile", help="Also run the stages in-process under pyinstrument; print the top "
                         "functions"),
    decode_ahead: Optional[bool] = typer.Option(None, "--decode-ahead/--no-decode-ahead", show_default=False,
                                                help="Override the preset's run.decode_ahead (always / never)"),
) -> None:
    """Extract throughput beside decode-only throughput on the same clips, in one run."""
    import json

    from mfhq.bench import format_report, profile_folder, profile_stages, run_bench, videos_held

    root = root or (Path("runs/bench-clips") / resolution if make_clips else None)
    _check_bench_folders(out, root, profile)
    if make_clips and not seconds > 0:  # a clip of no time would be measured as if it were one
        fail(f"--seconds {seconds}: the length of each generated clip must be more than 0")
    if make_clips:
        from mfhq.benchclips import RESOLUTIONS, make_clips as render_clips

        if resolution not in RESOLUTIONS:
            fail(f"--resolution {resolution!r}: use one of {', '.join(RESOLUTIONS)}")
        if Path(root).exists() and not Path(root).is_dir():
            fail(f"--root {root}: is a file; give the folder to render the clips into")
    elif root is None or not Path(root).is_dir():
        fail(f"--root {root}: not a folder of videos (or pass --make-clips N)")
    try:  # the folder in use, a bad preset, a run that finds nothing to extract: one line
        with videos_held(root, bool(make_clips)):  # rendered and read under one hold: never rewritten meanwhile
            if make_clips:
                render_clips(root, make_clips, resolution, seconds, slice_threads=slice_threads, held=True)
            cfg = load_pipeline(pipeline)
            if decode_ahead is not None:
                cfg = cfg.replace(run={"decode_ahead": "always" if decode_ahead else "never"})
            result = run_bench(root, cfg, out, workers)
            if profile:
                top = profile_stages(root, cfg, profile_folder(out))
                result["profile_top"] = [[name, round(s, 3)] for name, s in top]
    except MfhqError as exc:
        fail(str(exc))
    if json_out:
        typer.echo(json.dumps(result, indent=1))
        return
    for line in format_report(result):
        typer.echo(line)
    for name, s in result.get("profile_top", []):
        typer.echo(f"  {s:8.2f} s  {name}")


def _check_bench_folders(out: Path, videos: Optional[Path], profile: bool) -> None:
    """Before any work: a folder bench would replace must be its own, and hold none of its videos."""
    from mfhq.bench import check_root_outside, check_scratch, profile_folder

    try:
        check_scratch(out)
        check_root_outside(videos, out)
        if profile:
            check_scratch(profile_folder(out), "--out (its profile folder)")
            check_root_outside(videos, profile_folder(out), "--out (its profile folder)")
    except MfhqError as exc:
        fail(str(exc))


app.command("bench-models")(bench_models_command)
register_curate_commands(app)
app.add_typer(models_app, name="models")


def main() -> None:  # pragma: no cover
    sys.exit(app())
