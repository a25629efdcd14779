"""The `--out` folder of omniid-eval and omniid-generate: whose it is, replaced only when asked,
and complete only when its marker says so.

A command writes its marker (`omniid-eval.json` / `omniid-generate.json`, state "running") before
its first output and rewrites it (state "complete") after its last, each by an atomic rename, so
an interrupted run is never read as complete. A folder that is not new or empty is refused in
one line before any model loads: a re-run never overwrites silently. `--force` replaces the
command's own earlier output, complete or interrupted: the files it writes (`Owner.owns`) are
deleted first, so nothing of the earlier run remains beside the new one. A folder holding files
the command does not write, or another command's output, is refused even with `--force`, and
nothing in it is deleted. Names starting with "." (the atomic writes' temporary files) are not
counted.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mfhq.manifest.io import atomic_write_bytes, atomic_write_json, first_names
from omniid.checks import check_out_dir
from omniid.errors import OutputError

RUNNING, COMPLETE = "running", "complete"
EVAL_FILES = frozenset({"results.parquet", "table.csv", "table.md", "curves.csv", "curve_inputs.png",
                        "curve_pose_gap.png", "report.html", "report", "swap.parquet", "swap.csv", "sheets",
                        "images", "settings.json", "timing.json"})


@dataclass(frozen=True)
class Owner:
    command: str
    marker: str                        # its marker file, written first and last
    owns: Callable[[str], bool]        # the top-level names the command writes


EVAL = Owner("omniid-eval", "omniid-eval.json", EVAL_FILES.__contains__)
GENERATE = Owner("omniid-generate", "omniid-generate.json",
                 lambda name: name == "settings.json" or re.fullmatch(r"seed-?\d+\.png", name) is not None)


def kept_export(out: str | Path, export: str | Path | None) -> frozenset[str]:
    """The name of an --export-multiid folder made directly inside --out: not omniid-eval's
    output, and replaced by the export's own rule (omniid.eval_export), so kept here."""
    if export is None:
        return frozenset()
    export = Path(export).resolve()
    return frozenset({export.name}) if export.parent == Path(out).resolve() else frozenset()


def state_of(out: str | Path, owner: Owner) -> str | None:
    """"complete", "running" (interrupted, or still writing) or None (not this command's output)."""
    try:
        marker = json.loads((Path(out) / owner.marker).read_text())
    except (OSError, ValueError):
        return None
    return marker.get("state") if isinstance(marker, dict) and marker.get("written_by") == owner.command else None


def check_out(out: str | Path, owner: Owner, force: bool, keep: frozenset[str] = frozenset()) -> None:
    """OutputError naming the folder unless `owner` may write there (see the module doc); `keep`:
    names that are not ours but may stay (an --export-multiid folder inside --out)."""
    out = Path(out)
    check_out_dir(out)
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []
    names = [n for n in names if n not in keep]
    if not names:
        return
    state = state_of(out, owner)
    if state is None:
        raise OutputError(f"--out {out}: already holds files that are not an {owner.command} output "
                          f"({first_names(names)}); give a new or empty folder")
    foreign = [n for n in names if n != owner.marker and not owner.owns(n)]
    if foreign:
        raise OutputError(f"--out {out}: holds files that {owner.command} did not write ({first_names(foreign)}) beside "
                          f"its output; give a new or empty folder")
    if not force:
        what = "output" if state == COMPLETE else "interrupted output (never completed)"
        raise OutputError(f"--out {out}: holds an earlier {owner.command} {what}; give --force to replace it "
                          f"(its files are deleted first), or a new folder")


def claim_out(out: str | Path, owner: Owner, force: bool, keep: frozenset[str] = frozenset()) -> None:
    """Checked again (the folder may have changed since), the command's earlier output deleted
    with `force`, then the marker written: from here on the folder is this run's, not complete."""
    out = Path(out)
    check_out(out, owner, force, keep)
    if out.is_dir():
        for path in out.iterdir():
            if path.name not in keep and owner.owns(path.name):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / owner.marker, {"written_by": owner.command, "state": RUNNING})


def write_json(path: Path, content) -> None:
    """A JSON output (settings.json...) in its own key order, by an atomic rename: never half a file.
    Strict JSON: a number not measured (NaN, e.g. a swap margin without a face) is written null,
    as other languages' parsers and `jq` refuse Python's bare NaN."""
    text = json.dumps(_finite(content), indent=2, default=str, allow_nan=False)
    atomic_write_bytes(Path(path), text.encode())


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def complete_out(out: str | Path, owner: Owner) -> None:
    """Written after every other file of the run: the folder is complete."""
    atomic_write_json(Path(out) / owner.marker, {"written_by": owner.command, "state": COMPLETE})
