"""Pipeline presets by name: the YAML files in pipelines/ ship inside the package.

`--pipeline sample` and `--pipeline paper` work after a plain `pip install mfhq` (the files are
package data under mfhq/pipelines/, which in the source tree links to the top-level pipelines/
folder, so `make demo` and a path such as `pipelines/sample.yaml` keep working). A value that
names an existing file is a path; otherwise it must be a packaged preset's name.

No hidden default: a command given no `--pipeline` uses the packaged `sample` preset and says
so in a log line, instead of falling back on option defaults that no preset file shows.
"""
from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from mfhq.errors import MfhqError

log = logging.getLogger("mfhq")

DEFAULT_PRESET = "sample"


class PresetNotFound(MfhqError, ValueError):
    """A --pipeline value that is neither a file nor a packaged preset's name."""


def packaged() -> dict[str, Path]:
    """Name -> file of every preset shipped in the package."""
    folder = resources.files("mfhq") / "pipelines"
    out = {}
    for item in folder.iterdir() if folder.is_dir() else ():
        if item.name.endswith((".yaml", ".yml")):
            # mfhq is a regular (unzipped) package, so its resources are real files.
            out[item.name.rsplit(".", 1)[0]] = Path(str(item))
    return dict(sorted(out.items()))


def resolve_preset(value: str | Path | None) -> Path:
    """The YAML file a --pipeline value means (see the module docstring)."""
    presets = packaged()
    if value is None:
        path = presets.get(DEFAULT_PRESET)
        if path is None:
            raise PresetNotFound(f"no --pipeline given and the packaged '{DEFAULT_PRESET}' preset is missing "
                                 f"from this install; give --pipeline PATH")
        log.info("no --pipeline given: using the packaged preset '%s' (%s); presets: %s",
                 DEFAULT_PRESET, path, ", ".join(presets))
        return path
    path = Path(value)
    if path.is_file():
        return path
    name = str(value)
    if name in presets:
        return presets[name]
    stem = name[:-5] if name.endswith(".yaml") else name
    hint = f" (did you mean --pipeline {stem}?)" if stem in presets and stem != name else ""
    raise PresetNotFound(f"pipeline preset not found: {value}{hint}; give a YAML file or one of the "
                         f"packaged presets: {', '.join(presets) or 'none installed'}")
