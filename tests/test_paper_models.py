"""The paper's backends with their real architectures and random (or designed) weights.

No published weights can be downloaded here, so each test builds the network the library
defines (for insightface, ONNX graphs shaped like buffalo_l's), saves it where a user's file
would be, and runs it through our loader, batching and post-processing.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mfhq.align import arcface_template
from mfhq.models import create_backend
from mfhq.models.facexlib_parsing import FACE_LABELS, LABELS, PARSENET, face_mask
from mfhq.models.insightface_onnx import ARCFACE_R50, SCRFD_10G, ArcFaceEmbedder, ScrfdDetector, nms
from mfhq.models.pnp_pose import PnPPose
from mfhq.models.sixdrep_pose import SIXDREPNET, import_sixdrepnet, inplane_rotation, to_project_angles
from mfhq.models.topiq_iqa import TOPIQ_FACE, TopiqFaceQuality, build_cfanet
from tests.onnx_graphs import BOX_CELLS, KPS_CELLS, arcface_graph, scrfd_graph

REPO = Path(__file__).resolve().parents[1]


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


# --- 6DRepNet -----------------------------------------------------------------------------


def _rotated_template(degrees_ccw: float) -> np.ndarray:
    points = arcface_template(448).astype(np.float64) + 300
    centre, theta = points.mean(0), np.radians(degrees_ccw)
    d = points - centre
    # Counter-clockwise on screen, where y points down.
    return np.stack([centre[0] + d[:, 0] * np.cos(theta) + d[:, 1] * np.sin(theta),
                     centre[1] - d[:, 0] * np.sin(theta) + d[:, 1] * np.cos(theta)], axis=1)


def test_inplane_rotation_agrees_with_the_roll_convention():
    landmarks = np.stack([_rotated_template(a) for a in (-25.0, 0.0, 20.0)])
    np.testing.assert_allclose(inplane_rotation(landmarks), [-25, 0, 20], atol=0.5)
    pnp = PnPPose()
    pnp.setup()
    rolls = pnp.estimate(landmarks, np.tile([1000, 1000], (3, 1)))[:, 2]
    np.testing.assert_allclose(rolls, [-25, 0, 20], atol=2.0)  # the same convention as pnp5


def test_sixdrepnet_angles_convert_to_the_project_convention():
    _, utils = import_sixdrepnet()
    pitch, yaw, roll = np.radians([10.0, 30.0, -15.0])
    rotation = torch.tensor(utils.get_R(pitch, yaw, roll), dtype=torch.float32)[None]
    sixd = np.degrees(utils.compute_euler_angles_from_rotation_matrices(rotation).numpy())
    ours = to_project_angles(sixd, np.array([5.0]))[0]
    # sixdrepnet's draw_axis: yaw > 0 points the nose to the image's left, roll > 0 is clockwise.
    np.testing.assert_allclose(ours, [-30.0, 10.0, 15.0 + 5.0], atol=1e-3)


def test_sixdrepnet_random_weights_through_the_backend(tmp_path):
    network, _ = import_sixdrepnet()
    torch.manual_seed(0)
    model = network(backbone_name="RepVGG-B1g2", backbone_file="", deploy=True, pretrained=False)
    torch.save(model.state_dict(), tmp_path / SIXDREPNET.name)
    pose = create_backend("pose", "6drepnet", models_dir=tmp_path)
    pose.setup()
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, (2, 448, 448, 3), dtype=np.uint8)
    landmarks = np.stack([_rotated_template(0.0), _rotated_template(30.0)])
    angles = pose.estimate(landmarks, np.tile([1000, 1000], (2, 1)), crops)
    assert angles.shape == (2, 3) and np.isfinite(angles).all()
    assert (np.abs(angles[:, :2]) <= 180).all() and (np.abs(angles[:, 2]) <= 180).all()
    # Same crop, landmarks rolled by 30 degrees more: roll moves by 30, yaw and pitch do not.
    same = pose.estimate(landmarks, np.tile([1000, 1000], (2, 1)), crops[[0, 0]])
    np.testing.assert_allclose(same[1, :2], same[0, :2], atol=1e-3)
    assert abs(((same[1, 2] - same[0, 2] + 180) % 360 - 180) - 30) < 0.5


def test_sixdrepnet_is_imported_clear_of_modules_named_utils_and_model(tmp_path):
    (tmp_path / "utils.py").write_text("MARK = 'a project module named utils'\n")
    (tmp_path / "model.py").write_text("MARK = 'a project module named model'\n")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import utils, model\n"
        "from mfhq.models.sixdrep_pose import import_sixdrepnet\n"
        "network, sixd_utils = import_sixdrepnet()\n"
        "assert 'sixdrepnet' in sixd_utils.__file__, sixd_utils.__file__\n"
        "assert sys.modules['utils'].MARK.startswith('a project') and sys.modules['model'].MARK.startswith('a project')\n"
        "assert not any(p.rstrip('/').endswith('sixdrepnet') for p in sys.path), sys.path\n"
        "network(backbone_name='RepVGG-B1g2', backbone_file='', deploy=True, pretrained=False)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


# --- TOPIQ-NR-face --------------------------------------------------------------------------


def test_topiq_face_scores_a_batch_of_aligned_crops(tmp_path):
    torch.manual_seed(0)
    torch.save({"params": build_cfanet(None).state_dict()}, tmp_path / TOPIQ_FACE.name)

    class RandomTopiq(TopiqFaceQuality):  # the real backend; only the published-name hash check is off
        weight_files = (dataclasses.replace(TOPIQ_FACE, sha256_prefix=None),)

    quality = RandomTopiq(models_dir=tmp_path, batch_size=2)
    quality.setup()
    assert not hasattr(quality._net, "face_helper")  # no RetinaFace, no batch-1 alignment
    assert quality._net.test_img_size == 512  # as pyiqa's metric; below, 224 as given keeps the test quick
    quality._net.test_img_size = None
    rng = np.random.default_rng(3)
    crops = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    scores = quality.score(crops)
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()
    quality.batch_size = 1
    np.testing.assert_allclose(quality.score(crops), scores, atol=1e-4)


def test_topiq_file_with_the_wrong_hash_prefix_is_refused(tmp_path):
    from mfhq.models.weights import WeightsCorrupt

    (tmp_path / TOPIQ_FACE.name).write_bytes(b"not the checkpoint")
    with pytest.raises(WeightsCorrupt, match="0a8b8e4f"):
        create_backend("quality", "topiq-nr-face", models_dir=tmp_path).setup()


# --- facexlib parsing -----------------------------------------------------------------------


def test_face_labels_are_skin_brows_eyes_nose_mouth_lips():
    labels = np.arange(len(LABELS)).reshape(1, -1)
    mask = face_mask(labels)[0]
    assert {LABELS[i] for i in np.flatnonzero(mask == 255)} == set(FACE_LABELS)
    for name in ("background", "hair", "hat", "neck", "cloth", "l_ear", "r_ear", "ear_r"):
        assert mask[LABELS.index(name)] == 0


@pytest.fixture(scope="module")
def parsenet(tmp_path_factory):
    from facexlib.parsing import ParseNet

    folder = tmp_path_factory.mktemp("parsing")
    torch.manual_seed(0)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), folder / PARSENET.name)
    # parse_size 128 keeps the CPU tests quick; the network and the label mapping are the same.
    backend = create_backend("parsing", "facexlib-parsenet", models_dir=folder, parse_size=128)
    backend.setup()
    return backend


def test_parsenet_random_weights_give_binary_masks_at_crop_size(parsenet):
    crops = np.random.default_rng(4).integers(0, 256, (2, 448, 448, 3), dtype=np.uint8)
    masks = parsenet.masks(crops)
    assert parsenet.labels(crops).shape == (2, 128, 128)
    assert masks.shape == (2, 448, 448) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 255}


@pytest.mark.parametrize("label, value", [("skin", 255), ("eye_g", 255), ("hair", 0), ("l_ear", 0), ("background", 0)])
def test_parsenet_mask_follows_the_predicted_label(parsenet, label, value):
    head = parsenet._net.out_mask_conv.conv2d
    with torch.no_grad():  # make the network predict one label everywhere
        head.weight.zero_()
        head.bias.zero_()
        head.bias[LABELS.index(label)] = 10.0
    masks = parsenet.masks(np.full((1, 448, 448, 3), 128, np.uint8))
    assert (masks == value).all()


def test_bisenet_loads_through_facexlib_and_masks_a_batch(tmp_path):
    from facexlib.parsing import BiSeNet

    torch.manual_seed(0)
    torch.save(BiSeNet(num_class=19).state_dict(), tmp_path / "parsing_bisenet.pth")
    backend = create_backend("parsing", "facexlib-bisenet", models_dir=tmp_path, parse_size=128)
    backend.setup()
    masks = backend.masks(np.random.default_rng(5).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8))
    assert masks.shape == (2, 256, 256) and set(np.unique(masks)) <= {0, 255}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_parsing_on_cuda_in_fp16_autocast_agrees_with_cpu(parsenet):
    folder = parsenet.paths[PARSENET.name].parent  # the file, not the fixture's edited network
    gpu, cpu = (create_backend("parsing", "facexlib-parsenet", models_dir=folder, device=d, parse_size=128)
                for d in ("cuda", "cpu"))
    gpu.setup()
    cpu.setup()
    crops = np.random.default_rng(6).integers(0, 256, (4, 448, 448, 3), dtype=np.uint8)
    on_gpu, on_cpu = gpu.labels(crops), cpu.labels(crops)
    assert on_gpu.shape == on_cpu.shape == (4, 128, 128)
    assert (on_gpu == on_cpu).mean() > 0.95  # fp16 may flip near-tied pixels, not the map


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


# --- through the pipeline ------------------------------------------------------------------


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
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "astronaut_motion.mp4").symlink_to(sample_dir / "videos" / "astronaut_motion.mp4")
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


def test_a_det_10g_that_is_not_buffalo_ls_is_refused(tmp_path):
    from mfhq.models.weights import WeightsCorrupt

    scrfd_graph(tmp_path / SCRFD_10G.name)  # right shape, wrong bytes
    with pytest.raises(WeightsCorrupt, match=SCRFD_10G.sha256):
        create_backend("detector", "scrfd", models_dir=tmp_path).setup()
