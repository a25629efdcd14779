"""Frozen per-stage configuration, loaded from the declarative presets in pipelines/.

The sections and their options (defaults, docs, ranges) are in mfhq/config_sections.py; this
module assembles them into a PipelineConfig, loads presets and fingerprints what changes rows.
A preset is a YAML mapping of sections (decode, detect, ...) to options. Unknown sections or
options are errors, not silently ignored: a typo in a threshold must not go unnoticed on a
100k-video run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mfhq.config_rules import ConfigError, check_option
from mfhq.config_sections import (AlignConfig, CurateConfig, DecodeConfig, DetectConfig, EmbedConfig,
                                  IdentityConfig, ParsingConfig, PoseConfig, QualityConfig, RunConfig,
                                  SourcesConfig, usable_cores)

__all__ = ["ConfigError", "PipelineConfig", "load_pipeline", "config_from_dict", "usable_cores",
           "DecodeConfig", "DetectConfig", "EmbedConfig", "IdentityConfig", "AlignConfig", "PoseConfig",
           "QualityConfig", "ParsingConfig", "SourcesConfig", "RunConfig", "CurateConfig"]

# Sections that change how a run is made or what is read, never what a row contains: left out of
# the fingerprint, so changing them never blocks a resume. (Curation runs after extract.)
NOT_FINGERPRINTED = ("run", "name", "sources", "curate")
# The embedding schedule's options change nothing while `every` is 1: left out then, so runs made
# before the schedule existed still resume.
SCHEDULE_OPTIONS = ("every", "track_iou", "track_look", "reuse_similarity")
# Options of the decode section that change how a row is made, not what it holds, left out: the
# watchdog's bound (it decides only which clips end as `timeout` rows, the transient status that
# `--retry timeout` redoes, typically under a longer bound; run.clip_timeout_s is not fingerprinted
# either) and the chunk size (a clip's state, and with embed.every > 1 its embedding schedule, run
# across its chunks: rows checked equal for chunks of 1, 2, 5 and 16 frames). An earlier mfhq
# fingerprinted them: a run it made resumes all the same (mfhq.plan.earlier_fingerprint), except
# one with embed.every > 1, whose schedule started over at each chunk (SCHEDULE_PER_CHUNK).
HOW_NOT_WHAT = "decode.timeout_s and decode.chunk_frames"
SCHEDULE_PER_CHUNK = ("an earlier mfhq made it with embed.every > 1, whose embedding schedule started over at each "
                      "decode chunk: its rows' embeddings differ from this version's, which plans each clip whole")


@dataclass(frozen=True)
class PipelineConfig:
    """A whole preset: its name and one frozen section per stage."""
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
        return fingerprint_of(self.to_dict())

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
        check_option(origin, section, known[key], value)
    return factory(**options)


def fingerprint_of(content: dict[str, Any]) -> str:
    """The fingerprint of a to_dict() output, or of the `config` a run.json recorded."""
    blob = json.dumps(fingerprinted(content), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def fingerprinted(content: dict[str, Any]) -> dict[str, Any]:
    """The part of a to_dict() output (or a run.json's `config`) that the fingerprint covers."""
    content = {k: dict(v) if isinstance(v, dict) else v for k, v in content.items() if k not in NOT_FINGERPRINTED}
    one_by_one = (content.get("embed") or {}).get("every", 1) == 1  # runs from before the schedule: 1
    if one_by_one and isinstance(content.get("embed"), dict):
        for option in SCHEDULE_OPTIONS:
            content["embed"].pop(option, None)
    if isinstance(content.get("decode"), dict):
        for option in ("timeout_s", "chunk_frames"):  # HOW_NOT_WHAT
            content["decode"].pop(option, None)
    if content.get("align", {}).get("crops") == "extract":  # the one pass: runs made before the option resume
        content["align"].pop("crops")
    return content


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
