"""A folder of videos: each file is one clip of one person (the bundled sample uses this)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from mfhq.records import Clip
from mfhq.sources.base import Source, SourceProblem, register_source

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-/]")


@register_source
class FolderSource(Source):
    name = "folder"
    expects = "any tree of video files (.mp4 .mkv .webm .avi .mov .m4v); one clip per file, its path is the clip id"

    def scan(self) -> Iterator[Clip | SourceProblem]:
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and not p.is_dir())
        for path in files:
            rel = path.relative_to(self.root).with_suffix("")
            # File names can hold anything; ids become output paths, so map odd characters to '_'.
            clip_id = _UNSAFE.sub("_", rel.as_posix())
            if not path.is_file():
                yield SourceProblem(self.name, clip_id, "missing", f"{path}: not a regular file")
                continue
            yield Clip(source=self.name, clip_id=clip_id, video_path=path, video_key=clip_id)
