"""`--source all`: a root holding several datasets, each in its own folder.

Each dataset's folder is named after its adapter or the dataset (`vfhq` or `VFHQ`, `celebvhq`
or `CelebV-HQ`, ...). Clips keep their own adapter's name as their source, so clip keys,
shards (`<source>-NNNNN`) and crop folders never collide across datasets.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from mfhq.records import Clip
from mfhq.sources.base import _REGISTRY, Source, SourceError, SourceProblem, register_source


@register_source
class AllSources(Source):
    name = "all"
    expects = "a folder holding several of the datasets listed here, each in a folder named after its adapter or dataset"

    def found(self) -> list[Source]:
        adapters = []
        for name in sorted(_REGISTRY):
            cls = _REGISTRY[name]
            folders = _distinct([self.root / d for d in cls.dirnames if (self.root / d).is_dir()])
            if len(folders) > 1:  # one would be read and the other's videos dropped without a row
                raise SourceError(f"all: {name} has {len(folders)} folders under {self.root}: "
                                  f"{', '.join(f.name for f in folders)}; each dataset is read from one folder: "
                                  "merge them, or give each its own --root with --source " + name)
            if folders:
                adapters.append(cls(folders[0]))
        if not adapters:
            known = ", ".join(d for n in sorted(_REGISTRY) for d in _REGISTRY[n].dirnames)
            raise SourceError(f"all: no dataset folder under {self.root}; expected one of {known}")
        return adapters

    def scan(self) -> Iterator[Clip | SourceProblem]:
        for adapter in self.found():
            try:
                items = list(adapter.scan())
            except SourceError as exc:
                # One dataset folder without its metadata must not stop the others: a row says so.
                items = [adapter.problem(adapter.root.name, str(exc))]
            yield from items


def _distinct(folders: list[Path]) -> list[Path]:
    """The folders that are not one another (a case-insensitive disk shows `vfhq` and `VFHQ` as
    one folder, and a link may name another)."""
    kept: list[Path] = []
    for folder in folders:
        if not any(os.path.samefile(folder, other) for other in kept):
            kept.append(folder)
    return kept
