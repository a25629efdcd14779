"""The repository's docs/manifests.md is the generated dataset card (without counts)."""
from __future__ import annotations

from pathlib import Path

from mfhq.manifest.card import render_card


def test_repository_card_is_the_generated_card():
    # docs/manifests.md documents the schema; it must be what cluster-sample writes, less the counts
    assert (Path(__file__).resolve().parents[3] / "docs" / "manifests.md").read_text() == render_card()
