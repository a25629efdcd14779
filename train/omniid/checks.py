"""What every omniid command checks before any work (integer flags in their ranges, the output
folder), and a full disk told apart from other write errors.

A command that fails after hours of training or minutes of generation because `--out` is a file
or on a read-only file system loses that work, so the output folder is checked first, the way
`mfhq extract` checks its run folder. A full disk is one message naming the file system and its
free space, never a traceback: safetensors reports it as a `SafetensorError` carrying only the
text, so the text counts as well as the errno.
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from omniid.errors import DiskFull, FlagError, OutputError

NO_SPACE = ("No space left on device", "Disk quota exceeded")


def check_minimums(flags: dict[str, tuple[int | None, int]]) -> None:
    """FlagError naming the first flag below its minimum. flags: {"--steps": (value, 1)}; a value
    of None (not given: the preset decides) is not checked."""
    for option, (value, least) in flags.items():
        if value is not None and value < least:
            raise FlagError(f"{option} takes an integer >= {least}, got {value}")


def check_out_dir(out: str | Path, option: str = "--out") -> None:
    """Refuse an output folder that is a file, lies under a file, or cannot be written (a
    read-only file system, no permission), before any work is done."""
    out = Path(out)
    allowed = f"{option} takes a writable folder, existing or to be created"
    if out.exists() and not out.is_dir():
        raise OutputError(f"{option} {out}: is a file, not a folder; {allowed}")
    ancestor = out
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link: mkdir would fail on it
            raise OutputError(f"{option} {out}: {ancestor} is a broken symbolic link; {allowed}")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{option} {out}: {ancestor} is a file, so no folder can be made under it; {allowed}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        where = "the folder" if ancestor == out else f"{ancestor}, where it would be made,"
        why = "is on a read-only file system" if _read_only(ancestor) else "is not writable by this user"
        raise OutputError(f"{option} {out}: {where} {why}; {allowed}")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC / EDQUOT, also from safetensors, whose errors carry the text but not the errno."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(text in str(error) for text in NO_SPACE)


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
