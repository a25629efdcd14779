"""Weights for the paper's backends: where they are looked for, what a user is told when they
are missing, `mfhq models list / fetch / verify`, and what run.json and a resume make of them."""
from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.config import load_pipeline
from mfhq.models.catalog import fetch, verify
from mfhq.models.insightface_onnx import ARCFACE_R50, SCRFD_10G
from mfhq.models.preflight import check_pipeline
from mfhq.models.sixdrep_pose import SIXDREPNET
from mfhq.models.weights import LOCK_NAME, WeightsCorrupt, WeightsMissing, resolve

PAPER = """name: paper-test
detect: {backend: scrfd}
embed: {backend: arcface}
pose: {backend: 6drepnet}
quality: {backend: topiq-nr-face}
parsing: {backend: facexlib-parsenet}
"""


@pytest.fixture
def no_caches(tmp_path, monkeypatch):
    """Library caches pointed at empty folders, so nothing from this machine is found."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MFHQ_MODELS_DIR", raising=False)
    return tmp_path


def test_models_dir_comes_before_the_library_cache(no_caches, monkeypatch):
    cached = no_caches / "torch" / "hub" / "checkpoints" / SIXDREPNET.name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"the copy in torch hub's cache")
    assert resolve([SIXDREPNET])[SIXDREPNET.name] == cached  # the library's own cache is found
    mine = no_caches / "models"
    mine.mkdir()
    (mine / SIXDREPNET.name).write_bytes(b"the copy in --models-dir")
    assert resolve([SIXDREPNET], mine)[SIXDREPNET.name] == mine / SIXDREPNET.name
    monkeypatch.setenv("MFHQ_MODELS_DIR", str(mine))
    assert resolve([SIXDREPNET])[SIXDREPNET.name] == mine / SIXDREPNET.name
    buffalo = no_caches / "home" / ".insightface" / "models" / "buffalo_l" / SCRFD_10G.name
    buffalo.parent.mkdir(parents=True)
    buffalo.write_bytes(b"insightface's FaceAnalysis download")
    unpinned = dataclasses.replace(SCRFD_10G, sha256=None)  # these stand-in bytes are not buffalo_l's
    assert resolve([unpinned], no_caches / "elsewhere")[SCRFD_10G.name] == buffalo


def test_a_paper_pipeline_without_weights_gets_one_error_listing_every_file(no_caches):
    preset = no_caches / "paper.yaml"
    preset.write_text(PAPER)
    with pytest.raises(WeightsMissing) as caught:
        check_pipeline(load_pipeline(preset), no_caches / "models")
    message = str(caught.value)
    for name in ("det_10g.onnx", "w600k_r50.onnx", "6DRepNet_300W_LP_AFLW2000.pth",
                 "topiq_nr_cgfiqa_res50-0a8b8e4f.pth", "parsing_parsenet.pth"):
        assert message.count(name) == 1, name
    assert "buffalo_l.zip" in message and "non-commercial" in message
    assert "prefix 0a8b8e4f" in message  # what is known of TOPIQ's hash
    assert SCRFD_10G.sha256 in message and ARCFACE_R50.sha256 in message
    assert message.count("fetch: mfhq models fetch --to DIR") == 5
    assert "--models-dir" in message and str(no_caches / "models") in message


def test_extract_with_a_nonexistent_backend_fails_clearly(tmp_path):
    preset = tmp_path / "typo.yaml"
    preset.write_text(SAMPLE_PRESET.read_text().replace("backend: pnp68", "backend: 6d-repnet"))
    (tmp_path / "videos").mkdir()
    result = run_cli("extract", "--root", str(tmp_path / "videos"), "--out", str(tmp_path / "run"),
                     "--pipeline", str(preset), check=False)
    assert result.returncode == 2
    assert "unknown pose backend '6d-repnet'" in result.stderr and "6drepnet" in result.stderr


def _buffalo_zip(folder: Path) -> str:
    archive = folder / "buffalo_l.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("det_10g.onnx", b"detector bytes")
        zf.writestr("w600k_r50.onnx", b"recognition bytes")
        zf.writestr("1k3d68.onnx", b"not needed")
    return archive.as_uri()


def test_fetch_unpacks_records_hashes_and_verify_catches_damage(tmp_path):
    url = _buffalo_zip(tmp_path)
    # The fake archive's bytes cannot match buffalo_l's pinned hashes: test the recording path.
    files = [dataclasses.replace(SCRFD_10G, url=url, sha256=None), dataclasses.replace(ARCFACE_R50, url=url, sha256=None)]
    target = tmp_path / "models"
    fetch(target, files=files)
    assert (target / "det_10g.onnx").read_bytes() == b"detector bytes"
    assert not (target / "1k3d68.onnx").exists()
    assert "det_10g.onnx" in (target / LOCK_NAME).read_text()
    # Where no hash is published, the recorded one guards the file from then on.
    assert resolve(files, target)[SCRFD_10G.name] == target / "det_10g.onnx"
    (target / "det_10g.onnx").write_bytes(b"detector bytes, damaged")
    with pytest.raises(WeightsCorrupt, match="det_10g.onnx"):
        resolve(files, target)
    assert resolve(files[1:], target)[ARCFACE_R50.name] == target / "w600k_r50.onnx"
    # Where one is published (buffalo_l), `verify` holds the files to it: these bytes are not buffalo_l's.
    statuses = {e.weight.name: s for e, s in verify(target, ["scrfd", "arcface"])}
    assert statuses["det_10g.onnx"].startswith("CORRUPT") and SCRFD_10G.sha256 in statuses["det_10g.onnx"]
    assert statuses["w600k_r50.onnx"].startswith("CORRUPT") and ARCFACE_R50.sha256 in statuses["w600k_r50.onnx"]


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


def test_resume_with_other_weights_is_refused_unless_forced(tmp_path):
    from mfhq.extract import RunMismatch, extract
    from mfhq.models.brisque_iqa import NORMALIZE, SVM

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "empty.mp4").write_bytes(b"")  # a status row, no decoding: the run itself is quick
    cfg = load_pipeline(SAMPLE_PRESET).replace(run={"workers": 1})
    run = tmp_path / "run"
    extract("folder", videos, run, cfg)
    recorded = json.loads((run / "run.json").read_text())["models"]
    assert set(recorded) == {"detector", "embedder", "pose", "quality", "parsing"}
    assert recorded["quality"].startswith("brisque@")
    # The same backend with another normalisation file: other weights, same config.
    other = tmp_path / "models"
    other.mkdir()
    shutil.copy(resolve([SVM])[SVM.name], other / SVM.name)
    params = pickle.loads(resolve([NORMALIZE])[NORMALIZE.name].read_bytes())
    (other / NORMALIZE.name).write_bytes(pickle.dumps(params, protocol=2))
    with pytest.raises(RunMismatch, match="other model weights.*quality: brisque@"):
        extract("folder", videos, run, cfg, models_dir=other)
    extract("folder", videos, run, cfg, models_dir=other, force=True)
    assert json.loads((run / "run.json").read_text())["models"]["quality"] != recorded["quality"]
