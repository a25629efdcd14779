"""TalkingHead-1KH: the official tube lists plus the videos the official scripts leave on disk.

`videos_download_and_crop.sh <split>` downloads to `<split>/raw_videos`, cuts each video into
one-minute chunks `<split>/1min_clips/{ytid}_{chunk:04d}.mp4` (stream copy, so chunks start on
keyframes, not at 60 n s) and crops the tubes into `<split>/cropped_clips/`. A tube line

    video_name, H, W, S, E, L, T, R, B

gives 0-based frames S..E (both inclusive) *within the chunk* and a box in an H x W frame that
the crop script rescales to the real size with int(). So a tube is read from its chunk (or its
cut clip); the full raw video cannot be used, as the chunk offsets are not known.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterator

from mfhq.records import Clip, Status
from mfhq.sources.base import Source, SourceError, SourceProblem, register_source, safe_clip_id

_CHUNK = re.compile(r"^(?P<ytid>.+)_(?P<chunk>\d{4})$")  # split at the last '_': ids hold '_' too
_LIST = re.compile(r"^(?P<split>[a-z]+)_video_tubes\.txt$")
# `small` is the official unit-test subset; its videos are train videos.
_SPLIT = {"small": "train"}


@register_source
class TalkingHead1KHSource(Source):
    name = "talkinghead1kh"
    dirnames = ("talkinghead1kh", "TalkingHead-1KH")
    expects = ("data_list/<split>_video_tubes.txt (or at the root); per split, the one-minute chunks as "
               "<split>/1min_clips/<ytid>_<NNNN>.mp4, or the tubes as <split>/cropped_clips/<tube name>.mp4")

    def tube_lists(self) -> list[Path]:
        found = [p for folder in (self.root / "data_list", self.root) if folder.is_dir()
                 for p in sorted(folder.iterdir()) if _LIST.match(p.name)]
        if not found:
            raise SourceError(f"{self.name}: no <split>_video_tubes.txt in {self.root}/data_list or {self.root}")
        return found

    def scan(self) -> Iterator[Clip | SourceProblem]:
        # clip id -> (clip, the split folders that may hold its video, where it was first listed).
        # `small` repeats train tubes: the same line in two lists is one clip found in either folder.
        tubes: dict[str, tuple[Clip, list[str], str]] = {}
        conflicts: dict[str, list[str]] = {}  # clip id -> the lines listing it in another split
        for path in self.tube_lists():
            split = _LIST.match(path.name)["split"]
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:  # a dangling link, no permission: the other lists go on
                yield self.problem(f"{split}-list", f"{path}: cannot read the tube list ({exc.strerror or exc})")
                continue
            for number, line in enumerate(text.splitlines(), start=1):  # no final newline upstream
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    clip = self._clip(line, split)
                except ValueError as exc:
                    yield self.problem(f"{split}-line{number}", f"{where}: {exc}: {line[:120]!r}")
                    continue
                if clip.clip_id not in tubes:
                    tubes[clip.clip_id] = (clip, [split], where)
                elif split in tubes[clip.clip_id][1]:
                    yield self.problem(f"{clip.clip_id}.duplicate", f"{where}: tube {clip.clip_id} is listed twice")
                else:
                    tubes[clip.clip_id][1].append(split)
                    if clip.split != tubes[clip.clip_id][0].split:  # train and val, not small's train copy
                        conflicts.setdefault(clip.clip_id, []).append(where)
        for clip, splits, where in tubes.values():
            if clip.clip_id in conflicts:  # neither side of an identity-disjoint split can take it
                yield self.problem(clip.clip_id, f"tube {clip.clip_id} is listed as {clip.split} at {where} and "
                                   f"as another split at {', '.join(conflicts[clip.clip_id])}; keep it in one list")
                continue
            yield self._locate(clip, splits, where)

    def _clip(self, line: str, split: str) -> Clip:
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 9:
            raise ValueError(f"expected 9 comma-separated fields, got {len(fields)}")
        video_name = safe_clip_id(fields[0])
        match = _CHUNK.match(video_name)
        if not match:
            raise ValueError(f"video name {video_name!r} is not <ytid>_<NNNN>")
        try:
            height, width, start, end, left, top, right, bottom = (int(f) for f in fields[1:])
        except ValueError:
            raise ValueError("H, W, S, E, L, T, R, B must be integers") from None
        if height <= 0 or width <= 0:
            raise ValueError(f"frame size {height}x{width} is not positive")
        if start < 0 or end < start:
            raise ValueError(f"empty, negative or reversed frame range {start}..{end}")
        if not (0 <= left < right <= width and 0 <= top < bottom <= height):
            raise ValueError(f"box L{left} T{top} R{right} B{bottom} lies outside the {height}x{width} frame")
        # The crop script's own output name: unique per tube, and a valid path.
        clip_id = safe_clip_id(f"{video_name}_S{start}_E{end}_L{left}_T{top}_R{right}_B{bottom}")
        return Clip(
            source=self.name, clip_id=clip_id, video_path=Path(), video_key=match["ytid"],
            split=_SPLIT.get(split, split), start_frame=start, end_frame=end,
            person_box=(left, top, right, bottom), box_space=(width, height), geometry="talkinghead-trunc",
            extra={"chunk": video_name},
        )

    def _locate(self, clip: Clip, splits: list[str], where: str) -> Clip | SourceProblem:
        for split in splits:
            cut = self.root / split / "cropped_clips" / f"{clip.clip_id}.mp4"
            if cut.is_file():
                return dataclasses.replace(clip, video_path=cut, start_frame=None, end_frame=None,
                                           person_box=None, box_space=None, extra={**clip.extra, "layout": "cut"})
        for split in splits:
            chunk = self.root / split / "1min_clips" / f"{clip.extra['chunk']}.mp4"
            if chunk.is_file():
                return dataclasses.replace(clip, video_path=chunk, extra={**clip.extra, "layout": "raw"})
        looked = " or ".join(f"{s}/cropped_clips/{clip.clip_id}.mp4, {s}/1min_clips/{clip.extra['chunk']}.mp4"
                             for s in splits)
        return self.problem(clip.clip_id, f"{where}: tube {clip.clip_id}: no video under {self.root} (looked for {looked})",
                            status=Status.MISSING, clip=clip)
