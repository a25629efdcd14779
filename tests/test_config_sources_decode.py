"""Presets, source ids and decoding."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mfhq.config import ConfigError, DecodeConfig, load_pipeline
from mfhq.decode import ClipDecoder, DecordReader, PyAVReader, VideoInfo, sample_indices
from mfhq.manifest.io import SchemaVersionError, atomic_write_table, read_table
from mfhq.records import FACE_SCHEMA
from mfhq.sources import get_source
from mfhq.sources.base import SourceError, safe_clip_id

REPO = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize("bad", ["../escape", "a/../../b", "/abs/path", "a//b", "", "a\\b", "a b"])
def test_unsafe_clip_ids_are_refused(bad):
    with pytest.raises(ValueError):
        safe_clip_id(bad)


def test_safe_clip_ids_pass():
    assert safe_clip_id("M2Ohb0FAaJU_1") == "M2Ohb0FAaJU_1"
    assert safe_clip_id("_0tf2n3rlJU_0/part-1.x") == "_0tf2n3rlJU_0/part-1.x"


def test_folder_source_lists_videos_in_order(sample_dir):
    clips = list(get_source("folder", sample_dir / "videos").scan())
    assert [c.clip_id for c in clips] == sorted(c.clip_id for c in clips)
    assert {c.clip_id for c in clips} >= {"astronaut_motion", "corrupt", "empty"}
    with pytest.raises(SourceError, match="not a folder"):
        get_source("folder", sample_dir / "nope")
    with pytest.raises(SourceError, match="unknown source 'vfhq2'"):
        get_source("vfhq2", sample_dir)


def test_sample_indices_follow_fps_range_and_cap():
    info = VideoInfo(n_frames=250, fps=25.0, width=8, height=8)
    assert sample_indices(info, DecodeConfig(fps=5), None, None) == list(range(0, 250, 5))
    assert sample_indices(info, DecodeConfig(fps=5), 2.0, 4.0) == list(range(50, 100, 5))
    capped = sample_indices(info, DecodeConfig(fps=5, max_frames=7), None, None)
    assert len(capped) == 7 and capped[0] == 0 and capped[-1] == 245
    assert sample_indices(info, DecodeConfig(fps=5), 4.0, 2.0) == []


def test_decord_and_pyav_read_the_same_frames(sample_dir):
    path = sample_dir / "videos" / "astronaut_motion.mp4"
    indices = [0, 7, 33, 99]
    frames = []
    for reader in (DecordReader(), PyAVReader()):
        info = reader.open(path)
        assert (info.n_frames, info.width, info.height) == (100, 512, 512)
        frames.append(reader.read(indices).astype(np.int16))
        reader.close()
    assert frames[0].shape == (4, 512, 512, 3)
    assert np.abs(frames[0] - frames[1]).mean() < 2.0


def test_clip_decoder_reports_every_decoder_on_a_corrupt_file(sample_dir):
    decoder = ClipDecoder(DecodeConfig())
    with pytest.raises(Exception) as caught:
        decoder.open(sample_dir / "videos" / "corrupt.mp4")
    assert "decord" in str(caught.value) and "pyav" in str(caught.value) and "corrupt.mp4" in str(caught.value)


def test_reading_another_schema_version_is_refused(tmp_path):
    path = tmp_path / "old.parquet"
    atomic_write_table(path, [], FACE_SCHEMA.with_metadata({b"mfhq.schema_version": b"0"}))
    with pytest.raises(SchemaVersionError, match="schema version 0"):
        read_table(path)
    atomic_write_table(path, [], FACE_SCHEMA)
    assert isinstance(read_table(path), pa.Table)


def test_png_still_decodes_after_decord_is_loaded(sample_dir):
    # decord's bundled zlib breaks cv2's PNG reading if it loads first; a fresh process shows it.
    import subprocess
    import sys

    code = (
        "from pathlib import Path; from mfhq.decode import DecordReader;"
        f"DecordReader().open(Path({str(sample_dir / 'videos' / 'astronaut_motion.mp4')!r}));"
        "import cv2, numpy as np; ok, buf = cv2.imencode('.png', np.full((8, 8), 255, np.uint8));"
        "assert cv2.imdecode(buf, 0) is not None, 'PNG decoding broken'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
