"""`omniid-eval --export-multiid DIR`: the folder checked before any model loads, then written.

DIR is taken when it can be written and is new, empty, or, with `--force`, this evaluation's own
export (its omniid-export.json names the same `--out`), which is then replaced, as `--force`
replaces `--out`'s earlier output. Without `--force` that export is refused too: `--out` alone
does not guard it, since a re-run into a deleted or moved-away `--out` finds it new. Anything else
is refused in one line before any work, even with `--force`: a folder of other files, the export
of another evaluation (its `--out` named), or `--out` itself, so a mistyped DIR never mixes two
evaluations' entries or fills someone's folder.

omniid-export.json is written before the first entry and lists the roots (one per row) it is
about to write, with "state": "running"; a re-run deletes those roots, and only those, before
writing its own. It is rewritten with "state": "complete" after the last entry (each time by an
atomic rename), so an export stopped part way is never read as complete: `--bench` refuses it
(omniid.multiid.read_bench).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from mfhq.manifest.io import atomic_write_json, first_names
from omniid.checks import check_out_dir
from omniid.errors import OutputError
from omniid.multiid import (COMPLETE, EXPORT_MARKER, EXPORT_WRITTEN_BY, RUNNING, entry_root, export_multiid,
                            export_state)

OPTION = "--export-multiid"
MARKER = EXPORT_MARKER
_marker = export_state


def check_export_dir(folder: str | Path, out: str | Path, force: bool = False) -> None:
    """OutputError naming the folder unless an export can be written there (see the module doc);
    `force`: this evaluation's earlier export may be replaced."""
    folder = Path(folder)
    check_out_dir(folder, OPTION)
    if folder.resolve() == Path(out).resolve():
        raise OutputError(f"{OPTION} {folder}: is --out itself; give the export its own folder (e.g. {folder}/multiid)")
    if not folder.is_dir():
        return
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if not names:
        return
    marker = _marker(folder)
    if marker is None:
        raise OutputError(f"{OPTION} {folder}: already holds files that are not an omniid-eval export "
                          f"({first_names(names)}); give a new or empty folder")
    if marker.get("eval_out") != str(Path(out).resolve()):
        raise OutputError(f"{OPTION} {folder}: holds the export of another evaluation (--out {marker.get('eval_out')}); "
                          f"give a new or empty folder, or run that evaluation again to replace it")
    foreign = [n for n in names if n != MARKER and n not in marker.get("roots", [])]
    if foreign:
        raise OutputError(f"{OPTION} {folder}: holds files that its export did not write ({first_names(foreign)}); "
                          f"give a new or empty folder")
    if not force:
        what = "" if marker.get("state", COMPLETE) == COMPLETE else " (interrupted: never completed)"
        raise OutputError(f"{OPTION} {folder}: holds an earlier export of this evaluation{what} (--out {out}); give --force "
                          f"to replace it (its entries are deleted first), or a new folder")


def write_export(folder: str | Path, rows: list[dict], out: Path, prompt: str) -> int:
    """This evaluation's export, in place of any earlier one of it; the number of entries."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    earlier = (_marker(folder) or {}).get("roots", [])
    roots = sorted({entry_root(r) for r in rows if r["image_path"]})
    for root in earlier:
        if root and "/" not in root and root not in (".", ".."):  # a name the marker says we wrote, nothing else
            shutil.rmtree(folder / root, ignore_errors=True)
    marker = {"written_by": EXPORT_WRITTEN_BY, "eval_out": str(Path(out).resolve()), "roots": roots}
    atomic_write_json(folder / MARKER, {**marker, "state": RUNNING})
    written = export_multiid(folder, rows, out, prompt)
    atomic_write_json(folder / MARKER, {**marker, "state": COMPLETE})  # last: every entry is whole
    return written
