"""write_preset sets keys the base preset has and refuses a section or key it lacks."""
from __future__ import annotations

import re

import pytest
import yaml

from conftest import SAMPLE_PRESET
from mfhq.config import load_pipeline
from presets import write_preset


def test_the_keys_are_set_and_the_rest_is_the_base(tmp_path):
    preset = write_preset(tmp_path / "p.yaml", {"decode.timeout_s": 3, "run.workers": 1}, base=SAMPLE_PRESET)
    expected = yaml.safe_load(SAMPLE_PRESET.read_text())
    expected["decode"]["timeout_s"], expected["run"]["workers"] = 3, 1
    assert yaml.safe_load(preset.read_text()) == expected
    cfg = load_pipeline(preset)
    assert (cfg.decode.timeout_s, cfg.run.workers, cfg.run.clip_timeout_s) == (3, 1, 600)


@pytest.mark.parametrize("key, needle", [
    ("decode.timeout", "no 'decode.timeout' to set (section 'decode' has backend, fps, chunk_frames, timeout_s)"),
    ("decoder.fps", "no 'decoder.fps' to set (the preset has name, decode, detect,"),
    ("name.first", "no 'name.first' to set (section 'name' has no keys)"),
])
def test_a_section_or_key_the_base_lacks_is_refused(tmp_path, key, needle):
    with pytest.raises(KeyError, match=re.escape(f"{SAMPLE_PRESET}: {needle}")):
        write_preset(tmp_path / "p.yaml", {key: 1}, base=SAMPLE_PRESET)
    assert not (tmp_path / "p.yaml").exists()
