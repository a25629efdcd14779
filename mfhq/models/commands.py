"""`mfhq models list | fetch | verify`: the weight files every backend needs, and their state."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import typer

models_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Model weights: list, fetch (needs internet), verify.")
log = logging.getLogger("mfhq")
_DIR_HELP = "Folder of model weights (also MFHQ_MODELS_DIR); searched before the libraries' caches"


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
    """Download the weights (needs internet), check their hashes, record them beside the files."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from mfhq.models.catalog import fetch as run_fetch
    from mfhq.models.weights import WeightsCorrupt

    try:
        paths = run_fetch(to, backends or None)
    except (OSError, ValueError, WeightsCorrupt) as exc:
        log.error("%s", exc)
        raise typer.Exit(code=2)
    typer.echo(f"{len(paths)} files in {to}; use it with --models-dir {to}")


@models_app.command()
def verify(
    models_dir: Optional[Path] = typer.Option(None, envvar="MFHQ_MODELS_DIR", help=_DIR_HELP),
    backends: Optional[List[str]] = typer.Argument(None, help="Only these backends"),
) -> None:
    """Hash every present weight file against its published or recorded sha256; exit 1 on damage."""
    from mfhq.models.catalog import verify as run_verify

    bad = 0
    for entry, status in run_verify(models_dir, backends or None):
        typer.echo(f"{entry.backend:18s} {entry.weight.name}: {status}")
        bad += status.startswith("CORRUPT")
    if bad:
        typer.echo(f"{bad} corrupted file(s); fetch them again: mfhq models fetch --to DIR", err=True)
        raise typer.Exit(code=1)
