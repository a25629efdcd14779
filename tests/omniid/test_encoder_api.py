"""The public inference API of the encoder: from_pretrained on every kind of checkpoint path,
without a false "initialized randomly" warning, and encode() on every kind of input. The pictures
here are noise, given as aligned crops (`aligned=True`): face detection is test_face_inputs.py's."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from omniid.checkpoint import resolve_checkpoint
from omniid.config import get_preset
from omniid.encoder import OmniIDEncoder
from omniid.errors import CheckpointNotFound
from omniid_fixtures import one_torch_thread  # noqa: F401  (pytest fixture)

TINY = get_preset("tiny").model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder laid out as training writes it: checkpoints/step-*/ and a `latest` pointer."""
    torch.manual_seed(3)
    encoder = OmniIDEncoder(TINY).eval()
    root = tmp_path_factory.mktemp("run")
    OmniIDEncoder(TINY).save_pretrained(root / "checkpoints" / "step-00000001")
    encoder.save_pretrained(root / "checkpoints" / "step-00000002")
    (root / "checkpoints" / "latest").write_text("step-00000002\n")
    return root, encoder


def pictures(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("where", ["run", "checkpoints", "latest", "step"])
def test_from_pretrained_takes_a_run_a_pointer_or_a_step_folder(run, where, caplog):
    root, trained = run
    path = {"run": root, "checkpoints": root / "checkpoints", "latest": root / "checkpoints" / "latest",
            "step": root / "checkpoints" / "step-00000002"}[where]
    assert resolve_checkpoint(path) == root / "checkpoints" / "step-00000002"
    with caplog.at_level(logging.INFO):
        loaded = OmniIDEncoder.from_pretrained(path)
    assert not [r for r in caplog.records if "random" in r.getMessage().lower()]
    images = pictures(2, 0)
    torch.testing.assert_close(loaded.encode(images, aligned=True), trained.encode(images, aligned=True))


def test_a_path_that_is_no_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointNotFound, match="nowhere"):
        OmniIDEncoder.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointNotFound, match="empty.*encoder.safetensors"):
        OmniIDEncoder.from_pretrained(tmp_path / "empty")


def test_encode_takes_arrays_pil_paths_and_tensors_alike(run, tmp_path):
    _, encoder = run
    arrays = pictures(3, 1)
    paths = []
    for i, a in enumerate(arrays):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(a).save(paths[-1])
    reference = encoder.encode(arrays, aligned=True)
    assert reference.shape == (TINY.num_queries, TINY.width)
    torch.testing.assert_close(encoder.encode([Image.fromarray(a) for a in arrays], aligned=True), reference)
    torch.testing.assert_close(encoder.encode([str(p) for p in paths], aligned=True), reference)
    as_tensor = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays])  # uint8 [M, 3, H, W]
    torch.testing.assert_close(encoder.encode(as_tensor, aligned=True), reference)
    torch.testing.assert_close(encoder.encode(as_tensor.float() / 255, aligned=True), reference)
    torch.testing.assert_close(encoder.encode(list(as_tensor), aligned=True), reference)


def test_a_batch_of_identities_equals_each_alone(run):
    _, encoder = run
    a, b = pictures(3, 2), pictures(1, 3)
    both = encoder.encode([a, b], aligned=True)
    assert both.shape == (2, TINY.num_queries, TINY.width)
    torch.testing.assert_close(both[0], encoder.encode(a, aligned=True), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(both[1], encoder.encode(b, aligned=True), rtol=1e-4, atol=1e-5)
    stacked = torch.stack([torch.stack([torch.from_numpy(x).permute(2, 0, 1) for x in a])] * 2)
    assert encoder.encode(stacked, aligned=True).shape == (2, TINY.num_queries, TINY.width)


def test_encode_refuses_a_mix_and_an_empty_identity(run):
    _, encoder = run
    a = pictures(2, 4)
    with pytest.raises(TypeError, match="mix"):
        encoder.encode([a[0], [a[1]]], aligned=True)
    with pytest.raises(ValueError, match="at least one"):
        encoder.encode([a, []], aligned=True)
