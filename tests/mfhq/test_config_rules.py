"""The config's value rules: an out-of-range value names the file, key, value and range, from a
preset or from the command line; edge values still load."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from mfhq.config import ConfigError, PipelineConfig, config_from_dict, load_pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text,needle", [
    ("decode:\n  fps: 0\n", "decode.fps is 0; allowed: a number > 0"),
    ("decode:\n  fps: -5\n", "decode.fps is -5; allowed: a number > 0"),
    ("decode:\n  fps: .inf\n", "decode.fps is inf; allowed: a number > 0"),
    ("decode:\n  backend: decrod\n", "decode.backend is 'decrod'; allowed: one of auto, decord, pyav or module:Class"),
    ("decode:\n  timeout_s: -1\n", "decode.timeout_s is -1; allowed: a number > 0"),
    ("decode:\n  max_frames: 0\n", "decode.max_frames is 0; allowed: an integer >= 1, or null (off)"),
    ("decode:\n  chunk_frames: 0\n", "decode.chunk_frames is 0; allowed: an integer >= 1"),
    ("run:\n  shard_size: 0\n", "run.shard_size is 0; allowed: an integer >= 1"),
    ("run:\n  shard_size: -3\n", "run.shard_size is -3; allowed: an integer >= 1"),
    ("run:\n  clip_timeout_s: -10\n", "run.clip_timeout_s is -10; allowed: a number > 0"),
    ("run:\n  workers: true\n", "run.workers must be int, got True"),
    ("run:\n  device: banana\n", "run.device is 'banana'; allowed: one of cpu, cuda or cuda:N"),
    ("detect:\n  score_threshold: .nan\n", "detect.score_threshold is nan; allowed: a number from 0 to 1"),
    ("identity:\n  similarity_threshold: .nan\n", "identity.similarity_threshold is nan; allowed: a number from -1 to 1"),
    ("align:\n  size: -448\n", "align.size is -448; allowed: an integer >= 16"),
    ("align:\n  min_face_px: -1\n", "align.min_face_px is -1; allowed: a number >= 0"),
    ("align:\n  max_out_of_frame: 1.5\n", "align.max_out_of_frame is 1.5; allowed: a number from 0 to 1"),
    ("align:\n  jpeg_quality: 101\n", "align.jpeg_quality is 101; allowed: an integer from 0 to 100"),
    ("quality:\n  min_quality: .nan\n", "quality.min_quality is nan; allowed: a number from 0 to 1, or null (off)"),
    ("curate:\n  faces_per_identity: 0\n", "curate.faces_per_identity is 0; allowed: an integer >= 1"),
    ("curate:\n  merge: sometimes\n", "curate.merge is 'sometimes'; allowed: one of merge, dedup, off"),
    ("decode:\n  fps:\n", "decode.fps must be float, got null"),
    ("detect:\n  working_size: -1\n", "detect.working_size is -1; allowed: an integer >= 0"),
    ("run:\n  executor: spark\n", "run.executor is 'spark'; allowed: one of local, ray"),
    ("run:\n  num_cpus: 0\n", "run.num_cpus is 0; allowed: a number > 0"),
    ("run:\n  batch_frames: -8\n", "run.batch_frames is -8; allowed: an integer >= 0"),
])
def test_out_of_range_values_name_the_file_key_value_and_range(tmp_path, text, needle):
    preset = tmp_path / "bad.yaml"
    preset.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_pipeline(preset)
    assert str(caught.value) == f"{preset}: {needle}"


def test_valid_presets_and_edge_values_still_load(tmp_path):
    for name in ("sample.yaml", "paper.yaml"):
        cfg = load_pipeline(REPO / "pipelines" / name)
        assert config_from_dict(cfg.to_dict()) == cfg  # what workers rebuild passes the same checks
    preset = tmp_path / "edge.yaml"
    preset.write_text("decode:\n  fps: 1\n  backend: my_pkg.readers:Reader\n  max_frames: null\n"
                      "detect:\n  verify_every: 0\nalign:\n  min_face_px: 0\n  max_out_of_frame: 0\n"
                      "quality:\n  min_quality: 1\nrun:\n  device: cuda:3\n")
    cfg = load_pipeline(preset)
    assert cfg.decode.fps == 1.0 and cfg.run.device == "cuda:3" and cfg.align.max_out_of_frame == 0


def test_command_line_overrides_obey_the_same_ranges():
    with pytest.raises(ConfigError, match=r"the command line: run.workers is 0; allowed: an integer >= 1"):
        PipelineConfig().replace(run={"workers": 0})
    assert PipelineConfig().replace(run={"workers": 3}).run.workers == 3


def test_nan_is_never_in_range():
    from mfhq.config_rules import FRACTION, POSITIVE

    assert not FRACTION.ok(math.nan) and not POSITIVE.ok(math.inf) and not POSITIVE.ok(True)
