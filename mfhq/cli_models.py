"""`mfhq models list | fetch | verify`: the weight files every backend needs, and their state;
`mfhq bench-models`: what each of those models costs per face or frame (mfhq/bench_models/).

Exit codes: 0 all well; 1 `verify` found a file missing or damaged; 2 a usage error (an
unknown backend name, no target folder) or a failed download.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import typer

from mfhq.cli_options import count_option, fail, new_app, path_option, pipeline_option
from mfhq.errors import MfhqError

models_app = new_app("Model weights: list, fetch (needs internet), verify.")
log = logging.getLogger("mfhq")
_DIR_HELP = "Folder of model weights (also MFHQ_MODELS_DIR); searched before the libraries' caches"
_PIPELINE_HELP = "The backends a preset needs: sample, paper, or a YAML file"


def _backends(backends: list[str] | None, pipeline: str | None) -> list[str] | None:
    """The names given, plus the preset's; an unknown name or preset exits 2."""
    from mfhq.models.catalog import check_names

    try:
        check_names(backends)
        if pipeline is None:
            return backends or None
        from mfhq.config import load_pipeline
        from mfhq.models.preflight import pipeline_backends

        return list(dict.fromkeys([*(backends or []), *pipeline_backends(load_pipeline(pipeline)).values()]))
    except MfhqError as exc:
        fail(str(exc))


@models_app.command("list")
def list_models(models_dir: Optional[Path] = path_option(None, "--models-dir", envvar="MFHQ_MODELS_DIR",
                                                         help=_DIR_HELP)) -> None:
    """Every backend's files: task, file, size, sha256, licence, source, and where it is (or missing)."""
    from mfhq.models.catalog import list_rows

    for row in list_rows(models_dir):
        typer.echo(f"{row['backend']:18s} {row['task']:9s} {row['file']}\n"
                   f"    {row['size']}; sha256 {row['sha256']}\n    licence {row['licence']}\n"
                   f"    source {row['source']}\n    present: {row['present']}")


@models_app.command()
def fetch(
    backends: Optional[List[str]] = typer.Argument(None, metavar="BACKEND", hidden=True),
    to: Optional[Path] = path_option(None, "--to", envvar="MFHQ_MODELS_DIR", help="Folder to download into"),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", metavar="NAME|PATH", help=_PIPELINE_HELP),
) -> None:
    """Download the weights (needs internet; progress, resumable), check their hashes, record them.

    BACKEND...: only these backends (default: every backend with a download, or --pipeline's)."""
    from mfhq.models.catalog import fetch as run_fetch, not_downloadable

    names = _backends(backends, pipeline)
    try:
        paths = run_fetch(to, names, progress=log.isEnabledFor(logging.INFO))
    except (MfhqError, OSError) as exc:  # a usage error, a failed download, a folder it cannot write
        fail(str(exc))
    for backend, how in not_downloadable(names):
        typer.echo(f"{backend}: its files ship in a pip package, nothing to download ({how})")
    if paths:
        typer.echo(f"{len(paths)} file(s) in {to}; use them with --models-dir {to}")


@models_app.command()
def verify(
    models_dir: Optional[Path] = path_option(None, "--models-dir", envvar="MFHQ_MODELS_DIR", help=_DIR_HELP),
    backends: Optional[List[str]] = typer.Argument(None, metavar="BACKEND", hidden=True),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", metavar="NAME|PATH", help=_PIPELINE_HELP),
) -> None:
    """Hash every weight file against its published or recorded sha256; list each missing or damaged
    one with its source, size and where it must go; exit 1 if there is one.

    BACKEND...: only these backends (default: all, or --pipeline's)."""
    from mfhq.models.catalog import verify as run_verify, where_it_goes
    from mfhq.models.weights import size_text

    names = _backends(backends, pipeline)
    bad, missing, fetchable = 0, 0, []
    for entry, status in run_verify(models_dir, names):
        typer.echo(f"{entry.backend:18s} {entry.weight.name}: {status}")
        if status == "missing" or status.startswith("CORRUPT"):
            bad += status != "missing"
            missing += status == "missing"
            wf = entry.weight
            typer.echo(f"    source: {wf.origin}{f', from {wf.url}' if wf.url else ''}; {size_text(wf)}\n"
                       f"    goes to: {where_it_goes(wf, models_dir)}"
                       + ("" if wf.url else f"\n    get it: {wf.fetch}"))
            if wf.url and entry.backend not in fetchable:
                fetchable.append(entry.backend)
    if bad:
        typer.echo(f"{bad} corrupted file(s)", err=True)
    if missing:
        typer.echo(f"{missing} missing file(s)", err=True)
    if fetchable:
        what = f"--pipeline {pipeline}" if pipeline else " ".join(fetchable)
        typer.echo(f"fetch them on a machine with internet: mfhq models fetch {what} --to DIR", err=True)
    if bad or missing:
        raise typer.Exit(code=1)


def bench_models_command(
    pipeline: Optional[str] = pipeline_option(),
    device: str = typer.Option("cpu", metavar="DEVICE", help="cpu, cuda or cuda:N"),
    batch_sizes: str = typer.Option("1,8,32", "--batch-sizes", metavar="LIST",
                                    help="Frames (detector) or faces (the rest) per call, comma-separated"),
    repeats: int = count_option(5, "--repeats", min=1, help="Timed calls per batch size (the median is kept)"),
    warmup: int = count_option(2, "--warmup", min=0, help="Untimed calls first, per batch size"),
    threads: int = count_option(1, "--threads", min=1, help="torch and OpenCV threads (1: as each extract "
                                "worker runs)"),
    models_dir: Optional[Path] = path_option(None, "--models-dir", envvar="MFHQ_MODELS_DIR", help=_DIR_HELP),
    out: Optional[Path] = path_option(None, "--out", help="Also write the results here as JSON"),
) -> None:
    """Each stage's model alone, on inputs of its real shape: ms per frame or face, items/s, GPU memory.

    Torch models whose weights are missing run with their real architecture and random weights
    (labelled); an ONNX model whose graph is missing gets a row naming the file."""
    import json

    from mfhq.bench_models import bench_models, format_table
    from mfhq.checks import check_device
    from mfhq.config import load_pipeline

    try:
        # a size given twice is measured once: a second timing of the same calls adds nothing but time
        sizes = list(dict.fromkeys(int(size) for size in batch_sizes.split(",") if size.strip()))
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        fail(f"--batch-sizes {batch_sizes!r}: give positive whole numbers separated by commas, e.g. 1,8,32")
    try:
        check_device(device, "--device")
        _check_out_apart(out, pipeline)
        result = bench_models(load_pipeline(pipeline), device, sizes, repeats, warmup, threads, models_dir)
    except MfhqError as exc:
        fail(str(exc))
    for line in format_table(result):
        typer.echo(line)
    if out is not None:
        from mfhq.manifest.io import atomic_write_bytes

        # by a rename: a killed write never leaves half a JSON in place of an earlier result
        atomic_write_bytes(out, (json.dumps(result, indent=1) + "\n").encode())
        log.info("wrote %s", out)


def _check_out_apart(out: Optional[Path], pipeline: Optional[str]) -> None:
    """--out must not be the preset file it reads: the JSON would replace the YAML (a packaged
    preset's included), found only when the next command fails to read it. Nor any other file
    but an earlier result of bench-models (another command's output, a file of yours)."""
    from mfhq.presets import DEFAULT_PRESET, packaged

    if out is None:
        return
    if out.is_dir():  # found before the benchmark, not as a traceback after it
        fail(f"--out {out}: is a folder; --out takes the JSON file to write, e.g. {out / 'bench-models.json'}")
    given = Path(pipeline or DEFAULT_PRESET)  # the file load_pipeline reads, found as it finds it (quietly)
    preset = given if given.is_file() else packaged().get(str(pipeline or DEFAULT_PRESET))
    if preset is not None and out.resolve() == preset.resolve():
        fail(f"--out {out}: is the --pipeline file {preset}, which the results would overwrite; give --out a file "
             "of its own, e.g. bench-models.json")
    if out.exists() and not _is_result(out):
        fail(f"--out {out}: already holds a file that is not an `mfhq bench-models` result, which the results would "
             "replace; give --out a new file (or an earlier result of bench-models, which is replaced)")


def _is_result(path: Path) -> bool:
    """An earlier result of bench-models: a JSON object with its keys."""
    import json

    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(content, dict) and {"pipeline", "device", "batch_sizes", "rows"} <= content.keys()
