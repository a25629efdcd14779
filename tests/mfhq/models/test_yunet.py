"""The offline detector (YuNet + dlib 68) at speed: downscaled detection finds the same faces and
points, onnxruntime finds what OpenCV's FaceDetectorYN finds, and large faces (one dlib restart,
760 px in a 4K frame) are found."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mfhq import sample
from mfhq.benchclips import _background, _pose, face_box, render_frame
from mfhq.config import DecodeConfig
from mfhq.decode import ClipDecoder
from mfhq.models import create_backend
from mfhq.geometry import box_iou


def _detector(working_size: int):
    backend = create_backend("detector", "yunet-dlib68", working_size=working_size)
    backend.setup()
    return backend


@pytest.fixture(scope="module")
def full_and_downscaled():
    # 320 px: the 512 px sample is downscaled by 0.625, so the mapping back is exercised.
    return _detector(0), _detector(320)


def test_downscaled_detection_finds_the_same_faces_and_landmarks(sample_dir, sample_meta, full_and_downscaled):
    full, small = full_and_downscaled
    compared = 0
    for clip in sample_meta["clips"]:
        if clip["expected_status"] != "ok":
            continue
        decoder = ClipDecoder(DecodeConfig())
        path = sample_dir / clip["file"]
        decoder.open(path)
        frames = decoder.reader.read(list(range(0, clip["n_frames"], 10)))
        decoder.close()
        for frame in frames:
            a, b = full.detect([frame])[0], small.detect([frame])[0]
            assert len(a.scores) == len(b.scores), f"{path.name}: {len(a.scores)} faces at full size, {len(b.scores)} downscaled"
            for i in range(len(a.scores)):
                assert box_iou(a.boxes[i].astype(np.float64), b.boxes[i:i + 1].astype(np.float64))[0] > 0.75
                # Source pixels: every point within 2 px in x and in y.
                assert np.abs(a.landmarks[i] - b.landmarks[i]).max() <= 2.0, (path.name, a.landmarks[i], b.landmarks[i])
                compared += 1
    assert compared >= 30


def test_yunet_on_onnxruntime_finds_what_opencvs_facedetectoryn_finds(sample_dir, sample_meta):
    """The detector runs the weight-folded graph on onnxruntime and decodes it itself: on the
    sample's frames and on a generated 1080p frame, the faces, boxes, points and scores are
    OpenCV's own FaceDetectorYN's on the shipped int8 graph."""
    detector = create_backend("detector", "yunet", score_threshold=0.6)
    detector.setup()
    opencv = cv2.FaceDetectorYN.create(str(detector.paths["face_detection_yunet_2023mar_int8bq.onnx"]), "",
                                       (320, 320), 0.6, 0.3, 5000)
    images = []
    for clip in sample_meta["clips"]:
        if clip["expected_status"] == "ok":
            decoder = ClipDecoder(DecodeConfig())
            decoder.open(sample_dir / clip["file"])
            images += list(decoder.reader.read(list(range(0, clip["n_frames"], 25))))
            decoder.close()
    size = (1920, 1080)
    rng = np.random.default_rng(5)
    background = _background(rng, size, sample._read_image(sample._photo_file("t1_face2")))
    frame = render_frame("t1_face2", _pose(4, rng.uniform(0, 6.28, 5), size, 550.0), background, size)
    images += [cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA), images[0][:300, :451]]  # odd sizes pad
    faces = 0
    for image in images:
        opencv.setInputSize((image.shape[1], image.shape[0]))
        expected = opencv.detect(np.ascontiguousarray(image))[1]
        expected = np.zeros((0, 15)) if expected is None else expected[np.argsort(-expected[:, 14], kind="stable")]
        ours = detector._faces(image)
        assert ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, atol=1e-3)
        faces += len(ours)
    assert faces >= len(images) - 1  # every clip frame shows a face; the cut-out may not


def test_a_large_face_gets_one_dlib_restart_and_lands_where_more_would(sample_dir, sample_meta):
    """Faces with eyes LARGE_FACE_EYES_PX apart or more stop after one restart of dlib's cascade
    (each pass costs ~5 ms and moves such a face's points by dlib's pixel noise only); their
    five points stay within 2% of the eye distance of where passes 4-8 settle. The sample's
    smaller faces keep both restarts."""
    from mfhq.models.yunet import LARGE_FACE_EYES_PX, _box_from_points, five_of_68

    detector = _detector(640)
    calls = []
    plain_68 = detector._68
    detector._68 = lambda frame, box: calls.append(box) or plain_68(frame, box)
    size, rng = (1920, 1080), np.random.default_rng(11)
    background = _background(rng, size, sample._read_image(sample._photo_file("t1_face2")))
    for step in (0, 9):
        frame = render_frame("t1_face2", _pose(step, rng.uniform(0, 6.28, 5), size, 550.0), background, size)
        calls.clear()
        found = detector.detect([frame])[0]
        assert len(found.scores) == 1 and len(calls) == 2
        five, settled, rect = found.landmarks[0].astype(np.float64), [], calls[-1]
        for _ in range(8):
            points = five_of_68(plain_68(frame, rect))
            settled.append(points)
            rect = _box_from_points(points)
        eyes = np.linalg.norm(five[1] - five[0])
        assert eyes >= LARGE_FACE_EYES_PX
        assert np.abs(five - np.mean(settled[2:], axis=0)).max() < 0.02 * eyes
    clip = next(c for c in sample_meta["clips"] if c["clip_id"] == "t1_face2_motion")
    decoder = ClipDecoder(DecodeConfig())
    decoder.open(sample_dir / clip["file"])
    frame = decoder.reader.read([0])[0]
    decoder.close()
    calls.clear()
    assert len(detector.detect([frame])[0].scores) == 1 and len(calls) == 3


def test_a_760_px_face_in_a_4k_frame_is_found():
    size = (3840, 2160)
    rng = np.random.default_rng(3)
    background = _background(rng, size, sample._read_image(sample._photo_file("astronaut")))
    pose = _pose(10, rng.uniform(0, 6.28, 5), size, 760.0)
    frame = render_frame("astronaut", pose, background, size)
    truth = np.asarray(face_box("astronaut", pose), np.float64)
    assert 650 < truth[2] - truth[0] < 900  # the photo's face box, warped: about 760 px wide
    found = _detector(640).detect([frame])[0]
    assert len(found.scores) == 1
    assert box_iou(truth, found.boxes.astype(np.float64))[0] > 0.6
    eyes = found.landmarks[0, :2]
    assert ((eyes >= truth[:2]) & (eyes <= truth[2:])).all()  # both eyes inside the true face box
    assert 150 < np.linalg.norm(eyes[1] - eyes[0]) < 400  # an eye distance of a ~760 px face


def _side_cut_68(predictor, frame: np.ndarray, box) -> np.ndarray:
    """What `_68` gave dlib before: the box plus half its size on every side, cut out of the frame
    (a strided view, which dlib's binding copies whole)."""
    import dlib

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    margin = max(x2 - x1, y2 - y1) // 2 + 8
    height, width = frame.shape[:2]
    ox, oy = min(max(x1 - margin, 0), width - 1), min(max(y1 - margin, 0), height - 1)
    region = frame[oy:max(min(y2 + margin, height), oy + 1), ox:max(min(x2 + margin, width), ox + 1)]
    rect = dlib.rectangle(x1 - ox, y1 - oy, x2 - ox, y2 - oy)
    return np.array([[p.x + ox, p.y + oy] for p in predictor(region, rect).parts()], np.float32)


def test_dlib_reads_whole_rows_in_place_and_finds_the_side_cut_regions_points(sample_dir, sample_meta, detector,
                                                                            monkeypatch):
    """dlib's binding copies any array that is not C-contiguous before reading a pixel. `_68` hands
    it whole rows of the frame (a view of the frame's own memory, nothing copied), and every pass
    lands on exactly the points the side-cut region gave, on the sample's faces (three passes each)
    and a generated 1080p face (two)."""
    frames = []
    for clip in sample_meta["clips"]:
        if clip["expected_status"] == "ok":
            decoder = ClipDecoder(DecodeConfig())
            decoder.open(sample_dir / clip["file"])
            frames.extend(decoder.reader.read([0, clip["n_frames"] // 2]))
            decoder.close()
    size, rng = (1920, 1080), np.random.default_rng(5)
    background = _background(rng, size, sample._read_image(sample._photo_file("astronaut")))
    frames.append(render_frame("astronaut", _pose(4, rng.uniform(0, 6.28, 5), size, 550.0), background, size))
    predictor, given, passes = detector._predictor, [], []
    monkeypatch.setattr(detector, "_predictor", lambda image, rect: given.append(image) or predictor(image, rect))
    plain_68 = detector._68
    monkeypatch.setattr(detector, "_68", lambda frame, box: passes.append((frame, box)) or plain_68(frame, box))
    for frame in frames:
        assert frame.flags.c_contiguous
        given.clear()
        found = detector.detect([frame])[0]
        assert len(found.scores) >= 1 and given
        for image in given:
            assert image.flags.c_contiguous and np.shares_memory(image, frame), "dlib was given an array it copies"
    assert len(passes) >= 2 * len(frames)
    for frame, box in passes:
        assert np.array_equal(plain_68(frame, box), _side_cut_68(predictor, frame, box)), box
