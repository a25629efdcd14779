"""`mfhq sample --out DIR`: which folders the sample may be written into, its locks and its sample.json.

One process at a time writes DIR: the sample holds DIR's lock (`DIR/lock`, mfhq.manifest.lock, the
name every mfhq writer locks its folder with) and that of DIR/videos (`DIR/videos/lock`,
mfhq.unfinished.VideosLock, which `mfhq bench --make-clips` holds on the folder it renders into
and `mfhq bench` on the folder it measures) from before it looks at DIR until the marker is
removed. So a second sample into DIR, a render into DIR or DIR/videos and a bench measuring
either are refused in one line naming the holder, and never remove the sample's marker, write
among its clips or read them half written. A lock has no video suffix, so no folder source takes
it for a clip. A lock left by a killed sample is taken over, with a warning (mfhq.manifest.lock's
rule).
The sample writes its marker DIR/videos/.sample-running first (mfhq.unfinished.SAMPLE), removes
the temporary files a killed sample left, then writes DIR/videos/<clip>.mp4 (each under a
"."-name, renamed when whole), then DIR/sample.json (by an atomic rename), and last removes the
marker. While the marker is there the sample is not whole (a kill leaves it): the folder source
refuses to read it, and the next `mfhq sample` writes every file again.
DIR is taken when it is new, empty, or a sample of the same --seed (written again: the same seed
gives the same files, byte for byte). Refused in one line before anything is
written: a folder holding anything else (another command's output: a run or manifest folder, or
files of yours), since the sample would be written among them, and a sample of another --seed,
whose videos would be replaced under any run extracted from them. Names starting with "." (the
marker, the temporary files of an interrupted write) and the sample's own locks are not counted.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mfhq.manifest.io import OutputError, atomic_write_bytes, first_names
from mfhq.manifest.lock import LOCK, FolderLock
from mfhq.unfinished import SAMPLE, VideosLock, finish, remove_leftovers, start

INDEX = "sample.json"
GENERATOR = "mfhq.sample"


class SampleLock(FolderLock):
    """`DIR/lock`: the `mfhq sample` writing DIR; another one is refused."""

    what = "sample folder"
    command = "mfhq sample"


@contextmanager
def writing_sample(out: Path, seed: int, videos: list[str]) -> Iterator[None]:
    """DIR's locks held, DIR checked (`check_sample_out`), the marker written and the leftovers
    of a killed sample removed: the sample of `seed` (`videos`: file names) may be written, until
    `write_index`. OutputError where --out or its videos/ is a file; FolderInUse where another
    process holds either lock."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: is a file; give the folder to write the sample into")
    out.mkdir(parents=True, exist_ok=True)  # the lock lives in it
    with SampleLock(out):
        if not (out / "videos").is_dir():  # checked before videos/ is made: a refused folder is left as it was
            check_sample_out(out, seed, videos)
            (out / "videos").mkdir(exist_ok=True)
        with VideosLock(out / "videos", command="mfhq sample"):  # a writer of videos/ alone is named
            check_sample_out(out, seed, videos)
            mark_running(out, seed)  # first: until write_index removes it, no reader takes the folder as whole
            remove_leftovers(out / "videos", [*videos, SAMPLE.marker])
            remove_leftovers(out, [INDEX])
            yield


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def check_sample_out(out: Path, seed: int, videos: list[str]) -> None:
    """OutputError naming `out` unless the sample of `seed` (its `videos`: file names) may be
    written there (see the module doc). Called with DIR's locks held (`writing_sample`, which
    refuses a file and makes DIR): the locks are this sample's."""
    out = Path(out)
    foreign = [n for n in _names(out) if n not in ("videos", INDEX, LOCK) or n == "videos" and (out / n).is_file()]
    foreign += [f"videos/{n}" for n in _names(out / "videos") if n not in (*videos, LOCK)]
    if foreign:
        raise OutputError(f"--out {out}: holds files that are not the sample's ({first_names(foreign)}); the sample "
                          "would be written among them. Give a new or empty folder (nothing was written)")
    if not (out / INDEX).exists():
        return  # new, empty, or a sample stopped before its sample.json: written (again) whole
    try:
        index = json.loads((out / INDEX).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise OutputError(f"--out {out}: its {INDEX} cannot be read ({error}); give a new or empty folder") from None
    if not isinstance(index, dict) or index.get("generator") != GENERATOR:
        raise OutputError(f"--out {out}: its {INDEX} was not written by `mfhq sample`; give a new or empty folder")
    if index.get("seed") != seed:
        raise OutputError(f"--out {out}: holds the sample of --seed {index.get('seed')}; --seed {seed} would replace "
                          f"its videos (and a run extracted from them would no longer describe them). Give --seed "
                          f"{index.get('seed')} to write it again, or a new folder")


def mark_running(out: Path, seed: int) -> None:
    """The marker, before any video is written: from here until `write_index` the folder is a
    sample being written, and no reader may take it for a whole one."""
    again = "mfhq sample --out {folder}" + ("" if seed == 0 else f" --seed {seed}")
    start(Path(out) / "videos", SAMPLE, again, generator=GENERATOR, seed=seed)


def write_index(out: Path, sample: dict) -> None:
    """sample.json by an atomic rename, then the marker removed: the sample is complete (a kill
    between the two leaves the marker, and the sample is written again)."""
    atomic_write_bytes(Path(out) / INDEX, json.dumps(sample, indent=1).encode())
    finish(Path(out) / "videos", SAMPLE)
