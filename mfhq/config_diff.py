"""Which options differ between the config a run was made with and the one given now.

A resume under another config is refused (its rows would mix two configs); the refusal names
each option that differs, with both values, instead of two fingerprints nobody can read.
"""
from __future__ import annotations

import json
from typing import Any

from mfhq.config import PipelineConfig, fingerprinted

_ABSENT = object()


def _flat(content: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for section, options in content.items():
        if isinstance(options, dict):
            out.update({f"{section}.{name}": value for name, value in options.items()})
        else:
            out[section] = options
    return out


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)


def config_differences(recorded: dict[str, Any], cfg: PipelineConfig) -> list[str]:
    """'section.option: A in the run, B now' for each fingerprinted option that differs."""
    before = _flat(fingerprinted(recorded or {}))
    # Through JSON, as run.json stores it: tuples and lists compare equal.
    now = _flat(fingerprinted(json.loads(json.dumps(cfg.to_dict()))))
    lines = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key, _ABSENT), now.get(key, _ABSENT)
        if old != new:
            lines.append(f"{key}: {_show(old)} in the run, {_show(new)} now")
    return lines
