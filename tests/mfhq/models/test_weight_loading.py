"""Weight files that pass their hash check (or have none to pass) but do not load: one error that
names the file and how to fetch it, never a library's traceback or its advice to unpickle unsafely."""
from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from conftest import run_cli
from source_fixtures import linked_sample_videos
from mfhq.models import create_backend
from mfhq.models.facexlib_parsing import BISENET, PARSENET
from mfhq.models.sixdrep_pose import SIXDREPNET
from mfhq.models.topiq_iqa import TOPIQ_FACE, TopiqFaceQuality, build_cfanet
from mfhq.models.weights import WeightsCorrupt


def _garbage(path):
    path.write_bytes(os.urandom(4096))  # a hand-copied file cut or mixed up: no hash says so
    return path


def _one_clear_error(message: str, path, backend: str) -> None:
    assert str(path) in message
    assert f"mfhq models fetch {backend} --to DIR" in message and "--models-dir" in message
    assert "weights_only" not in message and "Traceback" not in message


@pytest.mark.parametrize("task, backend, weight", [("pose", "6drepnet", SIXDREPNET),
                                                   ("parsing", "facexlib-parsenet", PARSENET),
                                                   ("parsing", "facexlib-bisenet", BISENET)])
def test_an_unreadable_file_without_a_hash_is_one_error_naming_it(tmp_path, task, backend, weight):
    path = _garbage(tmp_path / weight.name)
    with pytest.raises(WeightsCorrupt) as caught:
        create_backend(task, backend, models_dir=tmp_path).setup()
    _one_clear_error(str(caught.value), path, backend)


def test_extract_with_an_unreadable_pose_file_exits_2_naming_it(sample_dir, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    path = _garbage(models / SIXDREPNET.name)
    preset = tmp_path / "p.yaml"
    preset.write_text("decode: {fps: 1, max_frames: 1}\ndetect: {backend: yunet}\nembed: {backend: sface}\n"
                      "pose: {backend: 6drepnet}\nquality: {backend: brisque}\nparsing: {backend: dlib68-hull}\n"
                      "run: {workers: 1}\n")
    videos = linked_sample_videos(sample_dir, tmp_path / "videos")
    result = run_cli("extract", "--root", str(videos), "--out", str(tmp_path / "run"), "--pipeline", str(preset),
                     "--models-dir", str(models), check=False)
    assert result.returncode == 2
    _one_clear_error(result.stderr + result.stdout, path, "6drepnet")


def test_a_file_damaged_only_says_where_it_goes_and_how_to_fetch_it(tmp_path):
    path = _garbage(tmp_path / TOPIQ_FACE.name)
    with pytest.raises(WeightsCorrupt) as caught:
        create_backend("quality", "topiq-nr-face", models_dir=tmp_path).setup()
    _one_clear_error(str(caught.value), path, "topiq-nr-face")
    assert "0a8b8e4f" in str(caught.value)


class _RandomTopiq(TopiqFaceQuality):  # the real backend; only the published-name hash check is off
    weight_files = (dataclasses.replace(TOPIQ_FACE, sha256_prefix=None),)


def test_a_topiq_checkpoint_missing_a_key_is_refused_not_left_random(tmp_path):
    state = build_cfanet(None).state_dict()
    dropped = "attn_pool.layers.0.linear1.weight" if "attn_pool.layers.0.linear1.weight" in state else list(state)[-1]
    del state[dropped]
    torch.save({"params": state}, tmp_path / TOPIQ_FACE.name)
    with pytest.raises(WeightsCorrupt) as caught:
        _RandomTopiq(models_dir=tmp_path).setup()
    _one_clear_error(str(caught.value), tmp_path / TOPIQ_FACE.name, "topiq-nr-face")
    assert "Missing key" in str(caught.value)


def test_models_verify_reads_a_torch_file_it_has_no_hash_for(tmp_path):
    path = _garbage(tmp_path / SIXDREPNET.name)
    result = run_cli("models", "verify", "--models-dir", str(tmp_path), "6drepnet", check=False)
    assert result.returncode == 1
    assert f"CORRUPT: {path}" in result.stdout and "mfhq models fetch 6drepnet --to DIR" in result.stderr
    torch.save({"w": torch.zeros(2)}, path)  # readable: said to be so, and that no hash checked it
    result = run_cli("models", "verify", "--models-dir", str(tmp_path), "6drepnet", check=False)
    assert result.returncode == 0 and "readable, not hash-checked" in result.stdout


def test_a_device_failure_while_loading_is_not_blamed_on_the_file(tmp_path, monkeypatch):
    """CUDA out of memory while the model moves to its device: the device's error as raised, not
    a damaged-weights message telling the user to fetch a good file again."""
    backend = create_backend("pose", "6drepnet", models_dir=tmp_path)
    _garbage(tmp_path / SIXDREPNET.name)

    def out_of_memory():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(backend, "load", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        backend.setup()
