"""An unknown backend name is a clear error listing the alternatives, in code and through extract."""
from __future__ import annotations

import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.models import BackendError, create_backend
from presets import write_preset


def test_unknown_backend_names_the_alternatives():
    with pytest.raises(BackendError, match="unknown detector backend 'scrfd-typo'.*yunet"):
        create_backend("detector", "scrfd-typo")


def test_extract_with_a_nonexistent_backend_fails_clearly(tmp_path):
    preset = tmp_path / "typo.yaml"
    write_preset(preset, {"pose.backend": "6d-repnet"}, base=SAMPLE_PRESET)
    (tmp_path / "videos").mkdir()
    result = run_cli("extract", "--root", str(tmp_path / "videos"), "--out", str(tmp_path / "run"),
                     "--pipeline", str(preset), check=False)
    assert result.returncode == 2
    assert "unknown pose backend '6d-repnet'" in result.stderr and "6drepnet" in result.stderr
