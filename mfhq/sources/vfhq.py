"""VFHQ: one meta file per clip (from the official meta_info.zip) plus the videos.

A meta file is named `Clip+{ytid}+P{pid}+C{n}+F{start}-{end}.txt` and holds header lines
(`Video ID`, `H`, `W`, `FPS`; the value is the last token), one line per frame
`FRAME INDEX X0 Y0 W H x1 y1 ... x5 y5` (top-left + size, 5 landmarks, pixels of the H x W
frame) and a last line `CROP x0 y0 x1 y1`. The widely copied parser reads source frames
start+1 .. end-1: the F bounds are exclusive. The per-frame boxes and landmarks are reused in
place of the detector (see mfhq/stages/detect.py). The split comes from the meta file's
folder (train/ or test/, the official layout) or from id lists `id_train.txt` / `id_test.txt` at
the root (EFHQ's, checked against those folders, so they agree on real files). Where they
disagree, or both lists name a clip, it is a `bad_metadata` row: which side is wrong cannot be
told, and under `split: official` a test clip taken as train leaks its identity into training.
A clip's video is, first found first: a cut clip under its whole name (clips/, processed/), the
raw download (full resolution, exact frames), or yunyu/vfhq-downloader's cut (cropped_videos/,
named without the F range: mfhq/sources/vfhq_cuts.py). Where two meta files share that shorter
name, the cut is one of them (the downloader skips a name it already wrote) and which cannot be
told: each is a `bad_metadata` row.
"""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Iterator

from mfhq.records import Clip, FrameAnnotations, Status
from mfhq.sources.base import Source, SourceError, SourceProblem, problem_id, register_source, safe_clip_id
from mfhq.sources.vfhq_cuts import CUT_DIRS, DOWNLOADER_DIRS, as_cut, as_downloader_cut, downloader_name

_NAME = re.compile(r"^Clip\+(?P<ytid>[^+]{11})\+P(?P<pid>\d+)\+C(?P<clip>\d+)\+F(?P<start>\d+)-(?P<end>\d+)$")
_IMAGE = re.compile(r"\.(png|jpg|jpeg)$", re.IGNORECASE)
_HEADERS = {"H", "W", "FPS", "CROP", "Video", "FRAME"}
META_DIRS = ("meta_info", "annotations")
# Raw downloads: the public downloaders keep yt-dlp's own file name `<ytid>.<ext>`, and its
# "bestvideo" is mostly WebM (VP9) on YouTube. EFHQ's download_vfhq.py writes videos/<train|test>/,
# yunyu/vfhq-downloader data/youtube_videos/ (trying .mp4, .webm, .mkv), relative to its checkout.
RAW_DIRS = ("videos", "raw", "youtube_videos", "data/youtube_videos")
RAW_EXTS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".flv")


def _numbers(tokens: list[str], where: str) -> list[float]:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise ValueError(f"{where}: expected numbers, got {' '.join(tokens)[:80]!r}") from None
    # float() also reads 'inf' and 'nan': no frame index, landmark or size can be either.
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where}: expected finite numbers, got {' '.join(tokens)[:80]!r}")
    return values


def parse_meta(path: Path) -> tuple[dict, FrameAnnotations]:
    """Header values and the per-frame faces; ValueError names the file and line."""
    header: dict = {}
    header_at: dict[str, str] = {}  # key -> file:line, so that a bad value is found in the file
    frames, boxes, marks = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        # The header separator is unverified (": ", a tab, ...): colons count as spaces.
        tokens, where = line.replace(":", " ").split(), f"{path}:{number}"
        if not tokens:
            continue
        key = tokens[0]
        if key in _HEADERS:
            if key == "CROP":
                values = _numbers(tokens[-4:], where)
                if len(tokens) < 5:
                    raise ValueError(f"{where}: CROP needs 4 values x0 y0 x1 y1")
                header["CROP"] = tuple(values)
                header_at["CROP"] = where
            elif key in ("H", "W", "FPS"):
                header[key] = _numbers(tokens[-1:], where)[0]
                header_at[key] = where
                if header[key] <= 0:
                    raise ValueError(f"{where}: {key} is {header[key]:g}; it must be positive")
            elif key == "Video":
                header["Video"] = tokens[-1]
            continue
        # The frame id names an extracted image: tolerate it written as a file name.
        values = _numbers([_IMAGE.sub("", tokens[0])] + tokens[1:], where)
        if len(values) != 16:
            raise ValueError(f"{where}: a frame line needs 16 values (FRAME INDEX X0 Y0 W H + 5 landmarks), got {len(values)}")
        x, y, w, h = values[2:6]
        if w <= 0 or h <= 0:
            raise ValueError(f"{where}: empty face box W={w} H={h}")
        if values[0] < 0 or values[0] != int(values[0]):
            raise ValueError(f"{where}: frame index {tokens[0]!r} is not a whole number >= 0")
        frames.append(int(values[0]))
        boxes.append((x, y, x + w, y + h))
        marks.append(tuple(values[6:]))
    for key in ("H", "W", "CROP"):
        if key not in header:
            raise ValueError(f"{path}: no {key} line (a truncated meta file?)")
    x0, y0, x1, y1 = header["CROP"]
    if not (0 <= x0 < x1 <= header["W"] and 0 <= y0 < y1 <= header["H"]):
        raise ValueError(f"{header_at['CROP']}: CROP {header['CROP']} lies outside the "
                         f"{int(header['H'])}x{int(header['W'])} frame")
    return header, FrameAnnotations(tuple(frames), tuple(boxes), tuple(marks))


@register_source
class VFHQSource(Source):
    name = "vfhq"
    dirnames = ("vfhq", "VFHQ")
    expects = ("meta_info/[train|test/]Clip+<ytid>+P<pid>+C<n>+F<start>-<end>.txt (or annotations/); "
               "raw videos as videos/[train|test/]<ytid>.mp4 (or .webm, .mkv, ...; or raw/, [data/]youtube_videos/), "
               "or cut clips as [clips|processed]/<clip name>.mp4 or [data/]cropped_videos/Clip+<ytid>+P<pid>+C<n>.mp4; "
               "optional id_train.txt / id_test.txt")

    def scan(self) -> Iterator[Clip | SourceProblem]:
        metas = sorted(p for d in META_DIRS if (self.root / d).is_dir() for p in (self.root / d).rglob("*.txt"))
        if not metas:
            raise SourceError(f"{self.name}: no meta files under {self.root}/meta_info or {self.root}/annotations")
        splits = self._id_lists()
        # The downloader's cut name -> the clip names that share it (a cut of several is ambiguous).
        sharing: dict[str, set[str]] = {}
        for path in metas:
            if _NAME.match(path.stem):
                sharing.setdefault(downloader_name(path.stem), set()).add(path.stem)
        seen: set[str] = set()
        for path in metas:
            try:
                clip = self._clip(path, splits)
            except ValueError as exc:  # the messages name the file and line
                yield self.problem(path.stem, str(exc))
                continue
            except OSError as exc:  # a dangling link, a folder named *.txt, no permission
                yield self.problem(path.stem, f"{path}: cannot read the meta file ({exc.strerror or exc})")
                continue
            if clip.clip_id in seen:
                yield self.problem(f"{clip.clip_id}.duplicate", f"{path}: clip {clip.clip_id} has two meta files")
                continue
            seen.add(clip.clip_id)
            yield self._locate(clip, path, sharing[downloader_name(clip.clip_id)])
        yield from self._unlisted(splits, {p.stem for p in metas})

    def _id_lists(self) -> dict[str, list[tuple[str, str]]]:
        """Clip name -> every (split, where an id list names it): a name in both lists keeps both."""
        splits: dict[str, list[tuple[str, str]]] = {}
        for split in ("train", "test"):
            path = self.root / f"id_{split}.txt"
            if path.is_file():
                for number, line in enumerate(path.read_text().splitlines(), start=1):
                    if line.strip():
                        splits.setdefault(line.strip(), []).append((split, f"{path}:{number}"))
        return splits

    def _unlisted(self, splits: dict[str, list[tuple[str, str]]], stems: set[str]) -> Iterator[SourceProblem]:
        """A name the id lists hold without a meta file is a clip that cannot be made: a row says
        so (the lists name official meta files, so the meta folder is incomplete)."""
        for name, listed in splits.items():
            if name not in stems:
                match = _NAME.match(name)
                split = listed[0][0] if len({s for s, _ in listed}) == 1 else None  # both lists: unknown
                yield SourceProblem(self.name, problem_id(name), Status.MISSING,
                                    f"{', '.join(w for _, w in listed)}: clip {name!r} is listed, but no meta file "
                                    f"{name}.txt is under {self.root}/{' or '.join(META_DIRS)}",
                                    match["ytid"] if match else None, split)

    def _clip(self, path: Path, splits: dict[str, list[tuple[str, str]]]) -> Clip:
        match = _NAME.match(path.stem)
        if not match:
            raise ValueError(f"{path}: the name is not Clip+<11-char ytid>+P<pid>+C<n>+F<start>-<end>.txt")
        clip_id = safe_clip_id(path.stem)
        first, last = int(match["start"]) + 1, int(match["end"]) - 1  # F bounds are exclusive
        if last < first:
            raise ValueError(f"{path}: empty or reversed frame range F{match['start']}-{match['end']}")
        header, annotations = parse_meta(path)
        if header.get("Video", match["ytid"]) != match["ytid"]:
            raise ValueError(f"{path}: Video ID {header['Video']!r} differs from the name's {match['ytid']!r}")
        width, height = header["W"], header["H"]
        x0, y0, x1, y1 = header["CROP"]
        split = _split(path, splits.get(clip_id, []))
        return Clip(
            source=self.name, clip_id=clip_id, video_path=Path(), video_key=match["ytid"], split=split,
            start_frame=first, end_frame=last, person_box=(x0, y0, x1, y1), box_space=(width, height),
            annotations=annotations or None, frame_fps=header.get("FPS"),  # frame numbers count at it
            person_key=f"P{int(match['pid'])}",  # the person index within the video: the only identity key
        )

    def _locate(self, clip: Clip, meta: Path, sharing: set[str]) -> Clip | SourceProblem:
        cut = self.first_file(CUT_DIRS, f"{clip.clip_id}.mp4")
        if cut is not None:
            return as_cut(clip, cut)
        folders = RAW_DIRS + ((f"videos/{clip.split}",) if clip.split else ())
        for ext in RAW_EXTS:
            raw = self.first_file(folders, f"{clip.video_key}{ext}")
            if raw is not None:
                return dataclasses.replace(clip, video_path=raw, extra={**clip.extra, "layout": "raw"})
        short = f"{downloader_name(clip.clip_id)}.mp4"
        cut = self.first_file(DOWNLOADER_DIRS, short)
        if cut is not None and len(sharing) > 1:
            others = ", ".join(f"{name}.txt" for name in sorted(sharing - {clip.clip_id}))
            return self.problem(clip.clip_id, f"{meta}: the cut clip {cut} has no frame range in its name and "
                                              f"could be this clip or {others} (yunyu/vfhq-downloader writes one of "
                                              f"them and skips the others): add the raw download {clip.video_key}.mp4 "
                                              f"(or .webm, .mkv) or keep only the meta file of the clip it was cut from",
                                clip=clip)
        if cut is not None:
            return as_downloader_cut(clip, cut)
        exts = ",".join(e[1:] for e in RAW_EXTS)
        return self.problem(clip.clip_id, f"{meta}: no video under {self.root}: neither the cut clip {clip.clip_id}.mp4 in "
                                          f"{', '.join(f'{d}/' for d in CUT_DIRS)} nor the download {clip.video_key}.{{{exts}}} "
                                          f"in {', '.join(f'{d}/' for d in folders)} nor the cut {short} in "
                                          f"{', '.join(f'{d}/' for d in DOWNLOADER_DIRS)}", status=Status.MISSING, clip=clip)


def _split(path: Path, listed: list[tuple[str, str]]) -> str | None:
    """The clip's split from its folder and the id lists' lines naming it; ValueError (a
    `bad_metadata` row) naming the file and every line where they contradict each other."""
    folder = path.parent.name if path.parent.name in ("train", "test") else None
    said = {split for split, _ in listed} | ({folder} if folder else set())
    if len(said) > 1:
        lines = "; ".join(f"{where} lists it as {split}" for split, where in listed)
        where = f"it sits in {folder}/, but " if folder else ""
        raise ValueError(f"{path}: contradictory split: {where}{lines}; fix the folder or the list "
                         f"(under `split: official` a test clip taken as train would leak into training)")
    return said.pop() if said else None
