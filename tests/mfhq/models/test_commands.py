"""`mfhq models list | fetch | verify`: what they print and their exit codes."""
from __future__ import annotations

import os
import shutil

from conftest import run_cli
from mfhq.models.weights import resolve


def test_models_verify_cli_exits_nonzero_on_a_corrupted_file(tmp_path):
    from mfhq.models.yunet import YUNET

    shutil.copy(resolve([YUNET])[YUNET.name], tmp_path / YUNET.name)
    ok = run_cli("models", "verify", "yunet", "--models-dir", str(tmp_path))
    assert f"{YUNET.name}: ok" in ok.stdout
    damaged = bytearray((tmp_path / YUNET.name).read_bytes())
    damaged[100] ^= 0xFF
    (tmp_path / YUNET.name).write_bytes(bytes(damaged))
    bad = run_cli("models", "verify", "yunet", "--models-dir", str(tmp_path), check=False)
    assert bad.returncode == 1 and "CORRUPT" in bad.stdout and YUNET.sha256 in bad.stdout


def test_models_list_names_file_hash_licence_and_presence():
    out = run_cli("models", "list").stdout
    for text in ("scrfd", "det_10g.onnx", "arcface", "w600k_r50.onnx", "6drepnet", "topiq-nr-face",
                 "facexlib-parsenet", "non-commercial research only (insightface buffalo_l terms)",
                 "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10", "present: missing"):
        assert text in out, text


def test_models_fetch_an_unknown_name_exits_nonzero_listing_names(tmp_path):
    result = run_cli("models", "fetch", "scrfdd", "--to", str(tmp_path), check=False)
    assert result.returncode == 2
    assert "scrfdd" in result.stderr and "scrfd" in result.stderr and "6drepnet" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing was downloaded


def test_models_verify_exits_nonzero_when_a_file_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = run_cli("models", "verify", "6drepnet", "--models-dir", str(tmp_path), check=False,
                     env={**os.environ})
    assert result.returncode == 1
    assert "6DRepNet_300W_LP_AFLW2000.pth: missing" in result.stdout and "1 missing file" in result.stderr
    assert run_cli("models", "verify", "--pipeline", "sample").returncode == 0  # ships in packages


def test_models_list_says_a_files_size_once(tmp_path):
    """A file whose size upstream does not publish read "size size not published"."""
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "HOME": str(tmp_path / "home")}
    out = run_cli("models", "list", "--models-dir", str(tmp_path), env=env).stdout
    assert "size size" not in out
    assert "6DRepNet_300W_LP_AFLW2000.pth\n    size not published; sha256" in out  # no pinned size, missing here
    assert "det_10g.onnx\n    16.9 MB; sha256" in out  # a pinned size, as the missing-weights error gives it
