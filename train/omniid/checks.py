"""What every omniid command checks before any work (integer flags in their ranges, the output
folder), and a full disk told apart from other write errors.

A command that fails after hours of training or minutes of generation because `--out` is a file
or on a read-only file system loses that work, so the output folder is checked first, the way
`mfhq extract` checks its run folder. A full disk is one message naming the file system and its
free space, never a traceback (what a full disk is, safetensors' errors included, is
`mfhq.manifest.io.is_disk_full`'s to say).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from mfhq.manifest.io import OutputError as MfhqOutputError, check_output_dir, placed
from mfhq.manifest.schema import SIDECAR
from omniid.errors import DiskFull, FlagError, OutputError


def check_minimums(flags: dict[str, tuple[int | None, int]]) -> None:
    """FlagError naming the first flag below its minimum. flags: {"--steps": (value, 1)}; a value
    of None (not given: the preset decides) is not checked."""
    for option, (value, least) in flags.items():
        if value is not None and value < least:
            raise FlagError(f"{option} takes an integer >= {least}, got {value}")


def check_device(device: str, option: str = "--device") -> None:
    """FlagError for a device torch cannot use here, before any model loads (a CUDA name on a
    machine without a GPU ended in torch's traceback once the checkpoint was read). Torch's own
    view, not mfhq's (`mfhq.checks`, which counts onnxruntime's GPU too): every omniid model is torch's."""
    if device == "cpu":
        return
    named = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not named:
        raise FlagError(f"{option} {device!r}: not a device; use cpu, cuda or cuda:N")
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not count:
        build = "a CPU build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise FlagError(f"{option} {device!r}: torch ({torch.__version__}, {build}) sees no CUDA GPU on this "
                        "machine; run with --device cpu")
    if int(named.group(1) or 0) >= count:
        raise FlagError(f"{option} {device!r}: this machine has {count} CUDA device(s), numbered 0..{count - 1}")


def check_out_dir(out: str | Path, option: str = "--out") -> None:
    """Refuse an output folder that is a file, lies under a file, or cannot be written (a
    read-only file system, no permission), before any work is done: mfhq's check
    (`mfhq.manifest.io.check_output_dir`, the one owner), in omniid's words and error type."""
    try:
        check_output_dir(out, option, hint=f"{option} takes a writable folder, existing or to be created")
    except MfhqOutputError as error:
        raise OutputError(str(error)) from None


def check_out_outside_manifests(out: str | Path, manifests: dict[str, str | Path | None],
                                what: str = "the run's checkpoints and log", example: str = "--out runs/NAME") -> None:
    """OutputError when --out is, or lies inside, the folder of a manifest the command reads
    (manifests: {option: a manifest file or folder}): `what` it writes would sit among the
    manifest's files, which `mfhq cluster-sample` then refuses to rebuild. A bare Parquet file's
    folder (no manifest.json) is anyone's folder, not a manifest folder."""
    for option, manifest in manifests.items():
        if manifest is None:
            continue
        folder = Path(manifest) if Path(manifest).is_dir() else Path(manifest).parent
        where = placed(out, folder) if (folder / SIDECAR).is_file() else None
        if where:
            raise OutputError(f"{example.split()[0]} {out}: {where} the manifest folder {folder} ({option}); {what} "
                              f"would sit among the manifest's files. Give it a folder of its own, e.g. {example}")


def mount_point(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def disk_full(folder: str | Path, error: BaseException, what_now: str) -> DiskFull:
    """The one message of a full disk under `folder`: the file, the file system and its free
    space, then `what_now` (what was kept, how to go on)."""
    folder = Path(folder)
    detail = f"{error.filename}: {error.strerror}" if isinstance(error, OSError) and error.filename else str(error)
    try:
        free = f"{shutil.disk_usage(mount_point(folder)).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return DiskFull(f"the disk is full ({detail}); the file system mounted at {mount_point(folder)}, which holds "
                    f"{folder}, has {free}. {what_now}")
