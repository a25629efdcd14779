"""`mfhq cluster-sample`, `split`, `stats` and `bench-curate`: flags become calls, nothing more."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mfhq.cli_options import (alias_of, count_option, fail, flag, hidden_alias, manifest_option, path_option,
                              pipeline_option)
from mfhq.config import load_pipeline
from mfhq.errors import MfhqError

_RUNS = "Run folder(s) made by `mfhq extract` (repeat for several)"


def cluster_sample(
    run: list[Path] = path_option(..., "--run", help=_RUNS),
    manifest: Optional[Path] = manifest_option(None, "Folder for train.parquet, test.parquet, identities.parquet "
                                               "and manifest.json [default: manifests]"),
    old_out: Optional[Path] = hidden_alias("--out", "--manifests"),
    pipeline: Optional[str] = pipeline_option(),
    workers: Optional[int] = count_option(None, "--workers", min=1, help="Threads for the pose k-means (overrides the "
                                          "preset; results do not depend on it)"),
    allow_partial: bool = flag("--allow-partial", help="Sample a run that is not complete (interrupted, failed); "
                               "the manifest's sidecar records it"),
    force: bool = flag("--force", help="Replace a manifest built from other runs or another curate config"),
) -> None:
    """Per identity: pose over-clustering, 8 faces; identity merge; train/test split; manifests."""
    from mfhq.manifest.io import check_output_dir
    from mfhq.curate import cluster_sample as run_cluster_sample
    from mfhq.run_summary import split_lines

    out = alias_of("--manifest", manifest, old_out, "--out (and --manifests)") or Path("manifests")
    try:
        check_output_dir(out, "--manifest")
        cfg = load_pipeline(pipeline)
        summary = run_cluster_sample(run, out, cfg.curate, cfg.name, workers=workers,
                                     allow_partial=allow_partial, force=force)
    except MfhqError as exc:
        fail(str(exc))
    for line in split_lines(summary):
        typer.echo(line)
    typer.echo(f"Output: {out}")


def split(
    manifest: Optional[Path] = manifest_option(None, "Folder written by `mfhq cluster-sample` [default: manifests]"),
    old_manifests: Optional[Path] = hidden_alias("--manifests"),
    pipeline: Optional[str] = pipeline_option(),
) -> None:
    """Re-split existing manifests (deterministic; disjoint in identities and source videos)."""
    from mfhq.curate import resplit
    from mfhq.run_summary import split_lines

    folder = alias_of("--manifest", manifest, old_manifests, "--manifests") or Path("manifests")
    try:
        summary = resplit(folder, load_pipeline(pipeline).curate)
    except MfhqError as exc:
        fail(str(exc))
    for line in split_lines(summary):
        typer.echo(line)


def stats(
    run: list[Path] = path_option(..., "--run", help=_RUNS),
    manifest: Optional[Path] = manifest_option(None, "Manifest folder (or one of its Parquet files)"),
    out: Path = path_option(Path("reports"), "--out", help="Folder for the PNG plots and report.html"),
    sql: Optional[str] = typer.Option(None, "--sql", metavar="QUERY", help="Run this query against the views and "
                                      "print it"),
) -> None:
    """The runs' state first, then counts, rejections, pose and quality coverage, throughput:
    DuckDB views, plots, HTML."""
    from mfhq.manifest.io import check_output_dir
    from mfhq.stats import run_query, write_report
    from mfhq.stats.report import check_report_apart

    try:
        if sql:
            typer.echo(run_query(run, manifest, sql))
            return
        check_output_dir(out)
        check_report_apart(out, run, manifest)
        for title, text in write_report(run, manifest, out):
            typer.echo(f"== {title}\n{text}")
    except MfhqError as exc:
        fail(str(exc))
    typer.echo(f"Report: {out / 'report.html'}")


def bench_curate(
    identities: int = count_option(134_000, "--identities", min=1, help="Synthetic identities (default about the "
                                   "paper's MFHQ: 134,077 identities; clips here, one identity each)"),
    faces: int = count_option(17_000_000, "--faces", min=1, help="Synthetic candidate faces in all (default 17M: "
                               "ours, a stand-in for MFHQ's candidate faces)"),
    workdir: Path = path_option(Path("runs/bench-curate"), "--workdir", help="Scratch folder for the synthetic table"),
    pipeline: Optional[str] = pipeline_option(),
    workers: Optional[int] = count_option(None, "--workers", min=1, help="Threads for the k-means (results do not "
                                          "depend on it)"),
    merge_clips: Optional[int] = count_option(None, "--merge-clips", min=0, help="Largest clip count of the merge "
                                              "benchmark (it also runs at 1/4 and 1/2 of it; default: "
                                              "--identities; 0 skips it)"),
    skip_sample: bool = flag("--skip-sample", help="Only the merge benchmark"),
    skip_embedding_fit: bool = flag("--skip-embedding-fit", help="Skip the embedding merge's three-size fit"),
    embedding_faces: Optional[int] = count_option(None, "--embedding-faces", min=0, help="Faces the clip means are "
                                                  "made from, their times then scaled to --faces (default: about 1 "
                                                  "GiB of embeddings; --faces measures them whole; 0 skips them)"),
) -> None:
    """cluster-sample's time on a synthetic MFHQ-size face table beside a DuckDB full scan of it,
    and the identity merge's time at three clip counts with its fitted exponent."""
    from mfhq.curate.bench import run_bench_curate, run_bench_merge, run_bench_preset_merge
    from mfhq.curate.bench_means import run_bench_embedding_read
    from mfhq.curate.merge import reads_embeddings

    config = load_pipeline(pipeline)
    curate = config.curate
    dim = embedding_dim(config.embed.backend)
    sample: dict = {}
    if not skip_sample:
        try:
            lines = run_bench_curate(identities, faces, workdir, curate, workers, sample)
        except MfhqError as exc:  # a --workdir it may not delete
            fail(str(exc))
        for line in lines:
            typer.echo(line)
    n = identities if merge_clips is None else merge_clips
    if not n:
        return
    lines, preset_merge = run_bench_preset_merge(n, curate, dim)
    for line in lines:
        typer.echo(line)
    if sample:  # the whole of cluster-sample at this size: k-means and selection plus the merge
        total = sample["sample_s"] + preset_merge["wall_s"] + preset_merge["setup_s"]
        total_cpu = sample["sample_cpu_s"] + preset_merge["cpu_s"] + preset_merge["setup_s"]
        given = " (clip means given)" if reads_embeddings(curate) else ""
        _echo_total(f"cluster-sample with the preset's merge of {n} clips{given}", total, total_cpu, sample)
        if given and (embedding_faces is None or embedding_faces > 0):
            size = min(faces, embedding_faces or 2**28 // dim)  # default: 2^30 bytes of float32 embeddings
            lines, read = run_bench_embedding_read(workdir / "embeddings", size, faces, dim, config.embed.every, curate)
            typer.echo("\n".join(lines))
            _echo_means_totals(f"cluster-sample with the preset's merge of {n} clips", (total, total_cpu), read,
                               faces, sample)
    if not skip_embedding_fit:
        typer.echo("the embedding merge alone (merge_by_embedding; every clip its own video):")
        for line in run_bench_merge(n, curate, dim=dim)[0]:
            typer.echo("  " + line)


def _echo_means_totals(what: str, totals: tuple[float, float], read: dict, faces: int, sample: dict) -> None:
    """cluster-sample's totals with its clip means added, from the clip rows and from every face."""
    (total, total_cpu), saved = totals, read["overlap_saved_s"]  # saved: wall time only, the same work
    # a total with a scaled part is no measurement: it says so, as the clip means' own line does
    scaled = "" if read["faces"] == faces else f" (its clip means' part scaled from {read['faces']} faces, " \
        f"not measured at {faces})"
    _echo_total(f"{what} and its clip means from the clip rows"
                + (f" (less the {saved:.2f} s its overlapped setup saves)" if saved else "") + scaled,
                total + read["scaled_rows_s"] - saved, total_cpu + read["scaled_rows_cpu_s"], sample)
    _echo_total("  ... from every face's embedding instead (curate.min_quality set, or a run from before "
                "the sums)" + scaled, total + read["scaled_s"], total_cpu + read["scaled_cpu_s"], sample)


def _echo_total(what: str, wall: float, cpu: float, sample: dict) -> None:
    typer.echo(f"{what}: {wall:.2f} s wall, {cpu:.2f} s CPU -> {wall / max(sample['scan_s'], 1e-9):.1f}x the full "
               f"scan in wall time, {cpu / max(sample['scan_cpu_s'], 1e-9):.1f}x in CPU time")


def embedding_dim(backend: str) -> int:
    """The width of the preset's clip embeddings (SFace 128, ArcFace 512), which the merge
    benchmark's synthetic clip means take; 512 for a backend that does not declare it."""
    from mfhq.models.registry import backend_class

    return int(getattr(backend_class("embedder", backend), "dim", 512))


def register_curate_commands(app: typer.Typer) -> None:
    app.command("cluster-sample")(cluster_sample)
    app.command()(split)
    app.command()(stats)
    app.command("bench-curate")(bench_curate)
