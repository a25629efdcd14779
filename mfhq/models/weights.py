"""Where model files come from, and the hashes that prove which ones were used.

Resolution order for every file: `--models-dir` (or the MFHQ_MODELS_DIR environment variable),
then the place the owning library keeps it (its package folder or cache). A missing file is
never replaced by another model: `WeightsMissing` lists every missing file, its hash, where it
comes from, and how to fetch it.

Integrity: a file is checked against its published sha256 where upstream publishes one; else
against the sha256 prefix that torch-hub style file names carry (`name-0a8b8e4f.pth`); else
against the hash `mfhq models fetch` recorded beside it (LOCK_NAME in the same folder).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from mfhq.errors import MfhqError
from mfhq.manifest.io import sha256_of

MODELS_DIR_ENV = "MFHQ_MODELS_DIR"
LOCK_NAME = "mfhq-models.sha256"  # `sha256sum` format, written by `mfhq models fetch`


@dataclass(frozen=True)
class WeightFile:
    name: str                 # file name, also its name under the models dir
    package: str | None       # the installed package that ships it, if any
    package_path: str | None  # path inside that package
    sha256: str | None        # expected hash; None where upstream publishes none
    origin: str               # where the file comes from (for the error message)
    fetch: str                # the command that gets it
    licence: str
    url: str | None = None            # what `mfhq models fetch` downloads
    archive_member: str | None = None  # the file's path inside the zip at url, if it is one
    library_cache: tuple[str, ...] = ()  # the library's own places: "{torch_hub}/...", "{home}/..."
    sha256_prefix: str | None = None  # the prefix upstream puts in the file name, if any
    size: int | None = None           # bytes, where the file is pinned (None: not published)

    def expected_hash(self) -> str:
        if self.sha256:
            return self.sha256
        if self.sha256_prefix:
            return f"unpublished; its name carries the prefix {self.sha256_prefix}"
        if self.url:
            return "unpublished upstream; `mfhq models fetch` records it"
        return "unpublished upstream"


def size_text(wf: WeightFile) -> str:
    return f"{wf.size / 1e6:.1f} MB" if wf.size else "size not published"


def _report(header: str, missing: list[WeightFile], searched: list[Path],
            damaged: list[tuple[WeightFile, str]], owners: dict[str, list[str]]) -> str:
    """Each file with its problem, source and hash, then where files go and how to fetch them."""
    lines = [f"{header}: {len(missing) + len(damaged)} file(s)"]
    for wf, problem in [*((wf, "missing") for wf in missing), *damaged]:
        who = f" [{', '.join(owners[wf.name])}]" if owners.get(wf.name) else ""
        lines.append(f"  - {wf.name}{who}: {problem}\n      {size_text(wf)}; sha256 {wf.expected_hash()}; "
                     f"licence {wf.licence}\n      source: {wf.origin}"
                     + ("" if wf.url else f"\n      get it: {wf.fetch}"))
    if searched:
        lines.append("searched: " + ", ".join(str(p) for p in searched))
    lines.append(f"put the files in one folder (subfolders such as buffalo_l/ are searched too) and pass "
                 f"--models-dir DIR (or set {MODELS_DIR_ENV}).")
    fetchable = [wf for wf in [*missing, *(wf for wf, _ in damaged)] if wf.url]
    if fetchable:
        names = list(dict.fromkeys(o for wf in fetchable for o in owners.get(wf.name, []))) or ["..."]
        lines.append(f"on a machine with internet: mfhq models fetch {' '.join(names)} --to DIR")
    return "\n".join(lines)


class WeightsMissing(MfhqError, FileNotFoundError):
    """Every file that is missing or damaged, at once: one damaged file never hides another."""

    def __init__(self, missing: list[WeightFile], searched: list[Path],
                 damaged: list[tuple[WeightFile, str]] = (), owners: dict[str, list[str]] | None = None):
        super().__init__(_report("model weights missing or damaged", missing, searched, list(damaged), owners or {}))
        self.missing = missing
        self.damaged = list(damaged)


class WeightsCorrupt(MfhqError, RuntimeError):
    """A weight file whose hash is not the published one, or that its library cannot read."""


def library_message(exc: BaseException) -> str:
    """What the library said about a file it could not read, less torch's advice to load it with
    weights_only=False (which would run any code the file carries): the unpickler's own words."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation of torch.load")[0]
    elif "weights_only" in text:
        text = "it is not a plain tensor checkpoint"
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def unreadable(backend: str, files: list[tuple[WeightFile, Path]], exc: BaseException) -> WeightsCorrupt:
    """The one error for weights that passed their hash check (or had none) but do not load."""
    problem = (f"damaged or not the file {backend} needs: loading it failed with {library_message(exc)}"
               if len(files) == 1 else f"one of {backend}'s files is damaged: loading failed with "
               f"{library_message(exc)}")
    damaged = [(wf, f"{path}: {problem}") for wf, path in files]
    return WeightsCorrupt(_report(f"{backend}: model weights cannot be loaded", [], [], damaged,
                                  {wf.name: [backend] for wf, _ in files}))


def models_dir(explicit: str | Path | None = None) -> Path | None:
    value = explicit or os.environ.get(MODELS_DIR_ENV)
    return Path(value) if value else None


def _package_dir(package: str) -> Path | None:
    # find_spec without importing: some model packages do work (or fail) at import time.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _cache_roots() -> dict[str, str]:
    # The folders the libraries themselves download into, computed without importing them.
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return {"torch_hub": os.path.join(torch_home, "hub"), "home": os.path.expanduser("~")}


def candidates(wf: WeightFile, explicit_dir: str | Path | None = None) -> list[Path]:
    """Where wf may be, in the order they are tried."""
    out = []
    base = models_dir(explicit_dir)
    if base is not None:
        out.append(base / wf.name)
        # Archives unpack into a folder of their own (buffalo_l.zip -> buffalo_l/): one level down too.
        if base.is_dir():
            out.extend(sorted(sub / wf.name for sub in base.iterdir() if sub.is_dir() and not sub.name.startswith(".")))
    if wf.package and wf.package_path:
        pkg = _package_dir(wf.package)
        if pkg is not None:
            out.append(pkg / wf.package_path)
    roots = _cache_roots()
    out.extend(Path(template.format(**roots)) for template in wf.library_cache)
    return out


def check(wf: WeightFile, path: Path) -> None:
    """Raise WeightsCorrupt if path is not the file wf names (see the module docstring)."""
    actual = sha256_of(path)
    expected = wf.sha256 or recorded_hash(path)
    if expected and actual != expected:
        raise WeightsCorrupt(f"{path}: sha256 {actual} does not match the expected {expected} "
                             f"for {wf.name}; fetch it again: {wf.fetch}")
    if wf.sha256_prefix and not actual.startswith(wf.sha256_prefix):
        raise WeightsCorrupt(f"{path}: sha256 {actual} does not start with {wf.sha256_prefix}, the prefix "
                             f"in {wf.name}'s published name; fetch it again: {wf.fetch}")


def recorded_hash(path: Path) -> str | None:
    lock = path.parent / LOCK_NAME
    if not lock.is_file():
        return None
    for line in lock.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name.strip() == path.name:
            return digest.strip()
    return None


def resolve(files: list[WeightFile], explicit_dir: str | Path | None = None,
            owners: dict[str, list[str]] | None = None) -> dict[str, Path]:
    """Map each file name to a path. Raises WeightsMissing naming every file that is absent or
    damaged (owners: file name -> the backends that need it, for the message), or
    WeightsCorrupt when files are only damaged."""
    found, missing, damaged, searched = {}, [], [], []
    for wf in files:
        places = candidates(wf, explicit_dir)
        searched.extend(c.parent for c in places)
        hit = next((c for c in places if c.is_file()), None)
        if hit is None:
            missing.append(wf)
            continue
        try:
            check(wf, hit)
        except WeightsCorrupt as exc:
            damaged.append((wf, f"damaged: {str(exc).split('; fetch it again:')[0]}"))  # one fetch line below
            continue
        found[wf.name] = hit
    if missing:
        raise WeightsMissing(missing, sorted(set(searched)), damaged, owners)
    if damaged:  # the same report as for missing files: where they go and how to fetch them
        raise WeightsCorrupt(_report("model weights damaged", [], sorted(set(searched)), damaged, owners or {}))
    return found


def provenance_tag(backend: str, paths: list[Path]) -> str:
    """'name@hash12[+hash12...]': short, stable, and enough to tell two weight files apart."""
    if not paths:
        return backend
    return backend + "@" + "+".join(sha256_of(p)[:12] for p in paths)
