"""`mfhq models list | fetch | verify`: the weight files every backend needs, and their state.

Exit codes: 0 all well; 1 `verify` found a file missing or damaged; 2 a usage error (an
unknown backend name, no target folder) or a failed download.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import typer

from mfhq.cli_options import fail, new_app, path_option
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
                   f"    size {row['size']}; sha256 {row['sha256']}\n    licence {row['licence']}\n"
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
