"""`mfhq materialize`: the command (registered by mfhq.cli); the work is in mfhq.materialize."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from mfhq.cli_options import count_option, fail, manifest_option, path_option
from mfhq.errors import MfhqError

log = logging.getLogger("mfhq")


def materialize_command(
    manifest: Path = manifest_option(None, "Manifest folder written by `mfhq cluster-sample` over runs made "
                                     "with align.crops: materialize", required=True),
    workers: int = count_option(1, "--workers", min=1, help="Worker processes, each with one parsing model load"),
    models_dir: Optional[Path] = path_option(None, "--models-dir", envvar="MFHQ_MODELS_DIR",
                                             help="Folder of model weights"),
    device: Optional[str] = typer.Option(None, "--device", metavar="DEVICE",
                                         help="cpu, cuda or cuda:N (overrides the runs' run.device)"),
) -> None:
    """Write the crops and masks of the sampled faces only; resumes where it stopped (docs/extract.md)."""
    from mfhq.checks import check_device
    from mfhq.materialize import MaterializeInterrupted, materialize

    try:
        if device is not None:
            check_device(device, "--device")
        summary = materialize(manifest, models_dir=models_dir, workers=workers, device=device)
    except MaterializeInterrupted as exc:  # Ctrl-C / SIGTERM: one line, no traceback
        log.warning(str(exc))
        raise typer.Exit(code=130)
    except MfhqError as exc:  # a user's mistake (a bad flag, folder or environment): one line
        fail(str(exc))
    if summary.failed:
        shard, reason = summary.failed[0]
        log.error("%s: %d shard(s) left pending (%s: %s); re-run the same command to retry them", manifest,
                  len(summary.failed), shard, reason)
        raise typer.Exit(code=1)
    if summary.shards_total == 0:
        log.info("%s: crops %s already; nothing to do", manifest, summary.state)
        return
    differ = f"; {summary.differ} crop(s) differ from extract's pixels" if summary.differ else ""
    log.info("%s: crops %s; %d sampled faces, %d made now in %.1f s (%d shards, %d done before)%s", manifest,
             summary.state, summary.faces, summary.written, summary.seconds, summary.shards_total,
             summary.shards_skipped, differ)
