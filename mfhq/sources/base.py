"""The Source interface and its registry.

A Source turns what a dataset's users hold on disk (videos plus the official metadata) into
Clip records. It never decodes video. Problems with single entries (a missing file, a malformed
line) are reported as `SourceProblem`s that extract turns into status rows; only a root that
cannot be read at all raises `SourceError`.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from mfhq.records import Clip


class SourceError(RuntimeError):
    """The source root itself is unusable; the message names the path and the problem."""


@dataclass(frozen=True)
class SourceProblem:
    """One metadata entry that cannot become a clip: it becomes a status row instead."""

    source: str
    clip_id: str
    status: str        # a CLIP_STATUSES value: missing, empty, error...
    reason: str        # names the file (and line) and the problem


_SAFE_ID = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


def safe_clip_id(raw: str) -> str:
    """Validate an id that becomes a relative output path; refuse traversal and absolute paths."""
    if not raw or raw.startswith("/") or "\\" in raw or not _SAFE_ID.match(raw):
        raise ValueError(f"unsafe clip id {raw!r}: only letters, digits, '_', '-', '.' and '/' separators")
    if any(part in ("", ".", "..") for part in raw.split("/")):
        raise ValueError(f"unsafe clip id {raw!r}: '.' and '..' path parts are refused")
    return raw


class Source(ABC):
    """Base class of the dataset adapters."""

    name: str = ""
    expects: str = ""  # one line for `mfhq sources`: what must be on disk

    def __init__(self, root: Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"{self.name}: source root {self.root} is not a folder")

    @abstractmethod
    def scan(self) -> Iterator[Clip | SourceProblem]:
        """Yield clips, and problems for entries that cannot become clips, in a stable order."""


_REGISTRY: dict[str, Callable[[Path], Source]] = {}


def register_source(cls: type[Source]) -> type[Source]:
    _REGISTRY[cls.name] = cls
    return cls


def source_names() -> list[str]:
    return sorted(_REGISTRY)


def get_source(name: str, root: Path) -> Source:
    if name not in _REGISTRY:
        raise SourceError(f"unknown source {name!r}; available: {', '.join(source_names())}")
    return _REGISTRY[name](root)
