"""Where model files come from, and the hashes that prove which ones were used.

Resolution order for every file: `--models-dir` (or the MFHQ_MODELS_DIR environment variable),
then the place the owning library keeps it (its package folder or cache). A missing file is
never replaced by another model: `WeightsMissing` lists every missing file, its hash, where it
comes from, and how to fetch it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MODELS_DIR_ENV = "MFHQ_MODELS_DIR"


@dataclass(frozen=True)
class WeightFile:
    name: str                 # file name, also its name under the models dir
    package: str | None       # the installed package that ships it, if any
    package_path: str | None  # path inside that package
    sha256: str | None        # expected hash; None where upstream publishes none
    origin: str               # where the file comes from (for the error message)
    fetch: str                # the command that gets it
    licence: str


class WeightsMissing(FileNotFoundError):
    def __init__(self, missing: list[WeightFile], searched: list[Path]):
        lines = ["model weights not found:"]
        for wf in missing:
            lines.append(
                f"  - {wf.name} (sha256 {wf.sha256 or 'unpublished'}; licence {wf.licence})\n"
                f"      from: {wf.origin}\n      fetch: {wf.fetch}"
            )
        lines.append("searched: " + ", ".join(str(p) for p in searched))
        lines.append(f"put the files in a folder and pass --models-dir DIR (or set {MODELS_DIR_ENV}).")
        super().__init__("\n".join(lines))
        self.missing = missing


class WeightsCorrupt(RuntimeError):
    """A weight file whose hash is not the published one."""


def models_dir(explicit: str | Path | None = None) -> Path | None:
    value = explicit or os.environ.get(MODELS_DIR_ENV)
    return Path(value) if value else None


def _package_dir(package: str) -> Path | None:
    # find_spec without importing: some model packages do work (or fail) at import time.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve(files: list[WeightFile], explicit_dir: str | Path | None = None) -> dict[str, Path]:
    """Map each file name to a path, or raise WeightsMissing naming all that are absent."""
    found, missing, searched = {}, [], []
    base = models_dir(explicit_dir)
    for wf in files:
        candidates = []
        if base is not None:
            candidates.append(base / wf.name)
        if wf.package:
            pkg = _package_dir(wf.package)
            if pkg is not None and wf.package_path:
                candidates.append(pkg / wf.package_path)
        searched.extend(c.parent for c in candidates)
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            missing.append(wf)
            continue
        if wf.sha256 and file_sha256(hit) != wf.sha256:
            raise WeightsCorrupt(f"{hit}: sha256 {file_sha256(hit)} does not match the expected {wf.sha256} "
                                 f"for {wf.name}; fetch it again: {wf.fetch}")
        found[wf.name] = hit
    if missing:
        raise WeightsMissing(missing, sorted(set(searched)))
    return found


@lru_cache(maxsize=64)
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance_tag(backend: str, paths: list[Path]) -> str:
    """'name@hash12[+hash12...]': short, stable, and enough to tell two weight files apart."""
    if not paths:
        return backend
    return backend + "@" + "+".join(file_sha256(p)[:12] for p in paths)
