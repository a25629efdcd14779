"""The `mfhq` command line: flags become config, the logic lives in the modules."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from mfhq.config import load_pipeline
from mfhq.errors import MfhqError
from mfhq.materialize_cli import materialize_command
from mfhq.models.commands import models_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Build the MFHQ multi-view face dataset from videos.")
app.add_typer(models_app, name="models")
app.command("materialize")(materialize_command)
log = logging.getLogger("mfhq")


_LOG_LEVEL = {"level": logging.INFO}  # set by the top-level -v/-q (see _main)


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else _LOG_LEVEL["level"]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)


def _version(value: bool) -> None:
    if value:
        from mfhq import __version__

        typer.echo(f"mfhq {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug messages too"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Warnings and errors only"),
) -> None:
    """Build the MFHQ multi-view face dataset from videos."""
    if verbose and quiet:
        raise typer.BadParameter("give --verbose or --quiet, not both")
    _LOG_LEVEL["level"] = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=_LOG_LEVEL["level"], format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(_LOG_LEVEL["level"])


def _fail(message: str) -> None:
    log.error(message)
    raise typer.Exit(code=2)


@app.command()
def sample(out: Path = typer.Option(..., help="Folder for the sample videos and sample.json"),
           seed: int = typer.Option(0, help="Seed for the generated motion and noise")) -> None:
    """Write the bundled sample: short H.264 clips made from face photos shipped in packages."""
    _setup_logging(False)
    from mfhq.sample import make_sample

    meta = make_sample(out, seed=seed)
    log.info("wrote %d clips to %s", len(meta["clips"]), out / "videos")


@app.command()
def extract(
    source: str = typer.Option("folder", help="Source adapter, or `all` for a root holding several (see `mfhq sources`)"),
    root: Path = typer.Option(..., help="The source's root folder"),
    out: Path = typer.Option(..., help="The run folder (resumes if it exists)"),
    pipeline: Optional[Path] = typer.Option(None, help="Pipeline preset YAML (e.g. pipelines/sample.yaml)"),
    workers: Optional[int] = typer.Option(None, help="Worker processes (overrides the preset)"),
    models_dir: Optional[Path] = typer.Option(None, envvar="MFHQ_MODELS_DIR", help="Folder of model weights"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N (overrides the preset's run.device)"),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N clips"),
    clips: Optional[Path] = typer.Option(None, help="Only the clips this file lists, one `<source>/<clip id>` or clip id a line"),
    force: bool = typer.Option(False, help="Resume even if the run was made with another config"),
    executor: Optional[str] = typer.Option(None, help="local (worker processes here) or ray (overrides run.executor)"),
    address: Optional[str] = typer.Option(None, help="ray: the cluster's address (default: start a local Ray instance)"),
    retry: Optional[str] = typer.Option(None, help="Re-run finished clips whose status is one of these, e.g. missing,crashed,timeout,error"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Decode, detect, keep the clip's person, align, and score every face; write Parquet shards."""
    _setup_logging(verbose)
    from mfhq.checks import check_device, check_output_dir
    from mfhq.extract import Interrupted, extract as run_extract

    try:
        cfg = load_pipeline(pipeline)
        if workers is not None:
            cfg = cfg.replace(run={"workers": workers})
        if device is not None:
            cfg = cfg.replace(run={"device": device})
        if executor is not None:
            cfg = cfg.replace(run={"executor": executor})
        if address is not None:
            cfg = cfg.replace(run={"address": address})
        statuses = [s.strip() for s in (retry or "").split(",") if s.strip()]
        # Before any work: never a silent CPU run recorded as cuda.
        check_device(cfg.run.device, "--device" if device is not None else f"{pipeline}: run.device")
        check_output_dir(out)
        summary = run_extract(source, root, out, cfg, models_dir=models_dir, force=force, limit=limit,
                              clips_file=clips, retry=statuses)
    except Interrupted as exc:  # Ctrl-C / SIGTERM: one line, no traceback
        log.warning(str(exc))
        raise typer.Exit(code=130)
    except MfhqError as exc:  # a user's mistake (a bad flag, file or environment): one line
        _fail(str(exc))
        return
    log.info(
        "%d clips in %.1f s (%d shards, %d new, %d already done): %s; faces kept %d, dropped %d. Output: %s",
        summary.clips, summary.seconds, summary.shards_total, summary.shards_added, summary.shards_skipped,
        ", ".join(f"{k}={v}" for k, v in sorted(summary.status_counts.items())) or "nothing to do",
        summary.faces_kept, summary.faces_dropped, out,
    )
    if summary.frames_detect_skipped:
        log.info("detection skipped on %d frames whose faces the source's annotations gave", summary.frames_detect_skipped)


@app.command()
def sources() -> None:
    """List the source adapters and what each expects on disk."""
    from mfhq.sources.base import _REGISTRY

    for name in sorted(_REGISTRY):
        typer.echo(f"{name:16s} {_REGISTRY[name].expects}")


@app.command()
def summary(run: Path = typer.Option(..., help="A run folder made by `mfhq extract`"),
            full: bool = typer.Option(False, "--full", help="Each reason whole on its row (no wrapping)")) -> None:
    """Per-clip table of a run: status, frames read, faces kept, reason (DuckDB over the shards)."""
    from mfhq.run_summary import summary_text

    try:
        table = summary_text(run, full=full)
    except MfhqError as exc:
        _fail(str(exc))
        return
    typer.echo(table)


@app.command()
def bench(
    root: Optional[Path] = typer.Option(None, help="A folder of videos (e.g. the sample's videos/); "
                                        "with --make-clips, where the generated clips go (default runs/bench-clips/<resolution>)"),
    pipeline: Optional[Path] = typer.Option(None, help="Pipeline preset YAML"),
    out: Path = typer.Option(Path("runs/bench"), help="Scratch run folder (replaced)"),
    make_clips: int = typer.Option(0, "--make-clips", help="Generate N realistic clips (one large face in head-like motion) first"),
    resolution: str = typer.Option("1080p", help="Size of generated clips: 1080p (face ~550 px) or 4k (face ~760 px)"),
    seconds: float = typer.Option(4.0, help="Length of each generated clip"),
    slice_threads: bool = typer.Option(False, "--slice-threads", help="Encode generated clips with one slice per "
                                       "encoder thread (PyAV's default), not one per frame as ffmpeg's command line does"),
    workers: int = typer.Option(1, help="Extract workers, and decode-only processes to compare with"),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of text"),
    profile: bool = typer.Option(False, help="Also run the stages in-process under pyinstrument; print the top functions"),
    decode_ahead: Optional[bool] = typer.Option(None, "--decode-ahead/--no-decode-ahead",
                                                help="Override the preset's run.decode_ahead (always / never)"),
) -> None:
    """Extract throughput beside decode-only throughput on the same clips, in one run."""
    _setup_logging(False)
    import json

    from mfhq.bench import format_report, profile_stages, run_bench

    if make_clips:
        from mfhq.benchclips import RESOLUTIONS, make_clips as render_clips

        if resolution not in RESOLUTIONS:
            _fail(f"--resolution {resolution!r}: use one of {', '.join(RESOLUTIONS)}")
        root = root or Path("runs/bench-clips") / resolution
        render_clips(root, make_clips, resolution, seconds, slice_threads=slice_threads)
    if root is None or not Path(root).is_dir():
        _fail(f"--root {root}: not a folder of videos (or pass --make-clips N)")
    cfg = load_pipeline(pipeline)
    if decode_ahead is not None:
        cfg = cfg.replace(run={"decode_ahead": "always" if decode_ahead else "never"})
    result = run_bench(root, cfg, out, workers)
    if profile:
        result["profile_top"] = [[name, round(s, 3)] for name, s in profile_stages(root, cfg, out.with_name(out.name + "-profile"))]
    if json_out:
        typer.echo(json.dumps(result, indent=1))
        return
    for line in format_report(result):
        typer.echo(line)
    for name, s in result.get("profile_top", []):
        typer.echo(f"  {s:8.2f} s  {name}")


@app.command("cluster-sample")
def cluster_sample(
    run: list[Path] = typer.Option(..., help="Run folder(s) made by `mfhq extract` (repeat for several)"),
    out: Path = typer.Option(Path("manifests"), help="Folder for train.parquet, test.parquet, identities.parquet, manifest.json"),
    pipeline: Optional[Path] = typer.Option(None, help="Preset YAML whose `curate` section is used"),
    workers: Optional[int] = typer.Option(None, help="Threads for the pose k-means (overrides the preset; results do not depend on it)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Per identity: pose over-clustering, 8 faces; identity merge; train/test split; manifests."""
    _setup_logging(verbose)
    from mfhq.checks import check_output_dir
    from mfhq.curate import cluster_sample as run_cluster_sample

    try:
        check_output_dir(out)
        cfg = load_pipeline(pipeline)
        summary = run_cluster_sample(run, out, cfg.curate, cfg.name, workers=workers)
    except MfhqError as exc:
        _fail(str(exc))
        return
    typer.echo(f"train: {summary['train']}\ntest: {summary['test']}\nOutput: {out}")


@app.command()
def split(
    manifests: Path = typer.Option(Path("manifests"), help="Folder written by `mfhq cluster-sample`"),
    pipeline: Optional[Path] = typer.Option(None, help="Preset YAML whose `curate` split options are used"),
) -> None:
    """Re-split existing manifests (deterministic; disjoint in identities and source videos)."""
    _setup_logging(False)
    from mfhq.curate import resplit

    try:
        summary = resplit(manifests, load_pipeline(pipeline).curate)
    except MfhqError as exc:
        _fail(str(exc))
        return
    typer.echo(f"train: {summary['train']}\ntest: {summary['test']}")


@app.command()
def stats(
    run: list[Path] = typer.Option(..., help="Run folder(s) made by `mfhq extract`"),
    manifest: Optional[Path] = typer.Option(None, help="Manifest folder (or one of its Parquet files)"),
    out: Path = typer.Option(Path("reports"), help="Folder for the PNG plots and report.html"),
    sql: Optional[str] = typer.Option(None, "--sql", help="Run this query against the views and print it"),
) -> None:
    """Counts, rejections, pose and quality coverage, throughput: DuckDB views, plots, HTML."""
    _setup_logging(False)
    from mfhq.checks import check_output_dir
    from mfhq.stats import run_query, write_report

    try:
        if sql:
            typer.echo(run_query(run, manifest, sql))
            return
        check_output_dir(out)
        for title, text in write_report(run, manifest, out):
            typer.echo(f"== {title}\n{text}")
    except MfhqError as exc:
        _fail(str(exc))
        return
    typer.echo(f"Report: {out / 'report.html'}")


@app.command("bench-curate")
def bench_curate(
    identities: int = typer.Option(134_000, help="Synthetic identities (MFHQ: 134k)"),
    faces: int = typer.Option(17_000_000, help="Synthetic candidate faces in all (MFHQ: about 17M)"),
    workdir: Path = typer.Option(Path("runs/bench-curate"), help="Scratch folder for the synthetic table"),
    pipeline: Optional[Path] = typer.Option(None, help="Preset YAML whose `curate` section is used"),
    workers: Optional[int] = typer.Option(None, help="Threads for the k-means (results do not depend on it)"),
    merge_clips: Optional[int] = typer.Option(None, help="Largest clip count of the merge benchmark (it also runs "
                                              "at 1/4 and 1/2 of it; default: --identities; 0 skips it)"),
    skip_sample: bool = typer.Option(False, "--skip-sample", help="Only the merge benchmark"),
    skip_embedding_fit: bool = typer.Option(False, "--skip-embedding-fit",
                                            help="Skip the embedding merge's three-size fit"),
) -> None:
    """cluster-sample's time on a synthetic MFHQ-size face table beside a DuckDB full scan of it,
    and the identity merge's time at three clip counts with its fitted exponent."""
    _setup_logging(False)
    from mfhq.curate.bench import run_bench_curate, run_bench_merge, run_bench_preset_merge

    curate = load_pipeline(pipeline).curate
    sample: dict = {}
    if not skip_sample:
        for line in run_bench_curate(identities, faces, workdir, curate, workers, sample):
            typer.echo(line)
    n = identities if merge_clips is None else merge_clips
    if n:
        lines, preset_merge = run_bench_preset_merge(n, curate)
        for line in lines:
            typer.echo(line)
        if sample:  # the whole of cluster-sample at this size: k-means and selection plus the merge
            total = sample["sample_s"] + preset_merge["wall_s"]
            total_cpu = sample["sample_cpu_s"] + preset_merge["cpu_s"]
            typer.echo(f"cluster-sample with the preset's merge of {n} clips: {total:.2f} s wall, {total_cpu:.2f} s CPU "
                       f"-> {total / max(sample['scan_s'], 1e-9):.1f}x the full scan in wall time, "
                       f"{total_cpu / max(sample['scan_cpu_s'], 1e-9):.1f}x in CPU time")
        if not skip_embedding_fit:
            typer.echo("the embedding merge (merge_by_embedding, candidate search forced at every size):")
            for line in run_bench_merge(n, curate)[0]:
                typer.echo("  " + line)


def main() -> None:  # pragma: no cover
    sys.exit(app())
