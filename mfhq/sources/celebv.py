"""What CelebV-HQ and CelebV-Text share: one JSON of clips, a normalised box, second ranges.

Both official `download_and_process.py` scripts crop the same way: widen the normalised box
by 0.02 per side (clamped to [0, 1]), denormalise with round(), take a square of side
2 * (min(h, w) // 2) around the box centre, and cut [start_sec, end_sec] of the source video.
The clips name that rule (`geometry="celebv-square"`, in mfhq.geometry); the worker applies it
once the video's size is known.
Users hold either the raw YouTube downloads (`<ytb_id>.mp4`) or the clips that script wrote
(`<clip key>.mp4`, already cropped and trimmed); both are accepted, cut clips first.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Iterator

from mfhq.records import Clip, Status
from mfhq.sources.base import Source, SourceError, SourceProblem, safe_clip_id

_OBJECT_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*\{')


def key_lines(text: str) -> dict[str, list[int]]:
    """1-based lines of each object key in the JSON text, every occurrence in file order, so that
    errors can point at the clip's line. One pass: the official file is 19 MB with 35,666 clips."""
    lines: dict[str, list[int]] = {}
    line, last = 1, 0
    for match in _OBJECT_KEY.finditer(text):
        line += text.count("\n", last, match.start())
        last = match.start()
        lines.setdefault(match.group(1), []).append(line)
    return lines


class _Object(dict):
    """A JSON object that remembers the values its repeated keys had before the last one."""

    shadowed: tuple | list = ()  # a list only where a key repeats: 35,666 entries stay small


def _object(pairs: list[tuple[str, object]]) -> _Object:
    # Python's json keeps the last value of a repeated key and drops the others without a word.
    # The official scripts read the file with it, so the last entry is the clip they cut; the
    # earlier ones are kept here only to be reported (CelebV-HQ keys do repeat in the lists
    # derived from the file, e.g. `-PFdr0SiAEw_0`).
    obj = _Object()
    for key, value in pairs:
        if key in obj:
            obj.shadowed = [*obj.shadowed, (key, obj[key])]
        obj[key] = value
    return obj


def clip_tables(data: object) -> list[tuple[str, dict, list[tuple[str, object]]]]:
    """(set name, clips, entries a repeated key shadowed) in every layout the files have had: a
    `clips` wrapper, `clips_set1` / `clips_set2` (CelebV-Text, early 2023), or a flat dict of
    clips (CelebV-Text since 2023-04)."""
    if not isinstance(data, dict):
        raise ValueError(f"the top level is a {type(data).__name__}, not an object")

    def shadowed(obj: dict) -> list[tuple[str, object]]:
        return [(k, v) for k, v in getattr(obj, "shadowed", ()) if k != "meta_info"]

    if isinstance(data.get("clips"), dict):
        return [("clips", data["clips"], shadowed(data["clips"]))]
    sets = sorted(k for k in data if k.startswith("clips_set") and isinstance(data[k], dict))
    if sets:
        return [(k, data[k], shadowed(data[k])) for k in sets]
    return [("", {k: v for k, v in data.items() if k != "meta_info"}, shadowed(data))]


def _find_line(text: str, key: str) -> int | str:
    """The slow way, for the odd key whose value is not an object."""
    at = text.find(json.dumps(key))
    return "?" if at < 0 else text.count("\n", 0, at) + 1


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} is {value!r}, not a finite number")
    return float(value)


def parse_range(entry: dict) -> tuple[float, float]:
    duration = entry.get("duration")
    if not isinstance(duration, dict):
        raise ValueError("missing field 'duration'")
    # CelebV-Text's README once showed start_frame/end_frame holding seconds (e.g. 415.29).
    start_key = "start_sec" if "start_sec" in duration else "start_frame"
    end_key = "end_sec" if "end_sec" in duration else "end_frame"
    if start_key not in duration or end_key not in duration:
        raise ValueError("missing field 'duration.start_sec' or 'duration.end_sec'")
    start, end = _number(duration[start_key], f"duration.{start_key}"), _number(duration[end_key], f"duration.{end_key}")
    if start < 0 or end <= start:
        raise ValueError(f"empty, negative or reversed range {start}..{end} s")
    return start, end


def parse_box(entry: dict, allow_pixels: bool) -> tuple[tuple[float, float, float, float], bool]:
    """(top, bottom, left, right) and whether it is in pixels rather than normalised."""
    bbox = entry.get("bbox")
    if not isinstance(bbox, dict) or any(k not in bbox for k in ("top", "bottom", "left", "right")):
        raise ValueError("missing field 'bbox' (top, bottom, left, right)")
    values = tuple(_number(bbox[k], f"bbox.{k}") for k in ("top", "bottom", "left", "right"))
    top, bottom, left, right = values
    pixels = allow_pixels and max(values) > 1.0
    if min(values) < 0 or (not pixels and max(values) > 1.0):
        raise ValueError(f"box {bbox} lies outside the frame")
    if bottom <= top or right <= left:
        raise ValueError(f"box {bbox} is empty or reversed")
    return values, pixels


class CelebVSource(Source):
    info_file = ""
    cut_dirs: tuple[str, ...] = ()
    raw_dirs: tuple[str, ...] = ()
    pixel_boxes = False   # CelebV-Text's README shows integer pixel boxes

    def scan(self) -> Iterator[Clip | SourceProblem]:
        path = self.root / self.info_file
        if not path.is_file():
            raise SourceError(f"{self.name}: {path} not found; expected {self.expects}")
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:  # no permission, an I/O error: nothing to plan from, said in one line
            raise SourceError(f"{self.name}: {path} cannot be read ({exc.strerror or exc}); expected "
                              f"{self.expects}") from None
        try:
            tables = clip_tables(json.loads(text, object_pairs_hook=_object))
        except (json.JSONDecodeError, ValueError) as exc:
            # Nothing in the file can be trusted: one status row says so, the run goes on.
            yield self.problem(path.name, f"{path}: not a usable clip list ({exc}); the file may be truncated")
            return
        seen: set[str] = set()
        lines, used = key_lines(text), {}  # used: key -> occurrences already given a line
        repeats: dict[str, list] = {}
        for set_name, clips, shadowed in tables:
            for key, value in shadowed:
                repeats.setdefault(key, []).append(value)
            for key in sorted(clips):
                earlier = repeats.pop(key, [])
                row_id = self.clip_id(key)  # the id its clip would have, whatever the row's status
                at = [self._line(text, lines, used, key) for _ in range(len(earlier) + 1)]
                where = f"{path}:{at[-1]}"
                for n, (value, line) in enumerate(zip(earlier, at), start=1):
                    same = " (an identical entry)" if value == clips[key] else ""
                    yield self.problem(f"{row_id}.duplicate{n if n > 1 else ''}",
                                       f"{path}:{line}: clip {key!r} appears again at line {at[-1]}{same}; as in the "
                                       f"official script (Python's json), only the last entry is used")
                try:
                    clip, bad = self._clip(key, clips[key], set_name), ""
                except ValueError as exc:
                    clip, bad = None, f": {exc}"
                if row_id in seen:  # another key names the same clip (`X` and `X.mp4`, or in another set)
                    yield self.problem(f"{row_id}.duplicate{len(earlier) + 1 if earlier else ''}",
                                       f"{where}: clip {key!r} appears twice{bad}")
                    continue
                seen.add(row_id)
                yield self._locate(clip, where) if clip is not None else self.problem(row_id, f"{where}: clip {key!r}{bad}")

    @staticmethod
    def _line(text: str, lines: dict[str, list[int]], used: dict[str, int], key: str) -> int | str:
        """The line of the key's next occurrence in the file (tables are read in file order)."""
        found = lines.get(json.dumps(key)[1:-1], [])
        n = used[key] = used.get(key, -1) + 1
        return found[n] if n < len(found) else (found[-1] if found else _find_line(text, key))

    def clip_id(self, key: str) -> str:
        return key

    def _clip(self, key: str, entry: object, set_name: str) -> Clip:
        clip_id = safe_clip_id(self.clip_id(key))
        if not isinstance(entry, dict):
            raise ValueError(f"entry is a {type(entry).__name__}, not an object")
        ytb_id = entry.get("ytb_id")
        if not isinstance(ytb_id, str) or not ytb_id:
            raise ValueError("missing field 'ytb_id'")
        safe_clip_id(ytb_id)
        start, end = parse_range(entry)
        box, pixels = parse_box(entry, self.pixel_boxes)
        top, bottom, left, right = box
        return Clip(
            source=self.name, clip_id=clip_id, video_path=Path(), video_key=ytb_id, start_sec=start, end_sec=end,
            person_box=(left, top, right, bottom), box_space=None if pixels else (1.0, 1.0), geometry="celebv-square",
            extra={"set": set_name} if set_name.startswith("clips_set") else {},
        )

    def cut_names(self, clip: Clip) -> list[str]:
        return [f"{clip.clip_id}.mp4"]

    def _locate(self, clip: Clip, where: str) -> Clip | SourceProblem:
        for name in self.cut_names(clip):
            cut = self.first_file(self.cut_dirs, name)
            if cut is not None:  # already cropped and trimmed by the official script
                return dataclasses.replace(clip, video_path=cut, start_sec=None, end_sec=None,
                                           person_box=None, box_space=None, extra={**clip.extra, "layout": "cut"})
        raw = self.first_file(self.raw_dirs, f"{clip.video_key}.mp4")
        if raw is not None:
            return dataclasses.replace(clip, video_path=raw, extra={**clip.extra, "layout": "raw"})
        looked = [f"{d}/{n}" for d in self.cut_dirs for n in self.cut_names(clip)]
        looked += [f"{d}/{clip.video_key}.mp4" for d in self.raw_dirs]
        return self.problem(clip.clip_id, f"{where}: clip {clip.clip_id!r}: no video under {self.root} "
                                          f"(looked for {', '.join(looked)})", status=Status.MISSING, clip=clip)
