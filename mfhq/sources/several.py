"""`--source all`: a root holding several datasets, each in its own folder.

Each dataset's folder is named after its adapter or the dataset (`vfhq` or `VFHQ`, `celebvhq`
or `CelebV-HQ`, ...). Clips keep their own adapter's name as their source, so clip keys,
shards (`<source>-NNNNN`) and crop folders never collide across datasets.
"""
from __future__ import annotations

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
            folder = next((self.root / d for d in cls.dirnames if (self.root / d).is_dir()), None)
            if folder is not None:
                adapters.append(cls(folder))
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
