"""Presets for tests: a bundled preset with a few keys changed, written to a file for `--pipeline`.

Keys are dotted (`decode.timeout_s`) and each must already exist in the base preset, so a test
whose key the preset no longer has fails here instead of quietly testing the base preset.
"""
from __future__ import annotations

from pathlib import Path

import yaml


def write_preset(path: Path, changes: dict[str, object], *, base: Path) -> Path:
    """`base` with `changes` set, written to `path`; a section or key missing from `base` is a KeyError."""
    preset = yaml.safe_load(Path(base).read_text())
    for key, value in changes.items():
        *sections, name = key.split(".")
        table, where = preset, "the preset"
        for part in sections:
            table = _entry(table, part, key, where, base)
            where = f"section {part!r}"
        _entry(table, name, key, where, base)
        table[name] = value
    Path(path).write_text(yaml.safe_dump(preset, sort_keys=False))
    return Path(path)


def _entry(table: object, part: str, key: str, where: str, base: Path) -> object:
    if not isinstance(table, dict) or part not in table:
        have = ", ".join(map(str, table)) if isinstance(table, dict) else "no keys"
        raise KeyError(f"{base}: no {key!r} to set ({where} has {have})")
    return table[part]
