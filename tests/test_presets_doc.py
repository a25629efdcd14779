"""docs/presets.md is rendered from the config's own fields: a changed option needs a regenerated doc."""
from __future__ import annotations

from pathlib import Path

from mfhq.presets_doc import COMMAND, render

REPO = Path(__file__).resolve().parents[1]


def test_committed_presets_doc_is_what_the_generator_writes():
    committed = (REPO / "docs" / "presets.md").read_text()
    assert committed == render(), f"docs/presets.md is out of date: run `{COMMAND}` from the repository root"


def test_every_option_is_documented():
    import dataclasses

    from mfhq.config import PipelineConfig

    for section in dataclasses.fields(PipelineConfig):
        if section.name == "name":
            continue
        for option in dataclasses.fields(type(getattr(PipelineConfig(), section.name))):
            assert option.metadata.get("doc"), f"{section.name}.{option.name} has no doc in its field's metadata"
