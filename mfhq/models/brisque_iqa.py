"""BRISQUE no-reference quality with the SVM regressor that ships in the `brisque` wheel.

The package's own scorer breaks on numpy 2 and convolves in pure scipy, so we compute the same
36 natural-scene-statistics features here (same kernel, constants and fitting as the package,
checked against it in the tests) and feed its SVM through libsvm. BRISQUE says 0 for pristine
and ~100 for badly distorted images; we report quality = 1 - score/100, clipped to [0, 1].
"""
from __future__ import annotations

import pickle

import numpy as np

from mfhq.models.registry import Backend, register_backend
from mfhq.models.weights import WeightFile

_COMMON = dict(
    package="brisque",
    sha256=None,
    origin="BRISQUE LIVE-trained SVM, shipped in the brisque wheel",
    fetch="pip install brisque==0.2.0",
    licence="Apache-2.0",
)
SVM = WeightFile(name="brisque_svm.txt", package_path="models/svm.txt", **_COMMON)
NORMALIZE = WeightFile(name="brisque_normalize.pickle", package_path="models/normalize.pickle", **_COMMON)

_C = 1.0 / 255.0


def _gaussian_kernel(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    y, x = np.indices((size, size)) - size // 2
    kernel = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return kernel / kernel.sum()


_KERNEL = _gaussian_kernel()


def mscn(gray: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients, zero padding as in the reference."""
    import cv2

    mean = cv2.filter2D(gray, -1, _KERNEL, borderType=cv2.BORDER_CONSTANT)
    mean_sq = cv2.filter2D(gray * gray, -1, _KERNEL, borderType=cv2.BORDER_CONSTANT)
    deviation = np.sqrt(np.abs(mean * mean - mean_sq))
    return (gray - mean) / (deviation + _C)


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit: (alpha, mean, sigma_left, sigma_right)."""
    from scipy import optimize, special

    x = x.ravel()
    left, right = x[x < 0], x[x >= 0]
    sigma_l = np.sqrt(np.mean(left**2)) if left.size else 0.0
    sigma_r = np.sqrt(np.mean(right**2)) if right.size else 0.0
    gamma = sigma_l / sigma_r if sigma_r > 0 else 1.0
    r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
    big_r = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2

    def phi(a):
        return special.gamma(2 / a) ** 2 / (special.gamma(1 / a) * special.gamma(3 / a)) - big_r

    alpha = float(optimize.root(phi, [0.2]).x[0])
    constant = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (sigma_r - sigma_l) * constant * special.gamma(2 / alpha) / special.gamma(1 / alpha)
    return alpha, float(mean), float(sigma_l), float(sigma_r)


def scale_features(gray: np.ndarray) -> list[float]:
    m = mscn(gray)
    pairs = (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:])
    alpha, _, sigma_l, sigma_r = aggd_fit(m)
    features = [alpha, (sigma_l**2 + sigma_r**2) / 2]
    for pair in pairs:
        alpha, mean, sigma_l, sigma_r = aggd_fit(pair)
        features += [alpha, mean, sigma_l**2, sigma_r**2]
    return features


def brisque_features(bgr: np.ndarray) -> np.ndarray:
    import cv2

    # skimage's rgb2gray weights (the reference implementation's conversion).
    rgb = bgr[..., ::-1].astype(np.float64) / 255.0
    gray = rgb @ np.array([0.2125, 0.7154, 0.0721])
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    return np.array(scale_features(gray) + scale_features(half), np.float64)


@register_backend
class BrisqueQuality(Backend):
    name = "brisque"
    task = "quality"
    licence = SVM.licence
    weight_files = (SVM, NORMALIZE)

    def load(self) -> None:
        from libsvm import svmutil

        self._svmutil = svmutil
        self._model = svmutil.svm_load_model(str(self.paths[SVM.name]))
        with open(self.paths[NORMALIZE.name], "rb") as handle:
            params = pickle.load(handle)
        self._min = np.array([float(v) for v in params["min_"]])
        self._max = np.array([float(v) for v in params["max_"]])

    def raw_score(self, bgr: np.ndarray) -> float:
        """The BRISQUE score itself: 0 pristine, ~100 badly distorted."""
        features = brisque_features(bgr)
        scaled = -1 + 2.0 / (self._max - self._min) * (features - self._min)
        nodes, _ = self._svmutil.gen_svm_nodearray([float(v) for v in scaled], isKernel=False)
        estimates = (self._svmutil.c_double * 1)()
        return float(self._svmutil.libsvm.svm_predict_probability(self._model, nodes, estimates))

    def score(self, crops: np.ndarray) -> np.ndarray:
        return np.array([np.clip(1.0 - self.raw_score(c) / 100.0, 0.0, 1.0) for c in crops], np.float32)
