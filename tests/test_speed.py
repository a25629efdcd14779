"""What the speed work must not change: downscaled detection finds the same faces and points,
large faces in 4K frames are found, the candidate merge gives the all-pairs identities, the fast
BRISQUE fit gives the same score; and the benchmark runs on its own generated 1080p clips."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from mfhq import sample
from mfhq.benchclips import _background, _pose, face_box, make_clips, render_frame
from mfhq.config import CurateConfig, DecodeConfig, usable_cores
from mfhq.curate import merge
from mfhq.curate.bench import synthetic_clip_means
from mfhq.decode import CHUNK_BYTES, ClipDecoder
from mfhq.geometry import box_iou
from mfhq.models import create_backend
from mfhq.models import brisque_iqa
from conftest import SAMPLE_PRESET, run_cli


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


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return connected_components(sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)[1]


def _same_partition(x: np.ndarray, y: np.ndarray) -> bool:
    return len(set(zip(x.tolist(), y.tolist()))) == len(set(x.tolist())) == len(set(y.tolist()))


def test_candidate_merge_gives_the_all_pairs_identities(monkeypatch):
    emb, person = synthetic_clip_means(3000, seed=1)
    # Three people with 40 clips each: more clips above the threshold than the candidate search's NEIGHBOURS.
    crowd = np.random.default_rng(2).normal(size=(3, 512)).astype(np.float32)
    extra = crowd[np.arange(120) % 3] + np.random.default_rng(4).normal(size=(120, 512)).astype(np.float32) * 0.6
    emb = np.concatenate([emb, extra / np.linalg.norm(extra, axis=1, keepdims=True)])
    person = np.concatenate([person, person.max() + 1 + np.arange(120) % 3])
    n, threshold = len(emb), CurateConfig().embedding_similarity
    a, b, _ = merge.all_pairs_edges(emb, threshold)
    reference = _components(n, a, b)
    assert _same_partition(reference, person)  # the synthetic groups are what all-pairs finds

    exact = merge._embedding_edges(emb, threshold)  # below EXACT_BELOW: faiss range search
    assert np.array_equal(exact[0], a) and np.array_equal(exact[1], b)
    monkeypatch.setattr(merge, "EXACT_BELOW", 0)
    ca, cb, cs = merge._embedding_edges(emb, threshold)
    assert _same_partition(_components(n, ca, cb), reference)
    assert (cs >= threshold).all() and set(zip(ca.tolist(), cb.tolist())) <= set(zip(a.tolist(), b.tolist()))

    import pyarrow as pa

    clips = pa.table({"clip_key": [f"s/c{i:05d}" for i in range(n)], "video_key": [f"v{i}" for i in range(n)],
                      "n_usable": np.ones(n, np.int64)})
    cfg = CurateConfig(merge_by_video_key=False)
    ident = merge.assign_identities(clips, emb, cfg).column("identity_id").to_pylist()
    assert _same_partition(np.unique(ident, return_inverse=True)[1], reference)


def test_fast_brisque_fit_gives_the_reference_root_finders_score(monkeypatch):
    quality = create_backend("quality", "brisque")
    quality.setup()
    photo = cv2.resize(sample.load_photo("astronaut"), (448, 448))
    crops = [photo, cv2.GaussianBlur(photo, (0, 0), 2), cv2.GaussianBlur(photo, (0, 0), 5),
             np.clip(photo + np.random.default_rng(0).normal(0, 20, photo.shape), 0, 255).astype(np.uint8)]
    fast = np.array([quality.raw_score(c) for c in crops])
    from scipy import optimize, special

    def scipy_root(big_r):  # the reference package's fit
        phi = lambda a: special.gamma(2 / a) ** 2 / (special.gamma(1 / a) * special.gamma(3 / a)) - big_r  # noqa: E731
        return float(optimize.root(phi, [0.2]).x[0])

    monkeypatch.setattr(brisque_iqa, "_solve_alpha", scipy_root)
    reference = np.array([quality.raw_score(c) for c in crops])
    assert np.allclose(fast, reference, atol=1e-6), (fast, reference)
    assert fast[0] < fast[2]  # and it still says a blurred face is worse


def test_brisque_in_float32_moves_the_score_by_under_a_tenth_of_a_point():
    """The extract computes BRISQUE's features in float32 (about 3x faster); the score keeps its
    meaning: within 0.1 (of 0-100) of the float64 reference computation on face crops, sharp,
    blurred and noisy, and blur still ranks below sharp."""
    quality = create_backend("quality", "brisque")
    quality.setup()
    crops = []
    for name in ("astronaut", sample._PERSON_A, sample._PERSON_B, sample._PERSON_C):
        photo = cv2.resize(sample.load_photo(name), (448, 448))
        crops += [photo, cv2.GaussianBlur(photo, (0, 0), 3),
                  np.clip(photo + np.random.default_rng(0).normal(0, 15, photo.shape), 0, 255).astype(np.uint8)]
    fast = np.array([quality.raw_score(c) for c in crops])
    reference = np.array([quality.raw_score(c, np.float64) for c in crops])
    assert np.abs(fast - reference).max() < 0.1, np.abs(fast - reference)
    assert (fast[1::3] > fast[0::3]).all()  # blurred scores worse than sharp, as in float64
    assert np.allclose(quality.score(np.stack(crops)), np.clip(1 - fast / 100, 0, 1))


def _neighbour_maps(m: np.ndarray) -> tuple[np.ndarray, ...]:
    """The MSCN map and its four neighbour products as arrays (what the fused pass never builds)."""
    m = m.astype(np.float64)  # a product of two float32 values is exact in float64
    return m, m[:, :-1] * m[:, 1:], m[:-1] * m[1:], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]


def _gray(bgr: np.ndarray, dtype) -> np.ndarray:
    return cv2.transform(bgr.astype(dtype), brisque_iqa._GRAY_BGR[None].astype(dtype))


def _numpy_mscn(gray: np.ndarray) -> np.ndarray:
    k = brisque_iqa._KERNEL_1D
    mean = cv2.sepFilter2D(gray, -1, k, k, borderType=cv2.BORDER_CONSTANT)
    mean_sq = cv2.sepFilter2D(gray * gray, -1, k, k, borderType=cv2.BORDER_CONSTANT)
    return (gray - mean) / (np.sqrt(np.abs(mean * mean - mean_sq)) + brisque_iqa._C)


def _plain_features(bgr: np.ndarray, dtype) -> np.ndarray:
    """BRISQUE's 36 features the plain way: numpy MSCN, explicit product arrays, numpy sums."""
    gray = _gray(bgr, dtype)
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    features = []
    for image in (gray, half):
        maps = _neighbour_maps(_numpy_mscn(image))
        alpha, _, sigma_l, sigma_r = brisque_iqa.aggd_fit(maps[0])
        features += [alpha, (sigma_l**2 + sigma_r**2) / 2]
        for pair in maps[1:]:
            alpha, mean_, sigma_l, sigma_r = brisque_iqa.aggd_fit(pair)
            features += [alpha, mean_, sigma_l**2, sigma_r**2]
    return np.array(features)


@pytest.fixture(scope="module")
def sample_face_crops() -> list[np.ndarray]:
    crops = []
    for name in ("astronaut", sample._PERSON_A, sample._PERSON_B, sample._PERSON_C):
        photo = cv2.resize(sample.load_photo(name), (448, 448))
        crops += [photo, cv2.GaussianBlur(photo, (0, 0), 3)]
    return crops + [np.clip(photo + np.random.default_rng(0).normal(0, 15, photo.shape), 0, 255).astype(np.uint8)]


def test_compiled_mscn_is_the_opencv_and_numpy_one(sample_face_crops):
    """The normalisation pass is numpy's bit for bit in both dtypes; the pass that also filters
    (float32's) is OpenCV's zero-padded Gaussian (checked in float64, where rounding is ~1e-16),
    and in float32 as close to the float64 result as OpenCV's float32 filters are (the MSCN
    divides |x - mean| by the local deviation + 1/255, which magnifies float32 rounding)."""
    from mfhq.models import brisque_kernels as kernels

    for dtype in (np.float32, np.float64):
        for gray in (_gray(sample_face_crops[0], dtype), _gray(sample_face_crops[-1], dtype)[:50, :31]):
            k = brisque_iqa._KERNEL_1D
            mean = cv2.sepFilter2D(gray, -1, k, k, borderType=cv2.BORDER_CONSTANT)
            mean_sq = cv2.sepFilter2D(gray * gray, -1, k, k, borderType=cv2.BORDER_CONSTANT)
            expected = _numpy_mscn(gray)
            out = np.empty_like(gray)
            kernels.mscn_into(gray, mean, mean_sq, dtype(brisque_iqa._C), out)
            assert expected.dtype == dtype and np.array_equal(out, expected)
            kernels.mscn_filtered(np.ascontiguousarray(gray), k.astype(dtype), dtype(brisque_iqa._C), out)
            if dtype == np.float64:
                assert np.array_equal(brisque_iqa.mscn(gray), expected)
                assert np.abs(out - expected).max() < 1e-9
            else:  # float32 sums in another order: as close as OpenCV's float32 to the float64 truth
                assert np.array_equal(brisque_iqa.mscn(gray), out)
                truth = _numpy_mscn(gray.astype(np.float64))
                ours, opencvs = np.abs(out - truth), np.abs(expected - truth)
                assert ours.mean() <= 1.05 * opencvs.mean() and ours.max() < 0.02, (ours.mean(), opencvs.mean())


def test_fused_brisque_sums_equal_numpy_sums(sample_face_crops):
    """One compiled pass gives, for the MSCN map and its four neighbour products, the counts
    exactly and the sums to float64 rounding, on random maps (odd sizes, heavy tails, both
    dtypes) and on a real face crop's MSCN at both scales in both dtypes."""
    from mfhq.models import brisque_kernels as kernels

    rng = np.random.default_rng(1)
    maps = [rng.normal(size=(37, 53)).astype(np.float32), rng.laplace(size=(64, 41)), rng.normal(size=(2, 3))]
    for dtype in (np.float32, np.float64):
        gray = _gray(sample_face_crops[0], dtype)
        half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
        maps += [brisque_iqa.mscn(gray), brisque_iqa.mscn(half)]
    for m in maps:
        fused = kernels.orientation_stats(m)
        plain = np.stack([brisque_iqa.aggd_sums(x) for x in _neighbour_maps(m)])
        counts = [kernels.N, kernels.N_LEFT]
        assert np.array_equal(fused[:, counts], plain[:, counts]), (m.shape, fused, plain)
        assert np.allclose(fused, plain, rtol=1e-12, atol=0), (m.shape, fused - plain)


def test_brisque_score_is_the_plain_computations_score_on_the_samples_crops(sample_face_crops):
    """The compiled passes do not change the score: in float64 within 1e-6 (of 0-100) of the
    plain numpy formulation's (OpenCV filters, explicit product arrays, numpy sums); in float32,
    whose filter sums in another order, no further from that float64 score than the plain
    float32 computation is (under 0.01 here, against 0.06 for the plain one on one crop), on
    sharp, blurred and noisy face crops."""
    quality = create_backend("quality", "brisque")
    quality.setup()
    fast64 = np.array([quality.raw_score(c, np.float64) for c in sample_face_crops])
    plain64 = np.array([quality.predict(_plain_features(c, np.float64)) for c in sample_face_crops])
    assert np.abs(fast64 - plain64).max() < 1e-6, fast64 - plain64
    fast32 = np.array([quality.raw_score(c, np.float32) for c in sample_face_crops])
    plain32 = np.array([quality.predict(_plain_features(c, np.float32)) for c in sample_face_crops])
    ours, plains = np.abs(fast32 - plain64), np.abs(plain32 - plain64)
    assert ours.max() <= max(plains.max(), 0.01), (ours, plains)
    for fast in (fast32, fast64):
        assert (fast[1:8:2] > fast[0:8:2]).all()  # blurred is worse


def test_kernels_compile_where_numba_cannot_cache(monkeypatch, caplog):
    """A read-only install with a read-only home leaves numba no cache locator, and it refuses
    `cache=True` at decoration: `mfhq.compiled` (used by the BRISQUE and curation kernels) then
    compiles without a cache, with one warning."""
    from numba.core import caching

    from mfhq import compiled

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])  # what numba finds there
    monkeypatch.setattr(compiled, "uncached", [])
    with caplog.at_level("WARNING", logger=compiled.__name__):
        twice = compiled.compiled()(lambda x: 2 * x)
        plus = compiled.compiled(error_model="numpy")(lambda x: x + 1)
    assert (twice(3), plus(3)) == (6, 4)
    assert len(caplog.records) == 1 and "NUMBA_CACHE_DIR" in caplog.text
    assert len(compiled.uncached) == 2


def test_compiled_alpha_finds_scipys_root_and_falls_back_where_there_is_none():
    from scipy import optimize, special

    from mfhq.models import brisque_kernels as kernels

    x = np.r_[np.linspace(0.02, 3, 150), np.linspace(3, 200, 50)]
    assert np.allclose([kernels.digamma(v) for v in x], special.digamma(x), rtol=1e-13, atol=1e-13)

    def scipy_root(big_r):
        phi = lambda a: special.gamma(2 / a) ** 2 / (special.gamma(1 / a) * special.gamma(3 / a)) - big_r  # noqa: E731
        return float(optimize.root(phi, [0.2]).x[0])

    for big_r in (0.001, 0.01, 0.05, 0.1, 0.3, 0.5, 0.6366, 0.7, 0.74, 0.749):
        assert abs(brisque_iqa._solve_alpha(big_r) / scipy_root(big_r) - 1) < 1e-7, big_r
    # No root (the ratio lies in (0, 0.75)): Newton gives up and the answer is scipy's, as before.
    for big_r in (0.8, 0.0, float("nan")):
        assert np.isnan(kernels.newton_alpha(big_r))
    assert brisque_iqa._solve_alpha(0.8) == scipy_root(0.8)


@pytest.fixture(scope="module")
def clips_1080p(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench-clips")
    make_clips(out, 1, "1080p", seconds=0.6)
    return out


def test_bench_clips_are_1080p_with_a_large_face_and_chunks_stay_bounded(clips_1080p):
    index = json.loads((clips_1080p / "clips.json").read_text())
    (entry,) = index["clips"]
    decoder = ClipDecoder(DecodeConfig(chunk_frames=32))
    info = decoder.open(clips_1080p / entry["file"])
    assert (info.width, info.height, info.n_frames) == (1920, 1080, entry["n_frames"])
    chunks = list(decoder.chunks(clips_1080p / entry["file"], list(range(info.n_frames))))
    decoder.close()
    assert all(c.frames.nbytes <= CHUNK_BYTES for c in chunks) and sum(len(c.frames) for c in chunks) == info.n_frames
    widths = [b[2] - b[0] for b in entry["face_boxes"].values()]
    assert 450 < min(widths) and max(widths) < 750
    found = _detector(640).detect([chunks[0].frames[0]])[0]
    assert len(found.scores) == 1
    assert box_iou(np.asarray(entry["face_boxes"]["0"], np.float64), found.boxes.astype(np.float64))[0] > 0.6
    # Encoded as ffmpeg's command line encodes: one slice per frame, so a decoder gets one core
    # per stream as with the sources' clips (slices spread over threads would speed decode-only).
    assert _slices_per_frame(clips_1080p / entry["file"]) == {1}


def _slices_per_frame(path: Path) -> set[int]:
    """The number of coded slices (H.264 NAL units of type 1 or 5) in each packet of an MP4."""
    import av

    counts = set()
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            data, pos, slices = bytes(packet), 0, 0
            while pos + 4 <= len(data):  # MP4 stores NAL units behind 4-byte big-endian lengths
                size = int.from_bytes(data[pos:pos + 4], "big")
                slices += (data[pos + 4] & 0x1F) in (1, 5)
                pos += 4 + size
            if data:
                counts.add(slices)
    return counts


def test_bench_reports_decode_stages_ratio_and_worker_rss(clips_1080p, tmp_path):
    result = json.loads(run_cli("bench", "--root", str(clips_1080p), "--out", str(tmp_path / "run"),
                                "--pipeline", str(SAMPLE_PRESET), "--json").stdout)
    assert result["clips"] == 1 and result["status"] == {"ok": 1}
    assert result["faces_kept"] == result["sampled_frames"] > 0  # the one face, in every sampled frame
    assert {"decode", "detect", "embed", "quality"} <= set(result["stages"])
    assert result["stages"]["detect"]["ms_per_face"] > 0
    assert 0 < result["ratio_stage_time"] and 0 < result["ratio_wall"]
    before, after = result["decode_only"]["wall_s_before_and_after"]
    assert before > 0 and after > 0
    assert result["decode_only"]["wall_s"] == pytest.approx((before + after) / 2, abs=2e-3)
    assert result["peak_rss_worker_mib"] > 100
    # CPU beside wall: with decode-ahead a worker may keep more than one core busy. The preset
    # leaves it to auto: on for 1 worker where there is a core to spare.
    assert result["decode_ahead"] == "auto" and result["reads_ahead"] == (usable_cores() > 1)
    assert result["decode_only"]["cpu_s"] > 0 and result["extract"]["cpu_s"] > result["decode_only"]["cpu_s"]
    assert result["extract"]["cores_busy"] == pytest.approx(result["extract"]["cpu_s"] / result["extract"]["wall_s"])


def test_bench_curate_merge_fits_an_exponent_over_three_sizes():
    from mfhq.curate.bench import run_bench_merge

    lines, result = run_bench_merge(600, CurateConfig())
    assert result["sizes"] == [150, 300, 600] and len(result["cpu_s"]) == 3
    assert result["same_as_all_pairs"] is True  # the candidate search, forced even at this size
    assert np.isfinite(result["exponent_cpu"]) and any("clips^" in line for line in lines)
    assert merge.EXACT_BELOW == 40_000  # the bench's override is undone
