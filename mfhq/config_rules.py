"""The allowed range of every pipeline option, checked where a preset is loaded.

A value out of range (`fps: 0`, `shard_size: -1`, a NaN threshold, an unknown decoder name)
would otherwise run and then blame every video, or write a plan that blocks the right config
later. One message names the file, the option, the value and what is allowed.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mfhq.errors import MfhqError


# The executors by name -> "module:Class", imported only when chosen (mfhq.executors.base), so an
# optional engine's library is needed only by those who use it. The table lives on this floor so
# that a preset's `run.executor` is checked where the preset is loaded, without importing upward.
EXECUTORS: dict[str, str] = {
    "local": "mfhq.executors.local:LocalExecutor",
    "ray": "mfhq.executors.ray:RayExecutor",
}


class ConfigError(MfhqError, ValueError):
    """A pipeline preset that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Range:
    """A finite number in [low, high]; `above` makes the low bound exclusive."""

    low: float | None = None
    high: float | None = None
    above: bool = False
    optional: bool = False  # None is allowed (the option is off)

    def ok(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            text = f"a number from {self.low:g} to {self.high:g}"
        elif self.low is not None:
            text = f"a number {'>' if self.above else '>='} {self.low:g}"
        else:
            text = "a finite number"
        return text + (", or null (off)" if self.optional else "")


@dataclass(frozen=True)
class OneOf:
    choices: tuple[str, ...]
    pattern: str | None = None   # also allowed: a string matching this (e.g. module:Class)
    hint: str = ""

    def ok(self, value) -> bool:
        return value in self.choices or (self.pattern is not None and isinstance(value, str)
                                         and re.fullmatch(self.pattern, value) is not None)

    def __str__(self) -> str:
        return "one of " + ", ".join(self.choices) + (f" or {self.hint}" if self.hint else "")


POSITIVE = Range(0, above=True)
COUNT = Range(1)             # an integer of at least one
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)
COSINE = Range(-1, 1)

RULES: dict[tuple[str, str], Range | OneOf | str] = {
    ("decode", "backend"): OneOf(("auto", "decord", "pyav"), r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", "module:Class"),
    ("decode", "fps"): POSITIVE,
    ("decode", "max_frames"): Range(1, optional=True),
    ("decode", "chunk_frames"): COUNT,
    ("decode", "timeout_s"): POSITIVE,
    ("detect", "score_threshold"): FRACTION,
    ("detect", "nms_threshold"): FRACTION,
    ("detect", "max_faces"): COUNT,
    ("detect", "verify_every"): NON_NEGATIVE,
    ("detect", "working_size"): NON_NEGATIVE,  # 0: detect on the full frame
    ("embed", "every"): COUNT,
    ("embed", "track_iou"): FRACTION,
    ("embed", "track_look"): COSINE,
    ("embed", "reuse_similarity"): COSINE,
    ("identity", "similarity_threshold"): COSINE,
    ("identity", "anchor_frames"): COUNT,
    ("identity", "track_iou"): FRACTION,
    ("identity", "track_max_gap"): NON_NEGATIVE,
    ("identity", "track_similarity_floor"): COSINE,
    ("align", "template"): OneOf(("arcface", "ffhq")),
    ("align", "size"): Range(16),
    ("align", "min_face_px"): NON_NEGATIVE,
    ("align", "max_out_of_frame"): FRACTION,
    ("align", "crop_format"): OneOf(("jpg", "png")),
    ("align", "jpeg_quality"): Range(0, 100),
    ("quality", "min_quality"): Range(0, 1, optional=True),
    ("run", "shard_size"): COUNT,
    ("run", "workers"): COUNT,
    ("run", "clip_timeout_s"): POSITIVE,
    ("run", "device"): OneOf(("cpu", "cuda"), r"cuda:\d+", "cuda:N"),
    ("run", "decode_ahead"): OneOf(("auto", "always", "never")),
    ("run", "executor"): "executors",  # a name in EXECUTORS (read when checked: one may be registered at run time)
    ("run", "num_cpus"): POSITIVE,
    ("run", "num_gpus"): NON_NEGATIVE,
    ("run", "batch_frames"): NON_NEGATIVE,
    ("curate", "faces_per_identity"): COUNT,
    ("curate", "pose_clusters"): COUNT,
    ("curate", "kmeans_iters"): COUNT,
    ("curate", "min_quality"): Range(0, 1, optional=True),
    ("curate", "short_identities"): OneOf(("drop", "flag")),
    ("curate", "chunk_faces"): COUNT,
    ("curate", "workers"): COUNT,
    ("curate", "merge"): OneOf(("merge", "dedup", "off")),
    ("curate", "video_key_min_similarity"): Range(-1, 1, optional=True),
    ("curate", "embedding_similarity"): COSINE,
    ("curate", "split"): OneOf(("videos", "official")),
    ("curate", "test_videos"): NON_NEGATIVE,
}


def check_option(origin: str, section: str, key: str, value, integer: bool = False) -> None:
    """Raise ConfigError unless value is allowed for section.key; `integer`: the option counts
    something, so 2.5 is refused too."""
    rule = RULES.get((section, key))
    if rule == "executors":  # one registered at run time is allowed too
        rule = OneOf(tuple(sorted(EXECUTORS)))
    if rule is None or (value is None and isinstance(rule, Range) and rule.optional):
        return
    whole = not integer or isinstance(value, int)
    if not (whole and rule.ok(value)):
        allowed = str(rule)
        if integer and isinstance(rule, Range):
            allowed = allowed.replace("a number", "an integer")
        raise ConfigError(f"{origin}: {section}.{key} is {value!r}; allowed: {allowed}")
