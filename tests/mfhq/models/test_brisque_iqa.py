"""BRISQUE quality: its features match the reference package, the fast fit and the compiled
kernels give the plain computation's score, and quality drops with blur."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from mfhq import sample
from mfhq.align import arcface_template, similarity_transform, warp
from mfhq.models import brisque_iqa, create_backend
from mfhq.models.brisque_iqa import scale_features


def _aligned(detector, image, size):
    found = detector.detect([image])[0]
    return warp(image, similarity_transform(found.landmarks[0], arcface_template(size)), size)


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
