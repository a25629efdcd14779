"""Presets load into a checked config: the bundled ones parse, and a bad preset names the file and
the problem."""
from __future__ import annotations

from pathlib import Path

import pytest

from mfhq.config import ConfigError, load_pipeline

REPO = Path(__file__).resolve().parents[2]


def test_sample_preset_loads():
    cfg = load_pipeline(REPO / "pipelines" / "sample.yaml")
    assert cfg.detect.backend == "yunet-dlib68" and cfg.align.size == 448


@pytest.mark.parametrize("text,needle", [
    ("align:\n  min_face: 3\n", "unknown option(s) ['min_face'] in section 'align'"),
    ("aling:\n  size: 3\n", "unknown section(s) ['aling']"),
    ("decode:\n  fps: fast\n", "decode.fps must be float"),
    ("decode: [1, 2\n", "not valid YAML"),
])
def test_bad_presets_name_the_file_and_the_problem(tmp_path, text, needle):
    preset = tmp_path / "bad.yaml"
    preset.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_pipeline(preset)
    assert str(preset) in str(caught.value) and needle in str(caught.value)


def test_a_preset_naming_a_missing_backend_fails_at_setup(tmp_path):
    from mfhq.models import BackendError
    from mfhq.worker.clip import ClipProcessor

    preset = tmp_path / "p.yaml"
    preset.write_text("quality:\n  backend: topiq-typo\n")
    with pytest.raises(BackendError, match="unknown quality backend 'topiq-typo'"):
        ClipProcessor(load_pipeline(preset), tmp_path)


def test_paper_preset_names_the_paper_sources_models_and_thresholds():
    from mfhq.config import load_pipeline
    from mfhq.sources import source_names

    cfg = load_pipeline(Path(__file__).resolve().parents[2] / "pipelines" / "paper.yaml")
    assert sorted(cfg.sources.names) == ["celebvhq", "celebvtext", "talkinghead1kh", "vfhq"]
    assert set(cfg.sources.names) <= set(source_names())
    assert (cfg.detect.backend, cfg.embed.backend, cfg.pose.backend, cfg.quality.backend, cfg.parsing.backend) == (
        "scrfd", "arcface", "6drepnet", "topiq-nr-face", "facexlib-parsenet")
    assert (cfg.align.template, cfg.align.size, cfg.align.min_face_px) == ("arcface", 448, 448)
    assert cfg.detect.use_source_annotations and cfg.detect.verify_every > 0
