"""Where `mfhq stats` writes its report before it is one: a folder of its own inside --out.

One `mfhq stats` at a time writes into --out: it holds the folder's lock (`OUT/lock`,
mfhq.manifest.lock) from before its first write there until its report is in, and a second one is
refused in one line naming the holder. The tables, plots, strips and page are written into
`OUT/.stats-<pid>/` and moved into --out only once all of them are there, so a run stopped part
way (killed, a damaged shard found by a query, a full disk) leaves the earlier report whole, not
its tables beside half of the new ones. The move is many renames, not one: it writes the marker
`OUT/.report-moving` first (mfhq.unfinished.REPORT), takes the earlier page away, then the earlier
report's other files, moves the new files in, the new page last, and removes the marker. A stop
in there leaves no report.html and the marker beside part of either report: not a report, and the
next `mfhq stats` says so and writes its own whole. A folder left by a killed run is removed by
the next one.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Callable

from mfhq.manifest.lock import FolderLock, holder_alive
from mfhq.unfinished import REPORT, finish, marker_in, start

log = logging.getLogger(__name__)
PREFIX = ".stats-"
PAGE = "report.html"


class ReportLock(FolderLock):
    """`OUT/lock`: the `mfhq stats` writing the report folder; another one is refused."""

    what = "report folder"
    command = "mfhq stats"


def _running(folder: Path) -> bool:
    """Whether the `mfhq stats` that named `folder` after its process id still runs (another one
    writing into this --out now: its folder is left alone); the lock's liveness rule."""
    try:
        pid = int(folder.name[len(PREFIX):])
    except ValueError:
        return False
    return pid != os.getpid() and holder_alive({"pid": pid, "host": socket.gethostname()})


def staging_folder(out: Path) -> Path:
    """A new, empty `OUT/.stats-<pid>/` (OUT made if need be), after removing those that stopped
    runs left."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    left = sorted(p for p in out.glob(f"{PREFIX}*") if p.is_dir() and not _running(p))
    for folder in left:
        shutil.rmtree(folder)
    if left:
        log.info("report: removed %s in %s, what a `mfhq stats` stopped part way had written (its report was never "
                 "moved in)", ", ".join(p.name for p in left), out)
    if marker_in(out, REPORT):
        log.warning("report: %s holds no whole report: a `mfhq stats` was stopped while moving its report in (%s is "
                    "there), so files of two reports may be there; this report replaces them all", out,
                    out / REPORT.marker)
    work = out / f"{PREFIX}{os.getpid()}"
    work.mkdir()
    return work


def move_in(work: Path, out: Path, clear_previous: Callable[[Path], None]) -> None:
    """The whole report in `work` into `out`: the marker, the earlier page removed, then the
    earlier report's other files (`clear_previous`), the new files moved in, the new page last,
    the marker removed; `work` removed. Renames within one file system: a stop in here leaves the
    marker and no report.html, and the next run writes the report again."""
    page = Path(out) / PAGE
    start(out, REPORT, REPORT.again)
    page.unlink(missing_ok=True)
    clear_previous(Path(out))
    for src in sorted(work.rglob("*")):
        if src.is_file() and src != work / PAGE:
            dest = Path(out) / src.relative_to(work)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
    os.replace(work / PAGE, page)
    finish(out, REPORT)
    shutil.rmtree(work)
