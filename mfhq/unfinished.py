"""A folder whose output is still being written: the one marker that says so, and the one line a
reader refuses it with.

A command whose output others read as a whole (`mfhq sample`'s videos, `mfhq bench
--make-clips`' clips, `mfhq stats`' report while it is moved in) writes its marker into the
folder first, by an atomic rename, and removes it last, once every file is whole and in place;
each file meanwhile is written under a "."-name and renamed when whole. A kill between leaves
the marker: files may be missing (or, in a report, be the earlier report's), and a reader
refuses the folder (`refusal`) while the command itself writes it again whole. The marker holds
the command that does so. Its name starts with "." so no reader takes it for an output file.

One process at a time writes a folder of videos, whichever command it is: `mfhq sample` (its
videos/) and `mfhq bench --make-clips` (its --root) both hold the folder's `VideosLock`, so a
sample and a render into one folder exclude each other as two of either do, and `mfhq bench`
holds it while it measures the videos, so no render rewrites them under it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mfhq.manifest.io import atomic_write_bytes, remove_stray_temps
from mfhq.manifest.lock import FolderLock


@dataclass(frozen=True)
class Output:
    marker: str     # the marker's file name
    what: str       # the output, as a refusal names it
    missing: str    # what may be wrong with it
    again: str      # the command that writes it whole, "{folder}" for its folder (where the marker is unreadable)
    up: int = 0     # the output's folder lies this many levels above the marker's (the sample: DIR above DIR/videos)


# In the sample's videos/, not beside sample.json: `extract --root DIR/videos` (the usual root)
# and a copy of that folder carry it.
SAMPLE = Output(".sample-running", "a sample that `mfhq sample`", "clips may be missing or cut short",
                "mfhq sample --out {folder}", up=1)
CLIPS = Output(".bench-clips-running", "benchmark clips that `mfhq bench --make-clips`", "clips may be missing",
               "mfhq bench --make-clips N --root {folder}")
REPORT = Output(".report-moving", "a report that `mfhq stats`", "report.html may be missing and tables, plots "
                "or strips be the earlier report's", "mfhq stats --run RUN --out {folder}")
OUTPUTS = {o.marker: o for o in (SAMPLE, CLIPS, REPORT)}
VIDEO_MARKERS = frozenset({SAMPLE.marker, CLIPS.marker})  # the outputs a folder of videos may hold


class VideosLock(FolderLock):
    """`FOLDER/lock` of a folder of videos (the folder the SAMPLE and CLIPS markers go in): held by
    the command writing the videos, or measuring them (`command`, as a refusal names it). It has no
    video suffix, so the folder source never takes it for a clip."""

    what = "videos folder"


def partial(path: Path) -> Path:
    """Where a video is written until it is whole (then renamed to `path`): a "."-name, which no
    reader takes for a clip."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def remove_leftovers(folder: Path, names: list[str]) -> None:
    """The temporary files a killed write of these files left in `folder` (`partial` videos, and
    mfhq.manifest.io's `.tmp-NAME-*`): never read, but litter. Called by their next writer, with
    the folder's lock held: no write of them is under way."""
    for name in names:
        partial(Path(folder) / name).unlink(missing_ok=True)
    remove_stray_temps(folder, names)


def start(folder: Path, output: Output, again: str, **facts) -> None:
    """The marker, before the first file of `output` is written into `folder`; `again`: the
    command that writes it whole ("{folder}" stands for the output's folder, which may move)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(folder) / output.marker, json.dumps({**facts, "again": again}).encode())


def finish(folder: Path, output: Output) -> None:
    """The marker removed: every file of the output is whole and in place."""
    (Path(folder) / output.marker).unlink(missing_ok=True)


def marker_in(folder: Path, output: Output) -> Path | None:
    path = Path(folder) / output.marker
    return path if path.is_file() else None


def written_folder(marker: Path) -> Path:
    """The folder of the output `marker` belongs to."""
    folder = marker.parent
    for _ in range(OUTPUTS[marker.name].up):
        folder = folder.parent
    return folder


def refusal(marker: Path) -> str:
    """The line a reader refuses a folder holding `marker` with: what did not finish, that it
    is not read, and what to run."""
    output, folder = OUTPUTS[marker.name], written_folder(marker)
    try:
        again = json.loads(marker.read_text()).get("again") or output.again
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        again = output.again
    again = str(again).replace("{folder}", str(folder))
    return (f"{folder}: {output.what} has not finished (stopped part way, or still being written: {marker} is "
            f"there), so {output.missing}; run `{again}` again to write it whole")
