"""Fixtures of the curation tests."""
from __future__ import annotations

import pytest

from mfhq.curate import pairs


@pytest.fixture(params=["numpy", "torch"])
def pair_arithmetic(request, monkeypatch) -> str:
    """The merge's pair search in torch from the first clip, or in numpy as an install without torch does."""
    if request.param == "torch":
        pytest.importorskip("torch")
        monkeypatch.setattr(pairs, "TORCH_FROM", 0)
    else:
        monkeypatch.setattr(pairs, "_torch", lambda: None)
    return request.param
