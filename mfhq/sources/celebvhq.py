"""CelebV-HQ: `celebvhq_info.json` (a `clips` dict keyed by clip key) plus the videos.

Clip keys are `{ytb_id}_{n}` or `{ytb_id}_{n}_{m}`, and YouTube ids may hold '_' themselves,
so the video key comes from the `ytb_id` field, never from splitting the key. The JSON has no
identity field; `ytb_id` is the only grouping key, and there is no official split.
"""
from __future__ import annotations

from mfhq.sources.base import register_source
from mfhq.sources.celebv import CelebVSource


@register_source
class CelebVHQSource(CelebVSource):
    name = "celebvhq"
    dirnames = ("celebvhq", "CelebV-HQ")
    info_file = "celebvhq_info.json"
    # download_and_process.py writes raw downloads to raw/ and cut clips to processed/.
    cut_dirs = ("processed", "clips", "35666", ".")
    raw_dirs = ("raw", "videos")
    expects = ("celebvhq_info.json; clips as processed/<clip key>.mp4 (or clips/, 35666/), "
               "or raw YouTube videos as raw/<ytb_id>.mp4 (or videos/)")
