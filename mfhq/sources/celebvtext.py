"""CelebV-Text: `celebvtext_info.json` plus the videos.

The shipped file is a flat dict keyed by file name (`{ytb_id}_{n}_{k}.mp4`); older revisions
wrapped it in `clips` or split it into `clips_set1` / `clips_set2` (set 2 re-uses set 1's
people). Boxes are normalised in the shipped file but integer pixels in the README: both are
accepted. Keys are not unique (segment, box) pairs: two keys can share both, and stay two clips.
"""
from __future__ import annotations

from mfhq.records import Clip
from mfhq.sources.base import register_source
from mfhq.sources.celebv import CelebVSource


@register_source
class CelebVTextSource(CelebVSource):
    name = "celebvtext"
    dirnames = ("celebvtext", "CelebV-Text")
    info_file = "celebvtext_info.json"
    cut_dirs = ("processed", "clips", "videos", ".")
    raw_dirs = ("raw", "downloaded")
    pixel_boxes = True
    expects = ("celebvtext_info.json (flat, `clips` or `clips_set1/2` layout; normalised or pixel boxes); "
               "clips as processed/<key> (or clips/, videos/), or raw YouTube videos as raw/<ytb_id>.mp4")

    def clip_id(self, key: str) -> str:
        return key[:-4] if key.endswith(".mp4") else key

    def cut_names(self, clip: Clip) -> list[str]:
        # The fork keeps the key as the file name; the official script appends ".mp4" again.
        return [f"{clip.clip_id}.mp4", f"{clip.clip_id}.mp4.mp4"]
