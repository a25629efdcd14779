"""A folder of videos: each file is one clip of one person (the bundled sample uses this).

A clip id is the file's relative path without its extension, with characters that are unsafe
in an output path mapped to '_'. That mapping loses information (`a b.mp4` and `a_b.mp4`,
`x.mp4` and `x.mkv`, two non-ASCII names of one length), so where the readable form is not
unique, case-insensitively (crop folders may live on a case-insensitive disk), every file
sharing it gets a short hash of its original relative path appended: ids stay readable where
they can and are injective always. They depend on the whole folder's contents, so a file added
beside `a b.mp4` as `a_b.mp4` would rename it: a run therefore records the id it planned for each
file (mfhq.plan, `ids.json`) and hands them back before the next scan (`keep_ids`). A planned
file keeps its id; a new file whose readable id is taken by a planned one gets the hash.

Names starting with "." (files, or folders on the way) are not clips: they are the temporary
files of writes under way or stopped part way (`.clip.partial.mp4`), or hidden files such as
macOS's `._clip.mp4`. But for the files a run already planned (in its ids.json: an mfhq before
2026-12-06 read such names): a resume keeps reading those, so their clips end with a row like
every planned clip, and says so once. A folder holding the marker of a `mfhq sample` or `mfhq
bench --make-clips` that has not finished (mfhq.unfinished) is refused whole: clips are missing.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Iterator

from mfhq.records import Clip, Status
from mfhq.sources.base import MAX_ID_PART, Source, SourceError, SourceProblem, register_source
from mfhq.unfinished import VIDEO_MARKERS, refusal

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


def assign_ids(rels: list[PurePosixPath], planned: dict[str, str] | None = None
               ) -> tuple[dict[PurePosixPath, str], dict[PurePosixPath, str]]:
    """(file -> clip id, file -> why it has none). `planned` (relative path -> id) are the ids a
    run already gave: those files keep theirs, and no other file may take one (a planned id counts
    as done). Unique readable ids stay; shared or taken ones get `-<hash>`; files whose id still
    collides (a hashed id equal to another file's readable one) get no id, and the reason names
    every file it collides with."""
    planned = planned or {}
    ids = {rel: planned[rel.as_posix()] for rel in rels if rel.as_posix() in planned}
    taken = {clip_id.casefold(): path for path, clip_id in planned.items()}
    by_readable: dict[str, list[PurePosixPath]] = defaultdict(list)
    for rel in rels:
        if rel not in ids:
            by_readable[readable_id(rel).casefold()].append(rel)
    for readable, group in by_readable.items():
        for rel in group:
            alone = len(group) == 1 and readable not in taken
            ids[rel] = readable_id(rel) if alone else f"{readable_id(rel)}-{path_hash(rel)}"
    by_id: dict[str, list[str]] = defaultdict(list)
    for rel, clip_id in ids.items():
        by_id[clip_id.casefold()].append(rel.as_posix())
    problems = {}
    for rel, clip_id in ids.items():
        owner = taken.get(clip_id.casefold())
        others = [o for o in by_id[clip_id.casefold()] if o != rel.as_posix()]
        if rel.as_posix() in planned:  # its rows exist: only the newcomer is refused, never it
            others = [o for o in others if o in planned]
        named = [repr(o) for o in others]
        if owner is not None and owner != rel.as_posix() and owner not in others:
            named.append(f"{owner!r} (planned by the run, no longer in the folder)")
        if named:
            problems[rel] = f"clip id {clip_id!r} is also the id of {', '.join(named)}; rename one of the files"
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


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _say_planned_hidden(root: Path, rels: list[PurePosixPath]) -> None:
    """Once per scan: "."-named files the run planned before such names were skipped, still read
    so that their clips end with a row, as every planned clip does."""
    if rels:
        log.warning("folder: %d file(s) whose names start with '.' are read because the run planned them before mfhq "
                    "skipped such names (temporary or hidden files; a new run does not read them), e.g. %s",
                    len(rels), root / rels[0].as_posix())


@register_source
class FolderSource(Source):
    name = "folder"
    expects = ("any tree of video files (.mp4 .mkv .webm .avi .mov .m4v); one clip per file, its path is the "
               "clip id (with a short hash appended where two paths map to one id)")

    planned: dict[str, str] = {}

    def keep_ids(self, planned: dict[str, str]) -> None:
        self.planned = dict(planned)

    def ids_of(self, clips: list[Clip]) -> dict[str, str]:
        return {c.video_path.relative_to(self.root).as_posix(): c.clip_id for c in clips}

    def scan(self) -> Iterator[Clip | SourceProblem]:
        found = sorted(self.root.rglob("*"))
        marker = next((p for p in found if p.name in VIDEO_MARKERS), None)
        if marker is not None:  # before any row: a half-written folder read as whole would lose clips silently
            raise SourceError(f"folder: {refusal(marker)}")
        rels = {PurePosixPath(p.relative_to(self.root).as_posix()): p for p in found
                if p.suffix.lower() in VIDEO_SUFFIXES and not p.is_dir()}
        rels = {rel: p for rel, p in rels.items() if not _hidden(rel) or rel.as_posix() in self.planned}
        _say_planned_hidden(self.root, [rel for rel in rels if _hidden(rel)])
        ids, collisions = assign_ids(list(rels), self.planned)
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
