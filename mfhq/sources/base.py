"""The Source interface and its registry.

A Source turns what a dataset's users hold on disk (videos plus the official metadata) into
Clip records. It never decodes video. Problems with single entries (a missing file, a malformed
line) are reported as `SourceProblem`s that extract turns into status rows; only a root that
cannot be read at all raises `SourceError`.
"""
from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from mfhq.errors import MfhqError
from mfhq.records import Clip, Status


class SourceError(MfhqError, RuntimeError):
    """The source root itself is unusable; the message names the path and the problem."""


@dataclass(frozen=True)
class SourceProblem:
    """One metadata entry that cannot become a clip: it becomes a status row instead."""

    source: str
    clip_id: str
    status: str        # a records.Status: missing, empty, error...
    reason: str        # names the file (and line) and the problem
    video_key: str | None = None  # when known (a missing video): which video to fetch
    split: str | None = None


# '+' is allowed: VFHQ's clip names are `Clip+{ytid}+P{pid}+C{n}+F{start}-{end}`.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.+\-]+(/[A-Za-z0-9_.+\-]+)*$")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_.+\-]")
# File systems allow 255 bytes per name; an id part becomes a folder and a file name with a
# suffix (`<id>.mp4.mp4`, `.tmp-<id>...`), so leave room for those.
MAX_ID_PART = 200


def safe_clip_id(raw: str) -> str:
    """Validate an id that becomes a relative output path; refuse traversal and absolute paths."""
    if not raw or raw.startswith("/") or "\\" in raw or not _SAFE_ID.match(raw):
        raise ValueError(f"unsafe clip id {raw!r}: only letters, digits, '_', '-', '.', '+' and '/' separators")
    if any(part in ("", ".", "..") for part in raw.split("/")):
        raise ValueError(f"unsafe clip id {raw!r}: '.' and '..' path parts are refused")
    longest = max(len(part) for part in raw.split("/"))
    if longest > MAX_ID_PART:
        raise ValueError(f"clip id {raw[:40]!r}... is too long: a part of {longest} characters, where file "
                         f"names allow 255 bytes and {MAX_ID_PART} are used at most")
    return raw


def problem_id(raw: object) -> str:
    """A printable stand-in for an id that cannot be used (status rows only; never a path).

    Where the raw id had to be changed, a short hash of it is appended: `a b_0` and a valid
    `a_b_0` are two entries and must stay two rows, not one key that hides the other."""
    raw = str(raw)
    text = _UNSAFE_CHAR.sub("_", raw).replace("..", "__") or "_"
    if text == raw and len(text) <= MAX_ID_PART:
        return text
    return f"{text[:MAX_ID_PART]}-{hashlib.sha256(raw.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


class Source(ABC):
    """Base class of the dataset adapters."""

    name: str = ""
    expects: str = ""  # one line for `mfhq sources`: what must be on disk
    dirnames: tuple[str, ...] = ()  # the folder names this dataset goes by under an `all` root

    def __init__(self, root: Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"{self.name}: source root {self.root} is not a folder")

    @abstractmethod
    def scan(self) -> Iterator[Clip | SourceProblem]:
        """Yield clips, and problems for entries that cannot become clips, in a stable order."""

    def keep_ids(self, planned: dict[str, str]) -> None:
        """The ids a run already gave this source's files (what `ids_of` returned then), before a
        scan: a source whose ids depend on the other files (folder) keeps them, so a growing
        folder never renames a planned clip. Ids read from a dataset's metadata never change."""

    def ids_of(self, clips: list[Clip]) -> dict[str, str]:
        """What `keep_ids` takes back for these clips (their file -> id); {} where ids never change."""
        return {}

    def problem(self, raw_id: object, reason: str, status: str = Status.BAD_METADATA, clip: Clip | None = None) -> SourceProblem:
        video_key, split = (clip.video_key, clip.split) if clip is not None else (None, None)
        return SourceProblem(self.name, problem_id(raw_id), status, reason, video_key, split)

    def first_file(self, folders: Iterable[str], name: str) -> Path | None:
        """The first existing `root/<folder>/<name>`; the layouts users hold differ slightly."""
        for folder in folders:
            path = self.root / folder / name
            try:
                if path.is_file():
                    return path
            except OSError:  # a name the file system refuses, an unreadable folder: not there
                continue
        return None


_REGISTRY: dict[str, Callable[[Path], Source]] = {}


def register_source(cls: type[Source]) -> type[Source]:
    _REGISTRY[cls.name] = cls
    return cls


def source_names() -> list[str]:
    return sorted(_REGISTRY)


def source_class(name: str) -> type[Source]:
    return _REGISTRY[name]


def get_source(name: str, root: Path) -> Source:
    if name not in _REGISTRY:
        raise SourceError(f"unknown source {name!r}; available: {', '.join(source_names())}")
    return _REGISTRY[name](root)
