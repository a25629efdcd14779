"""`mfhq models list | fetch | verify`: the weight files every backend needs, and their state.

Exit codes: 0 all well; 1 `verify` found a file missing or damaged; 2 a usage error (an
unknown backend name, no target folder) or a failed download.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import typer

from mfhq.errors import MfhqError

models_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Model weights: list, fetch (needs internet), verify.")
log = logging.getLogger("mfhq")
_DIR_HELP = "Folder of model weights (also MFHQ_MODELS_DIR); searched before the libraries' caches"


def _known_or_exit(backends: list[str] | None) -> None:
    from mfhq.models.catalog import UnknownBackend, check_names

    try:
        check_names(backends)
    except UnknownBackend as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2)


@models_app.command("list")
def list_models(models_dir: Optional[Path] = typer.Option(None, envvar="MFHQ_MODELS_DIR", help=_DIR_HELP)) -> None:
    """Every backend's files: task, file, size, sha256, licence, and where it is (or missing)."""
    from mfhq.models.catalog import list_rows

    for row in list_rows(models_dir):
        size = f"{row['size'] / 1e6:.1f} MB" if row["size"] is not None else "-"
        typer.echo(f"{row['backend']:18s} {row['task']:9s} {row['file']}\n"
                   f"    size {size}; sha256 {row['sha256']}\n    licence {row['licence']}\n"
                   f"    present: {row['present']}")


@models_app.command()
def fetch(
    backends: Optional[List[str]] = typer.Argument(None, help="Only these backends (default: all with a download)"),
    to: Optional[Path] = typer.Option(None, envvar="MFHQ_MODELS_DIR", help="Folder to download into"),
) -> None:
    """Download the weights (needs internet; progress, resumable), check their hashes, record them."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _known_or_exit(backends)
    from mfhq.models.catalog import fetch as run_fetch

    try:
        paths = run_fetch(to, backends or None)
    except (MfhqError, OSError) as exc:  # a usage error, a failed download, a folder it cannot write
        log.error("%s", exc)
        raise typer.Exit(code=2)
    typer.echo(f"{len(paths)} files in {to}; use it with --models-dir {to}")


@models_app.command()
def verify(
    models_dir: Optional[Path] = typer.Option(None, envvar="MFHQ_MODELS_DIR", help=_DIR_HELP),
    backends: Optional[List[str]] = typer.Argument(None, help="Only these backends"),
    pipeline: Optional[str] = typer.Option(None, help="Only the backends of this preset (a name such as "
                                           "`sample`, or a YAML file)"),
) -> None:
    """Hash every weight file against its published or recorded sha256; exit 1 if one is missing or damaged."""
    _known_or_exit(backends)
    from mfhq.models.catalog import verify as run_verify

    if pipeline is not None:
        from mfhq.config import load_pipeline
        from mfhq.models.preflight import pipeline_backends

        try:
            backends = [*(backends or []), *pipeline_backends(load_pipeline(pipeline)).values()]
        except MfhqError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2)
    bad = missing = 0
    for entry, status in run_verify(models_dir, backends or None):
        typer.echo(f"{entry.backend:18s} {entry.weight.name}: {status}")
        bad += status.startswith("CORRUPT")
        missing += status == "missing"
    if bad:
        typer.echo(f"{bad} corrupted file(s); fetch them again: mfhq models fetch --to DIR", err=True)
    if missing:
        typer.echo(f"{missing} missing file(s); see `mfhq models list` for where each comes from, "
                   f"then `mfhq models fetch --to DIR`", err=True)
    if bad or missing:
        raise typer.Exit(code=1)
