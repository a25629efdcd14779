"""Every backend's weight files: list them, fetch them (on a machine with internet), verify them.

`fetch` writes into one folder (the one to pass as --models-dir), checks each download against
its published hash or name prefix, and records every file's sha256 in LOCK_NAME beside it, so
that `verify` (and every later load) catches a file damaged afterwards even where upstream
publishes no hash.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mfhq.errors import MfhqError
from mfhq.manifest.io import atomic_write_bytes, sha256_of
from mfhq.models.registry import all_backends
from mfhq.models.weights import (LOCK_NAME, MODELS_DIR_ENV, WeightFile, WeightsCorrupt, candidates, check,
                                 library_message, models_dir, size_text)

log = logging.getLogger(__name__)


@dataclass
class Entry:
    backend: str
    task: str
    weight: WeightFile
    path: Path | None  # where it resolves now, or None


def entries(explicit_dir: str | Path | None = None, backends: list[str] | None = None) -> list[Entry]:
    out = []
    for cls in all_backends():
        if backends and cls.name not in backends:
            continue
        for wf in cls.weight_files:
            path = next((c for c in candidates(wf, explicit_dir) if c.is_file()), None)
            out.append(Entry(cls.name, cls.task, wf, path))
    return out


def list_rows(explicit_dir: str | Path | None = None) -> list[dict]:
    rows = []
    for e in entries(explicit_dir):
        rows.append({
            "backend": e.backend, "task": e.task, "file": e.weight.name,
            "size": f"{e.path.stat().st_size / 1e6:.1f} MB" if e.path else size_text(e.weight),
            "sha256": e.weight.expected_hash(), "licence": e.weight.licence,
            "source": e.weight.origin + (f", from {e.weight.url}" if e.weight.url else f"; {e.weight.fetch}"),
            "present": str(e.path) if e.path else "missing",
        })
    return rows


def verify(explicit_dir: str | Path | None = None, backends: list[str] | None = None) -> list[tuple[Entry, str]]:
    """(entry, status) per file: ok, missing, unchecked (no reference hash), or the corruption."""
    out, seen = [], set()
    for e in entries(explicit_dir, backends):
        if e.path is None:
            out.append((e, "missing"))
            continue
        if e.path in seen:
            continue
        seen.add(e.path)
        try:
            check(e.weight, e.path)
        except WeightsCorrupt as exc:
            out.append((e, f"CORRUPT: {exc}"))
            continue
        referenced = e.weight.sha256 or e.weight.sha256_prefix or _recorded(e.path)
        out.append((e, "ok" if referenced else _unchecked(e.weight, e.path)))
    return out


def _unchecked(wf: WeightFile, path: Path) -> str:
    """A file with no hash to compare with: a torch checkpoint is read (seconds; it catches the
    hand-copied damaged file), the rest say plainly that they are not verified."""
    if path.suffix != ".pth":
        return ("unchecked: no published or recorded sha256, so not verified (a damaged file is "
                "reported when its backend loads it; files from `mfhq models fetch` get one)")
    import torch

    try:  # weights_only: reading a file never runs code it carries
        torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:
        return f"CORRUPT: {path}: torch cannot read it ({library_message(exc)}); fetch it again: {wf.fetch}"
    return "readable, not hash-checked: no published or recorded sha256 (`mfhq models fetch` records one)"


def where_it_goes(wf: WeightFile, explicit_dir: str | Path | None = None) -> str:
    """Where a missing file must be put to be found (the first place searched, and the others)."""
    base = models_dir(explicit_dir)
    first = f"{base / wf.name}" if base else f"DIR/{wf.name} with --models-dir DIR (or {MODELS_DIR_ENV}=DIR)"
    others = [str(c) for c in candidates(wf, None)]
    return first + (f"; or where the library looks: {', '.join(others)}" if others else "")


def not_downloadable(backends: list[str] | None) -> list[tuple[str, str]]:
    """(backend, how to get its files) for the named backends whose files come with a package."""
    out = []
    for cls in all_backends():
        if backends and cls.name in backends and cls.weight_files and not any(wf.url for wf in cls.weight_files):
            out.append((cls.name, "; ".join(dict.fromkeys(wf.fetch for wf in cls.weight_files))))
    return out


def _recorded(path: Path) -> bool:
    from mfhq.models.weights import recorded_hash

    return recorded_hash(path) is not None


class UnknownBackend(MfhqError, ValueError):
    """`mfhq models fetch|verify NAME` with a NAME no backend has."""


def check_names(backends: list[str] | None) -> None:
    """Raise UnknownBackend listing every known name if any of `backends` is not one."""
    known = sorted({cls.name for cls in all_backends()})
    unknown = [name for name in backends or () if name not in known]
    if unknown:
        raise UnknownBackend(f"unknown backend(s) {', '.join(unknown)}; backends: {', '.join(known)}")


class DownloadError(MfhqError, OSError):
    """A download that failed; the message names the file, the address and what to do."""


def fetch(to: str | Path | None = None, backends: list[str] | None = None,
          files: list[WeightFile] | None = None, progress: bool = True) -> list[Path]:
    """Download every downloadable file (or `files`) into `to`, check it, record its hash.

    Downloads go through huggingface_hub's HTTP client (progress bar, retries, resume): a
    partial download is kept under `to/.partial/` and the next fetch continues it.
    """
    target = models_dir(to)
    if target is None:
        raise MfhqError("mfhq models fetch: give --to DIR (or set MFHQ_MODELS_DIR)")
    check_names(backends)
    if not progress:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if files is None:
        files = list({e.weight.name: e.weight for e in entries(None, backends) if e.weight.url}.values())
    if files:  # backends whose files come with a package make no folder
        target.mkdir(parents=True, exist_ok=True)
    written, archives = [], set()
    for wf in files:
        dest = target / wf.name
        if dest.is_file():
            check(wf, dest)
            log.info("%s: already there, hash checked", dest)
        else:
            source = _download(wf, target / ".partial")
            if wf.archive_member is not None:
                archives.add(source)
            _store(wf, source, dest)
            log.info("%s: fetched from %s", dest, wf.url)
        _record(target, dest)
        written.append(dest)
    for archive in archives:  # every member needed is out: the archive itself is not kept
        archive.unlink(missing_ok=True)
    return written


def _download(wf: WeightFile, folder: Path) -> Path:
    """The downloaded file (or the archive holding it), complete, under `folder`."""
    if wf.url is None:
        raise DownloadError(f"{wf.name}: no download address; {wf.fetch}")
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / (wf.url.rstrip("/").rsplit("/", 1)[-1] or wf.name)
    if done.is_file():  # fetched earlier in this run (one archive, several members)
        return done
    part = done.with_name(done.name + ".part")
    if wf.url.startswith("file://"):  # a local mirror: nothing to resume, but a copy cut short
        # must not take the name that says "complete" (the next fetch would store it)
        shutil.copyfile(urllib.request.url2pathname(wf.url[len("file://"):]), part)
        part.replace(done)
        return done
    try:
        from huggingface_hub.file_download import http_get
    except ImportError as exc:
        raise DownloadError(f"{wf.name}: downloads need huggingface_hub (pip install huggingface-hub)") from exc
    resume = part.stat().st_size if part.is_file() else 0
    if resume:
        log.info("%s: resuming %s at %.1f MB", wf.name, wf.url, resume / 1e6)
    try:
        with open(part, "r+b" if resume else "wb") as handle:
            handle.seek(resume)
            http_get(wf.url, handle, resume_size=resume, displayed_filename=done.name)
            handle.truncate()
    except Exception as exc:  # network, HTTP status, disk: all reach the user with the file's name
        raise DownloadError(f"{wf.name}: download from {wf.url} failed: {exc}. The partial file {part} is kept; "
                            f"run `mfhq models fetch` again to resume") from exc
    part.replace(done)
    return done


def _store(wf: WeightFile, source: Path, dest: Path) -> None:
    handle, temp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            if wf.archive_member is None:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out)
            else:
                out.write(_member(wf, source))
        from mfhq.manifest.io import follow_umask

        follow_umask(temp)  # mkstemp's 0600 would make shared weights unreadable to others
        try:
            check(wf, Path(temp))  # against the published hash or name prefix, before it takes the name
        except WeightsCorrupt:
            source.unlink(missing_ok=True)  # so that the next fetch downloads it again
            raise
        shutil.move(temp, dest)
        if wf.archive_member is None:
            source.unlink(missing_ok=True)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _member(wf: WeightFile, archive_path: Path) -> bytes:
    try:
        with zipfile.ZipFile(archive_path) as archive:
            # Members may sit in a top folder (buffalo_l/det_10g.onnx) or at the root.
            names = [n for n in archive.namelist() if n == wf.archive_member or n.endswith("/" + wf.archive_member)]
            if not names:
                raise WeightsCorrupt(f"{wf.name}: the archive {wf.url} has no {wf.archive_member}")
            return archive.read(names[0])
    except zipfile.BadZipFile as exc:
        archive_path.unlink(missing_ok=True)  # a damaged archive must not be reused
        raise WeightsCorrupt(f"{wf.name}: {archive_path} from {wf.url} is not a readable zip ({exc}); "
                             f"fetch again") from exc


def _record(folder: Path, path: Path) -> None:
    lock = folder / LOCK_NAME
    lines = [line for line in (lock.read_text().splitlines() if lock.is_file() else [])
             if not line.endswith("  " + path.name)]
    lines.append(f"{sha256_of(path)}  {path.name}")
    text = "\n".join(sorted(lines, key=lambda s: s.split("  ", 1)[-1])) + "\n"
    atomic_write_bytes(lock, text.encode())  # a killed fetch never leaves the record of every file cut short
