"""What a user types first: extract without --pipeline, --version, -q and --verbose."""
from __future__ import annotations

from conftest import run_cli


def test_extract_without_pipeline_says_it_uses_sample_first(tmp_path):
    (tmp_path / "videos").mkdir()
    result = run_cli("extract", "--root", str(tmp_path / "videos"), "--out", str(tmp_path / "run"), check=False)
    first = result.stderr.strip().splitlines()[0]
    assert "no --pipeline given: using the packaged preset 'sample'" in first and "paper" in first


def test_version_and_log_levels(tmp_path):
    from mfhq import __version__

    assert run_cli("--version").stdout.strip() == f"mfhq {__version__}"
    (tmp_path / "videos").mkdir()
    quiet = run_cli("-q", "extract", "--root", str(tmp_path / "videos"), "--out", str(tmp_path / "run"), check=False)
    assert "INFO" not in quiet.stderr
    verbose = run_cli("--verbose", "models", "verify", "yunet")
    assert verbose.returncode == 0 and "setPreferableTarget" not in verbose.stderr
