"""Frozen per-stage configuration, loaded from the declarative presets in pipelines/.

A preset is a YAML mapping of sections (decode, detect, ...) to options. Unknown sections or
options are errors, not silently ignored: a typo in a threshold must not go unnoticed on a
100k-video run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mfhq.config_rules import ConfigError, check_option

__all__ = ["ConfigError", "PipelineConfig", "load_pipeline", "config_from_dict"]


@dataclass(frozen=True)
class DecodeConfig:
    backend: str = "auto"          # auto (decord, then PyAV), decord, pyav, or "module:Class"
    fps: float = 5.0               # frames sampled per second of video
    max_frames: int | None = None  # cap on sampled frames per clip (None: no cap)
    chunk_frames: int = 32         # frames decoded per batch; bounds memory on long clips
    timeout_s: float = 120.0       # the watchdog's bound on one decode call


@dataclass(frozen=True)
class DetectConfig:
    backend: str = "yunet"
    score_threshold: float = 0.7
    nms_threshold: float = 0.3
    max_faces: int = 10
    # The detector sees the frame downscaled to this longer side (px), boxes and points mapped
    # back: YuNet finds faces of ~10-300 px only, and a full 1080p frame costs ~10x more.
    # 0 runs on the full frame. Backends with their own input size (SCRFD) ignore it.
    working_size: int = 640
    # Reuse the faces a source already located (VFHQ's per-frame box + 5 landmarks) instead of
    # running the detector, checking one annotated frame in `verify_every` against it (0: never).
    use_source_annotations: bool = True
    verify_every: int = 10


@dataclass(frozen=True)
class EmbedConfig:
    backend: str = "sface"
    # 1: every face goes through the embedder. k > 1: along a run of sampled frames showing one
    # face that overlaps the previous frame's (box IoU >= track_iou) and looks like it (the NCC of
    # small grey thumbnails of the aligned crops >= track_look), only the run's first face,
    # every k-th and its last are embedded; the faces between two of them reuse the nearer one's
    # embedding when the two agree (cosine >= reuse_similarity), else they are embedded too
    # (a cut to another person in the same place). See mfhq/stages/embed_schedule.py.
    every: int = 1
    track_iou: float = 0.5
    track_look: float = 0.85
    reuse_similarity: float = 0.6


@dataclass(frozen=True)
class IdentityConfig:
    # Cosine similarity above which a face is the clip's own person. SFace's published
    # verification threshold is 0.363; ArcFace's is usually set near 0.3-0.4.
    similarity_threshold: float = 0.363
    # The clip's person is fixed by the largest face in the first frames that have faces.
    anchor_frames: int = 3
    # Track continuity: in a frame where no face clears the threshold (blur, a hard profile),
    # a face that overlaps the person's last kept box by this IoU, at most `track_max_gap`
    # sampled frames later, is kept if its similarity is at least the floor.
    track_iou: float = 0.5
    track_max_gap: int = 2
    track_similarity_floor: float = 0.2


@dataclass(frozen=True)
class AlignConfig:
    template: str = "arcface"      # arcface (5-point, x4 = 448 px) or ffhq (quad, 512 px)
    size: int = 448
    # The least source extent (px) of the aligned crop: below it the crop would be upsampled.
    min_face_px: float = 448.0
    # The largest fraction of the aligned crop that may lie outside the source frame (filled
    # with a constant border); faces above it are dropped with reason out_of_frame.
    max_out_of_frame: float = 0.1
    crop_format: str = "jpg"       # jpg or png
    jpeg_quality: int = 95


@dataclass(frozen=True)
class PoseConfig:
    backend: str = "pnp5"


@dataclass(frozen=True)
class QualityConfig:
    backend: str = "brisque"
    min_quality: float | None = None  # faces below are dropped with reason low_quality


@dataclass(frozen=True)
class ParsingConfig:
    backend: str = "dlib68-hull"


@dataclass(frozen=True)
class SourcesConfig:
    # The datasets a recipe is built from (adapter names, see `mfhq sources`); `mfhq extract
    # --source all` reads those it finds under its root. Which clips are read, not how rows
    # are made: left out of the fingerprint.
    names: list = field(default_factory=list)


def usable_cores() -> int:
    """The CPUs this process may run on: a Slurm job or `taskset` gets its share, not the node's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class RunConfig:
    shard_size: int = 16           # clips per output shard
    workers: int = 1               # worker processes, each with one model load
    clip_timeout_s: float = 1800.0  # bound on one clip's whole processing
    device: str = "cpu"
    executor: str = "local"        # local (worker processes here) | ray (a Ray cluster); see mfhq/executors
    address: str | None = None     # ray: the cluster's address; None starts a local Ray instance
    # Ray's resources per shard task (an actor that loads the models once).
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    # With a cuda device: frames gathered across a shard's clips per model call (0: one clip's chunk).
    batch_frames: int = 64
    # always | never | auto. A worker reads a clip's next chunk in a thread while the models
    # work on the current one (one more chunk in memory). That pays only with a core to spare:
    # on 2 cores, 1 worker went from 0.68 to 0.83-0.93 of decode-only speed, while 2 workers
    # spent 7-15% more CPU with it. auto: on with a GPU, with fewer local workers than usable
    # cores, or with Ray actors of 2+ CPUs (see reads_ahead). Rows do not depend on it.
    decode_ahead: str = "auto"

    def reads_ahead(self, cores: int | None = None) -> bool:
        """Whether workers read ahead under this config, on a machine with `cores` CPUs."""
        if self.decode_ahead != "auto":
            return self.decode_ahead == "always"
        if str(self.device).startswith("cuda"):
            return True  # the models run on the GPU: the worker's core mostly waits
        if self.executor == "ray":
            return self.num_cpus >= 2
        return self.workers < (cores or usable_cores())


@dataclass(frozen=True)
class CurateConfig:
    """cluster-sample, identity merge and split (mfhq/curate/). Defaults follow the paper where
    it says (8 faces per identity, 44 held-out videos); the rest are ours."""
    faces_per_identity: int = 8
    pose_clusters: int = 16        # K of the per-identity pose k-means; above faces_per_identity
    kmeans_iters: int = 10         # Lloyd iterations at most (stops early when labels settle)
    seed: int = 0                  # k-means++ seeding; hashed per face, so chunking cannot change it
    min_quality: float | None = None  # faces below are not usable for sampling
    short_identities: str = "drop"    # fewer usable faces than faces_per_identity: drop | flag
    chunk_faces: int = 1_000_000   # faces per k-means batch (bounds memory; results do not depend on it)
    workers: int = 1               # threads for the k-means (one identity per thread; results do not depend on it)
    merge: str = "merge"           # merge (pool the clips' faces) | dedup (keep the largest clip) | off
    merge_by_video_key: bool = True   # clips of one source video (YouTube id), across sources too
    # Two people can share a video (an interview): a video-key merge also needs this cosine
    # similarity between the clips' mean embeddings. None merges on the key alone.
    video_key_min_similarity: float | None = 0.3
    merge_by_embedding: bool = True
    embedding_similarity: float = 0.6  # cosine of clip mean embeddings at or above which clips merge
    split: str = "videos"          # videos (hold out test_videos source videos) | official
    test_videos: int = 44
    split_seed: int = 0


@dataclass(frozen=True)
class PipelineConfig:
    name: str = "default"
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    parsing: ParsingConfig = field(default_factory=ParsingConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    run: RunConfig = field(default_factory=RunConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of everything that changes what a row contains (not how fast it is made)."""
        content = self.to_dict()
        content.pop("run")
        content.pop("name")
        content.pop("sources")
        content.pop("curate")  # curation runs after extract: its options must not block a resume
        if content["embed"]["every"] == 1:  # no schedule: its options change nothing, and runs
            for option in ("every", "track_iou", "track_look", "reuse_similarity"):  # made before it resume
                content["embed"].pop(option)
        blob = json.dumps(content, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, **sections: Any) -> "PipelineConfig":
        """A copy with some options changed: replace(run={"workers": 2})."""
        changed = {}
        for section, options in sections.items():
            current = getattr(self, section)
            # Command-line overrides obey the preset's ranges (`--workers 0` is refused too).
            changed[section] = _build_section("the command line", section, {**dataclasses.asdict(current), **options})
        return dataclasses.replace(self, **changed)


_SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(PipelineConfig) if f.name != "name"}


def _build_section(origin: str, section: str, options: Any):
    factory = _SECTIONS[section]
    if not isinstance(options, dict):
        raise ConfigError(f"{origin}: section '{section}' must be a mapping, got {type(options).__name__}")
    known = {f.name: f for f in dataclasses.fields(factory)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"{origin}: unknown option(s) {unknown} in section '{section}'; known: {sorted(known)}"
        )
    defaults = factory()
    for key, value in options.items():
        default = getattr(defaults, key)
        expected = type(default)
        if value is not None and default is not None:
            numeric = expected is float and isinstance(value, int)
            # bool is an int to Python, but `workers: yes` is a typo, not 1 worker.
            if isinstance(value, bool) and expected is not bool or not (numeric or isinstance(value, expected)):
                raise ConfigError(f"{origin}: {section}.{key} must be {expected.__name__}, got {value!r}")
        elif value is None and default is not None:
            raise ConfigError(f"{origin}: {section}.{key} must be {expected.__name__}, got null")
        check_option(origin, section, key, value, integer=expected is int or key == "max_frames")
    return factory(**options)


def load_pipeline(path: str | Path | None) -> PipelineConfig:
    """Load a preset: a YAML path or a packaged preset's name; None is `sample` (logged, see mfhq/presets.py)."""
    from mfhq.presets import PresetNotFound, resolve_preset

    try:
        path = resolve_preset(path)
    except PresetNotFound as exc:
        raise ConfigError(str(exc)) from None
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a preset must be a mapping of sections")
    raw = dict(raw)
    name = str(raw.pop("name", path.stem))
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; known: {sorted(_SECTIONS)}")
    sections = {key: _build_section(str(path), key, value) for key, value in raw.items()}
    return PipelineConfig(name=name, **sections)


def config_from_dict(content: dict[str, Any]) -> PipelineConfig:
    """Rebuild a PipelineConfig from to_dict() output (sent to worker processes, stored in runs)."""
    content = dict(content)
    name = content.pop("name", "default")
    return PipelineConfig(name=name, **{key: _build_section("config", key, value) for key, value in content.items()})
