"""Rewritten ONNX graphs kept on disk, so a worker reads bytes instead of rewriting (ours).

Several backends rewrite their shipped graph on load (SFace and YuNet fold their weights'
DequantizeLinear into floats; SFace splits its PRelus; SCRFD and ArcFace get a free batch axis).
That is the same work in every worker of every run, and it needs the onnx package, whose import
alone costs ~0.5-0.7 s of CPU (most of it ml_dtypes). The rewritten graph is a function of the
source file and the rewrite code only, so it is stored once, keyed by both: the source file's
sha256 and a digest of the source of the modules that rewrite it (any edit to them makes a new
key; the numbers come from numpy's float32 arithmetic, the same under any onnx version).

An entry is trusted only whole: its header must name the same key and the sha256 and length of
the bytes that follow; anything else (truncated, damaged, another key under the name) is
ignored and rewritten. Entries are written to a temporary file and renamed into place, so
concurrent workers never read half of one, and a new entry replaces the older ones of the same
rewrite (disk stays bounded). Where the folder cannot be written (a read-only home), the graph
is rewritten in memory, as without a cache.

Folder: $MFHQ_CACHE_DIR/graphs, else $XDG_CACHE_HOME/mfhq/graphs, else ~/.cache/mfhq/graphs.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable

from mfhq.manifest.io import sha256_of

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "MFHQ_CACHE_DIR"
MAGIC = b"MFHQ-ONNX-GRAPH 1"
SUFFIX = ".graph"
_unwritable: set[str] = set()  # folders already found read-only in this process: said once


def cache_dir() -> Path:
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit) / "graphs"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mfhq" / "graphs"


@lru_cache(maxsize=None)
def code_digest(modules: tuple[str, ...]) -> str:
    """sha256 over the source files of `modules` (dotted names), found without importing them."""
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        digest.update(name.encode() + b"\0" + Path(spec.origin).read_bytes() + b"\0")
    return digest.hexdigest()


def entry_key(source: Path, rewrite: str, code: tuple[str, ...]) -> str:
    text = f"{rewrite}\0{sha256_of(source)}\0{code_digest(tuple(code))}"
    return hashlib.sha256(text.encode()).hexdigest()


def entry_path(source: Path, rewrite: str, code: tuple[str, ...]) -> Path:
    return cache_dir() / f"{rewrite}-{entry_key(source, rewrite, code)[:20]}{SUFFIX}"


def rewritten_graph(source: Path, rewrite: str, code: tuple[str, ...], make: Callable[[Path], bytes]) -> bytes:
    """The serialized graph `make(source)` returns, from the cache where an intact entry for this
    source file and rewrite code exists; else made now and stored (where the folder allows).
    rewrite: a short name of the rewrite ("sface-fast"); code: the modules `make` runs."""
    source = Path(source)
    key = entry_key(source, rewrite, code)
    path = cache_dir() / f"{rewrite}-{key[:20]}{SUFFIX}"
    cached = _read(path, key)
    if cached is not None:
        return cached
    graph = make(source)
    _write(path, key, graph, rewrite)
    return graph


def _read(path: Path, key: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            header = handle.readline(512)
            payload = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.debug("%s: cannot read the cached graph (%s); rewriting it", path, exc)
        return None
    problem = _problem(header, payload, key)
    if problem:
        log.warning("%s: cached graph ignored (%s); rewriting it", path, problem)
        return None
    return payload


def _problem(header: bytes, payload: bytes, key: str) -> str | None:
    """Why the entry cannot be trusted, or None."""
    fields = header.rstrip(b"\n").split(b" ")
    if len(fields) != 5 or b" ".join(fields[:2]) != MAGIC or not header.endswith(b"\n"):
        return "not a graph cache entry"
    if fields[2].decode(errors="replace") != key:
        return "made for another source file or rewrite"
    if not fields[4].isdigit() or int(fields[4]) != len(payload):
        return f"{len(payload)} bytes where its header says {fields[4].decode(errors='replace')}"
    if hashlib.sha256(payload).hexdigest() != fields[3].decode(errors="replace"):
        return "its bytes do not match their recorded sha256"
    return None


def _write(path: Path, key: str, graph: bytes, rewrite: str) -> None:
    header = b" ".join([MAGIC, key.encode(), hashlib.sha256(graph).hexdigest().encode(), str(len(graph)).encode()])
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(header + b"\n")
            out.write(graph)
        os.replace(temp, path)
        temp = None
    except OSError as exc:
        if str(path.parent) not in _unwritable:
            _unwritable.add(str(path.parent))
            log.info("%s: cannot keep rewritten graphs here (%s); rewriting them in each worker "
                     "(set %s to a writable folder to keep them)", path.parent, exc, CACHE_DIR_ENV)
        return
    finally:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)
    try:  # the entries of this rewrite for older code or other weights go
        for older in path.parent.glob(f"{rewrite}-*{SUFFIX}"):
            if older != path:
                older.unlink(missing_ok=True)
    except OSError:
        pass
