"""A folder of videos: each file is one clip of one person (the bundled sample uses this).

A clip id is the file's relative path without its extension, with characters that are unsafe
in an output path mapped to '_'. That mapping loses information (`a b.mp4` and `a_b.mp4`,
`x.mp4` and `x.mkv`, two non-ASCII names of one length), so where the readable form is not
unique, case-insensitively (crop folders may live on a case-insensitive disk), every file
sharing it gets a short hash of its original relative path appended: ids stay readable where
they can, are injective always, and depend only on the folder's contents.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import defaultdict
from pathlib import PurePosixPath
from typing import Iterator

from mfhq.records import Clip, Status
from mfhq.sources.base import MAX_ID_PART, Source, SourceProblem, register_source

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-/]")


def readable_id(rel: PurePosixPath) -> str:
    """The relative path without extension, safe as an output path (may not be unique)."""
    text = _UNSAFE.sub("_", rel.with_suffix("").as_posix())
    # A part made of dots only ('..mp4' has the stem '.') would climb out of the crop folder;
    # a long one leaves no room for the hash and the crop folder's own suffixes.
    return "/".join((part if part.strip(".") else "_" * max(len(part), 1))[:MAX_ID_PART] for part in text.split("/"))


def path_hash(rel: PurePosixPath, length: int = 8) -> str:
    # fsencode keeps names that are not valid UTF-8 distinct (they arrive as surrogates).
    return hashlib.sha256(os.fsencode(rel.as_posix())).hexdigest()[:length]


def assign_ids(rels: list[PurePosixPath]) -> tuple[dict[PurePosixPath, str], dict[PurePosixPath, str]]:
    """(file -> clip id, file -> why it has none). Unique readable ids stay; shared ones get
    `-<hash>`; files whose id still collides (a hashed id equal to another file's readable
    one) get no id, and the reason names every file it collides with."""
    by_readable: dict[str, list[PurePosixPath]] = defaultdict(list)
    for rel in rels:
        by_readable[readable_id(rel).casefold()].append(rel)
    ids = {}
    for group in by_readable.values():
        for rel in group:
            ids[rel] = readable_id(rel) if len(group) == 1 else f"{readable_id(rel)}-{path_hash(rel)}"
    by_id: dict[str, list[PurePosixPath]] = defaultdict(list)
    for rel, clip_id in ids.items():
        by_id[clip_id.casefold()].append(rel)
    problems = {}
    for group in (g for g in by_id.values() if len(g) > 1):
        for rel in group:
            others = ", ".join(repr(o.as_posix()) for o in group if o != rel)
            problems[rel] = f"clip id {ids[rel]!r} is also the id of {others}; rename one of the files"
    return {r: i for r, i in ids.items() if r not in problems}, problems


def _say_how_ids_are_made(ids: dict[PurePosixPath, str]) -> None:
    """Once per scan, where a file's id is not its name: an id that reads `sub/_t__vid_o` for
    `sub/été vidéo.webm` must not look like a bug."""
    renamed = [(rel, clip_id) for rel, clip_id in ids.items() if clip_id != rel.with_suffix("").as_posix()]
    if renamed:
        rel, clip_id = renamed[0]
        log.info("folder: %d file name(s) are not usable as clip ids as they are: an id keeps ASCII letters, "
                 "digits, '_', '.', '-' and '/', every other character becomes '_' (and a short hash is added where "
                 "two names meet), e.g. %r -> %r; the clips/ rows keep each file's real path in video_path",
                 len(renamed), rel.as_posix(), clip_id)


@register_source
class FolderSource(Source):
    name = "folder"
    expects = ("any tree of video files (.mp4 .mkv .webm .avi .mov .m4v); one clip per file, its path is the "
               "clip id (with a short hash appended where two paths map to one id)")

    def scan(self) -> Iterator[Clip | SourceProblem]:
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and not p.is_dir())
        rels = {PurePosixPath(p.relative_to(self.root).as_posix()): p for p in files}
        ids, collisions = assign_ids(list(rels))
        _say_how_ids_are_made(ids)
        for rel, path in rels.items():
            if rel in collisions:
                # The row's id carries a long hash of the path: it cannot collide with anything.
                problem_id = f"{readable_id(rel)}-{path_hash(rel, 16)}"
                yield SourceProblem(self.name, problem_id, Status.BAD_METADATA, f"{path}: {collisions[rel]}")
                continue
            clip_id = ids[rel]
            if not path.is_file():
                yield SourceProblem(self.name, clip_id, Status.MISSING, f"{path}: not a regular file")
                continue
            yield Clip(source=self.name, clip_id=clip_id, video_path=path, video_key=clip_id)
