"""SCRFD and ArcFace (the paper preset's detector and embedder; our choice) through insightface, on ONNX graphs shaped
like buffalo_l's with random or designed weights (no published weights can be downloaded here):
loading, batching, post-processing, and a det_10g that is not buffalo_l's refused."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mfhq.models import create_backend
from mfhq.models.insightface_onnx import ARCFACE_R50, SCRFD_10G, ArcFaceEmbedder, ScrfdDetector, nms
from onnx_graphs import BOX_CELLS, KPS_CELLS, arcface_graph, scrfd_graph


def _with_random_weights(cls, weight):
    """The backend, accepting a generated file: a random graph cannot carry buffalo_l's hash."""
    return type(f"Random{cls.__name__}", (cls,), {"weight_files": (dataclasses.replace(weight, sha256=None),)})


RandomScrfd = _with_random_weights(ScrfdDetector, SCRFD_10G)
RandomArcFace = _with_random_weights(ArcFaceEmbedder, ARCFACE_R50)


def _square_frame(height, width, x, y, side=64):
    frame = np.zeros((height, width, 3), np.uint8)
    frame[y:y + side, x:x + side] = 255
    return frame


@pytest.fixture(scope="module")
def scrfd(tmp_path_factory):
    folder = tmp_path_factory.mktemp("buffalo")
    scrfd_graph(folder / SCRFD_10G.name)
    backend = RandomScrfd(models_dir=folder, score_threshold=0.5,
                             nms_threshold=0.4, max_faces=50, det_size=256)
    backend.setup()
    return backend


def test_scrfd_goes_through_insightface_and_batches_a_batch_one_graph(scrfd):
    from insightface.model_zoo.scrfd import SCRFD

    assert isinstance(scrfd._scrfd, SCRFD)
    assert scrfd._scrfd.use_kps and scrfd._scrfd.fmc == 3 and scrfd._scrfd._num_anchors == 2
    assert scrfd.batched  # the graph fixes batch 1, like det_10g; made symbolic on load


def test_scrfd_boxes_landmarks_and_nms_land_on_the_face(scrfd):
    squares = [(240, 320, 100, 80), (400, 160, 40, 200)]  # h, w, x, y: two letterbox scales
    frames = [_square_frame(*s) for s in squares] + [np.zeros((200, 200, 3), np.uint8)]
    found = scrfd.detect(frames)
    assert len(found[2].scores) == 0  # nothing bright, nothing found
    for (height, width, x, y), det in zip(squares, found[:2]):
        assert len(det.scores) >= 1
        assert ((det.scores >= 0.5) & (det.scores <= 1)).all()
        assert (np.diff(det.scores) <= 0).all()  # best first
        centre = (det.boxes[:, :2] + det.boxes[:, 2:]) / 2
        scale = min(256 / height, 256 / width)
        slack = 32 / scale  # one coarse cell in source pixels
        assert (centre[:, 0] > x - slack).all() and (centre[:, 0] < x + 64 + slack).all()
        assert (centre[:, 1] > y - slack).all() and (centre[:, 1] < y + 64 + slack).all()
        # Landmarks decode to centre + fixed offsets in units of the detection's stride.
        stride_px = (det.boxes[:, 2] - det.boxes[:, 0]) / (2 * BOX_CELLS)
        expected = centre[:, None, :] + KPS_CELLS[None] * stride_px[:, None, None]
        np.testing.assert_allclose(det.landmarks, expected, atol=1e-3)
        for i in range(len(det.scores)):  # NMS: no two kept boxes overlap past the threshold
            for j in range(i + 1, len(det.scores)):
                assert _iou(det.boxes[i], det.boxes[j]) <= 0.4 + 1e-6


def test_scrfd_batch_equals_frame_by_frame(scrfd):
    frames = [_square_frame(240, 320, 100, 80), _square_frame(400, 160, 40, 200)]
    together = scrfd.detect(frames)
    alone = [scrfd.detect([f])[0] for f in frames]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-4)


def test_scrfd_random_weights_give_scores_in_range(tmp_path):
    scrfd_graph(tmp_path / SCRFD_10G.name, noise=0.5, seed=3)
    backend = RandomScrfd(models_dir=tmp_path, score_threshold=0.3, max_faces=5, det_size=128)
    backend.setup()
    rng = np.random.default_rng(0)
    found = backend.detect([rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(3)])
    for det in found:
        assert len(det.scores) <= 5 and det.landmarks.shape == (len(det.scores), 5, 2)
        assert ((det.scores >= 0.3) & (det.scores <= 1)).all() and np.isfinite(det.boxes).all()


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.7], np.float32)
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]


def test_arcface_embeds_a_batch_as_it_embeds_each_crop(tmp_path):
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    arcface_graph(tmp_path / ARCFACE_R50.name)
    embedder = RandomArcFace(models_dir=tmp_path)
    embedder.setup()
    assert isinstance(embedder._arcface, ArcFaceONNX) and embedder._arcface.input_mean == 127.5
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    vectors = embedder.embed(crops)
    assert vectors.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    single = np.concatenate([embedder.embed(c[None]) for c in crops])
    np.testing.assert_allclose(vectors, single, atol=1e-5)
    assert abs(vectors[0] @ vectors[1]) < 0.999  # different crops, different vectors
    assert embedder.embed(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, 512)


def _iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_scrfd_on_cuda_matches_cpu(scrfd, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here (onnxruntime-gpu not installed)")
    scrfd_graph(tmp_path / SCRFD_10G.name)
    gpu = RandomScrfd(models_dir=tmp_path, score_threshold=0.5, nms_threshold=0.4,
                         max_faces=50, det_size=256, device="cuda")
    gpu.setup()
    frames = [_square_frame(240, 320, 100, 80), _square_frame(400, 160, 40, 200)]
    for a, b in zip(gpu.detect(frames), scrfd.detect(frames)):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)


def test_a_det_10g_that_is_not_buffalo_ls_is_refused(tmp_path):
    from mfhq.models.weights import WeightsCorrupt

    scrfd_graph(tmp_path / SCRFD_10G.name)  # right shape, wrong bytes
    with pytest.raises(WeightsCorrupt, match=SCRFD_10G.sha256):
        create_backend("detector", "scrfd", models_dir=tmp_path).setup()
