"""Every backend's weight files: list them, fetch them (on a machine with internet), verify them.

`fetch` writes into one folder (the one to pass as --models-dir), checks each download against
its published hash or name prefix, and records every file's sha256 in LOCK_NAME beside it, so
that `verify` (and every later load) catches a file damaged afterwards even where upstream
publishes no hash.
"""
from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mfhq.models.registry import all_backends
from mfhq.models.weights import (LOCK_NAME, WeightFile, WeightsCorrupt, candidates, check, file_sha256,
                                 models_dir)

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
            "size": e.path.stat().st_size if e.path else None,
            "sha256": e.weight.expected_hash(), "licence": e.weight.licence,
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
        out.append((e, "ok" if referenced else "unchecked: no published or recorded sha256 to compare with"))
    return out


def _recorded(path: Path) -> bool:
    from mfhq.models.weights import recorded_hash

    return recorded_hash(path) is not None


def fetch(to: str | Path | None = None, backends: list[str] | None = None,
          files: list[WeightFile] | None = None) -> list[Path]:
    """Download every downloadable file (or `files`) into `to`, check it, record its hash."""
    target = models_dir(to)
    if target is None:
        raise ValueError("mfhq models fetch: give --to DIR (or set MFHQ_MODELS_DIR)")
    target.mkdir(parents=True, exist_ok=True)
    if files is None:
        files = list({e.weight.name: e.weight for e in entries(None, backends) if e.weight.url}.values())
    archives: dict[str, bytes] = {}
    written = []
    for wf in files:
        dest = target / wf.name
        if dest.is_file():
            check(wf, dest)
            log.info("%s: already there, hash checked", dest)
        else:
            data = _download(wf, archives)
            _store(wf, data, dest)
            log.info("%s: fetched from %s", dest, wf.url)
        _record(target, dest)
        written.append(dest)
    return written


def _download(wf: WeightFile, archives: dict[str, bytes]) -> bytes:
    if wf.url is None:
        raise ValueError(f"{wf.name}: no download address; {wf.fetch}")
    if wf.url not in archives:
        log.info("downloading %s", wf.url)
        with urllib.request.urlopen(wf.url) as response:  # noqa: S310 (fixed https addresses)
            archives[wf.url] = response.read()
    data = archives[wf.url]
    if wf.archive_member is None:
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        # Members may sit in a top folder (buffalo_l/det_10g.onnx) or at the root.
        names = [n for n in archive.namelist() if n == wf.archive_member or n.endswith("/" + wf.archive_member)]
        if not names:
            raise WeightsCorrupt(f"{wf.url}: the archive has no {wf.archive_member}")
        return archive.read(names[0])


def _store(wf: WeightFile, data: bytes, dest: Path) -> None:
    handle, temp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        from mfhq.manifest.io import follow_umask

        follow_umask(temp)  # mkstemp's 0600 would make shared weights unreadable to others
        check(wf, Path(temp))  # against the published hash or name prefix, before it takes the name
        shutil.move(temp, dest)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _record(folder: Path, path: Path) -> None:
    lock = folder / LOCK_NAME
    lines = [line for line in (lock.read_text().splitlines() if lock.is_file() else [])
             if not line.endswith("  " + path.name)]
    lines.append(f"{file_sha256(path)}  {path.name}")
    lock.write_text("\n".join(sorted(lines, key=lambda s: s.split("  ", 1)[-1])) + "\n")
