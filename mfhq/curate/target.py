"""What `mfhq cluster-sample` may write its manifests into.

A re-run continues or refuses, never silently overwrites: a folder holding anything a manifest
folder does not hold (mfhq.manifest.folder.ENTRIES) is someone else's, and a manifest built from
other runs or another curate config is replaced only when asked (`--force`). The same runs and
config rebuild the folder as one unit, as before (a run that has grown since included).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from mfhq.config import CurateConfig
from mfhq.manifest.folder import CARD, SIDECAR, WRITING, WRITTEN, foreign_entries
from mfhq.manifest.io import first_names
from mfhq.manifest.schema import ManifestError
from mfhq.manifest.views import RunError

# CurateConfig options that change how fast a manifest is made, not what it holds.
SPEED_ONLY = ("workers", "chunk_faces")
_ABSENT = object()


class ForeignFolder(ManifestError):
    """--manifest names a folder holding files that are not a manifest folder's."""


class OtherManifest(ManifestError):
    """--manifest holds a manifest built from other runs or another curate config."""


def check_out_outside_runs(out: Path) -> None:
    """Manifests written into a run folder (`--manifest RUN/faces`) would be read as its shards."""
    for folder in (out.resolve(), *out.resolve().parents):
        if (folder / "run.json").is_file() or (folder / "plan.json").is_file():
            raise RunError(f"--manifest {out} is inside the run folder {folder} (made by `mfhq extract`); "
                           f"write the manifests outside it, e.g. --manifest {folder.parent / 'manifests'}")


def check_target(out: Path, run_dirs: list[Path], cfg: CurateConfig, force: bool = False) -> bool:
    """Refuse a folder of foreign files, and (unless force) a manifest of other runs or another
    config. Returns whether the folder's state from `mfhq materialize` may belong to other runs
    (they differ, or the sidecar cannot tell): the caller sets it aside before writing."""
    out = Path(out)
    if not out.is_dir():
        return False
    recorded = _recorded(out)
    if recorded is None:
        return False  # new, or made by a writer stopped before it wrote any file
    if isinstance(recorded, dict):
        runs = run_differences(recorded.get("runs"), run_dirs, out)
        differ = runs + config_differences(recorded.get("config"), cfg)
    else:
        runs, differ = ["unknown"], [f"{recorded}, so which runs and config built it is unknown"]
    if differ and not force:
        raise OtherManifest(f"--manifest {out}: holds a manifest built from other runs or another curate config "
                            f"({'; '.join(differ)}); rebuilding would replace it. Give a new --manifest folder, "
                            "or the same --run(s) and config, or --force to replace it")
    return bool(runs)


def _recorded(out: Path) -> dict | str | None:
    """The sidecar of the manifest in `out` (or of its write that stopped part-way), a line saying
    why it cannot be read, or None when the folder holds nothing of a manifest's yet."""
    foreign = foreign_entries(out)
    if foreign:
        raise ForeignFolder(f"--manifest {out}: holds files that are not a manifest folder's ({first_names(foreign)}); "
                            "cluster-sample would write among them and replace any of the same name. "
                            "Give an empty or new folder (nothing was written)")
    sidecar = next((out / name for name in (SIDECAR, WRITING) if (out / name).is_file()), None)
    if sidecar is None:
        named = sorted(name for name in (*WRITTEN, CARD) if (out / name).exists())
        if named:  # a user's README.md or train.parquet: nothing says a manifest writer made them
            raise ForeignFolder(f"--manifest {out}: holds {', '.join(named)} but no {SIDECAR}, so it is not a "
                                "manifest folder `mfhq cluster-sample` wrote, and they would be replaced. Give an "
                                "empty or new folder (nothing was written; if an older mfhq's write stopped "
                                "part-way there, delete those files)")
        return None
    try:
        recorded = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"{sidecar} cannot be read ({exc})"
    return recorded if isinstance(recorded, dict) else f"{sidecar} holds no JSON object"


def run_differences(recorded, run_dirs: list[Path], out: Path) -> list[str]:
    """The runs the sidecar names and this invocation does not, and the reverse. A recorded run
    matches where the sidecar recorded it, or relative to the folder (moved along with it)."""
    entries = recorded if isinstance(recorded, list) else []
    # one run listed twice (a manifest built from a run given twice): the same runs, to rebuild it
    left = list({str(e.get("run_dir")): e for e in entries if isinstance(e, dict)}.values())
    new = []
    for run_dir in run_dirs:
        path = str(Path(run_dir).resolve())
        match = next((e for e in left if path in _places(e, out)), None)
        if match is None:
            new.append(path)
        else:
            left.remove(match)
    lines = [f"built from run {e.get('run_dir')}, not given now" for e in left]
    return lines + [f"run {path} is not in it" for path in new]


def _places(entry: dict, out: Path) -> set[str]:
    places = {str(entry.get("run_dir"))}
    if entry.get("run_dir_relative"):
        places.add(os.path.normpath(out.resolve() / entry["run_dir_relative"]))
    return places


def config_differences(recorded, cfg: CurateConfig) -> list[str]:
    """'curate.option: A in the manifest, B now' for each option that changes what it holds."""
    before = recorded if isinstance(recorded, dict) else {}
    now = json.loads(json.dumps(dataclasses.asdict(cfg)))  # as the sidecar stores it: tuples are lists
    lines = []
    for key in sorted((set(before) | set(now)) - set(SPEED_ONLY)):
        old, new = before.get(key, _ABSENT), now.get(key, _ABSENT)
        if old != new:
            lines.append(f"curate.{key}: {_show(old)} in the manifest, {_show(new)} now")
    return lines


def _show(value) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)
