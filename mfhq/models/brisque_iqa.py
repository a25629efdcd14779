"""BRISQUE no-reference quality with the SVM regressor that ships in the `brisque` wheel.

The package's own scorer breaks on numpy 2 and convolves in pure scipy, so we compute the same
36 natural-scene-statistics features here (same kernel, constants and fitting as the package,
checked against it in the tests) and feed its SVM through libsvm; in float32 by default, which
moves the score by under 0.1 point (see `brisque_features`). BRISQUE says 0 for pristine
and ~100 for badly distorted images; we report quality = 1 - score/100, clipped to [0, 1].
The per-pixel work runs in numba kernels (`brisque_kernels`: ~1.7-2 ms a 448 px crop on one
core, ~3.7x less than the numpy formulation), compiled or loaded from numba's cache in `load()`.
"""
from __future__ import annotations

import math
import pickle

import numpy as np

from mfhq.models.base import Backend
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
_KERNEL_1D = _KERNEL.sum(1)  # the 2-D kernel is the outer product of its (normalised) marginals
_KERNEL_1D_32 = _KERNEL_1D.astype(np.float32)


def mscn(gray: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients, zero padding as in the reference.

    float64: the Gaussian is separable, so two 1-D OpenCV passes give the reference's 2-D filter
    to rounding (~1e-16), then one compiled pass normalises (numpy's result bit for bit).
    float32: one compiled pass filters and normalises (`kernels.mscn_filtered`, 2x faster); its
    sums run in another order than OpenCV's, which moves the score by under 0.005 (of 0-100)."""
    import cv2

    from mfhq.models import brisque_kernels as kernels  # numba: loaded in load(), not at import

    gray = np.ascontiguousarray(gray)  # the layout the kernels are compiled (and warmed up) for
    out = np.empty_like(gray)
    if gray.dtype == np.float32:
        kernels.mscn_filtered(gray, _KERNEL_1D_32, np.float32(_C), out)
        return out
    mean = cv2.sepFilter2D(gray, -1, _KERNEL_1D, _KERNEL_1D, borderType=cv2.BORDER_CONSTANT)
    mean_sq = cv2.sepFilter2D(gray * gray, -1, _KERNEL_1D, _KERNEL_1D, borderType=cv2.BORDER_CONSTANT)
    kernels.mscn_into(gray, mean, mean_sq, gray.dtype.type(_C), out)
    return out


def _solve_alpha(big_r: float) -> float:
    """The shape alpha with gamma(2/a)^2 / (gamma(1/a) gamma(3/a)) = big_r.

    Compiled Newton's method on the log of that ratio, with its exact derivative (digammas),
    from the reference's start 0.2 (`kernels.newton_alpha`, ~2 us). scipy's general root finder
    (the reference's) needs a numerical Jacobian and gives the same root to its tolerance; it
    remains the fallback where Newton does not settle (no root), imported only then."""
    from mfhq.models import brisque_kernels as kernels

    alpha = kernels.newton_alpha(float(big_r))
    if alpha == alpha:  # not NaN
        return float(alpha)
    from scipy import optimize, special

    def phi(a):
        return special.gamma(2 / a) ** 2 / (special.gamma(1 / a) * special.gamma(3 / a)) - big_r

    return float(optimize.root(phi, [0.2]).x[0])


def aggd_sums(x: np.ndarray) -> np.ndarray:
    """The five sums the fit needs (kernels.N...ABS_SUM), by plain numpy in float64: the
    reference for `kernels.orientation_stats`, which gives them for all five maps in one pass."""
    x = np.asarray(x, np.float64).ravel()
    left = np.minimum(x, 0.0)
    return np.array([x.size, np.count_nonzero(left), left @ left, x @ x, np.abs(x).sum()], np.float64)


def aggd_from_sums(sums) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit, (alpha, mean, sigma_left, sigma_right), from the sums
    of the values (see aggd_sums), with the reference's estimators."""
    n, n_left, left_sq, total_sq, abs_sum = (float(v) for v in sums)
    sigma_l = math.sqrt(left_sq / n_left) if n_left else 0.0
    sigma_r = math.sqrt((total_sq - left_sq) / (n - n_left)) if n > n_left else 0.0
    gamma = sigma_l / sigma_r if sigma_r > 0 else 1.0
    r_hat = (abs_sum / n) ** 2 / (total_sq / n) if total_sq > 0 else math.nan
    big_r = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    alpha = _solve_alpha(big_r)
    # gamma(1/a) / gamma(3/a) and gamma(2/a) / gamma(1/a) through lgamma: no overflow for small a.
    if alpha > 0:
        lg1, lg2, lg3 = math.lgamma(1 / alpha), math.lgamma(2 / alpha), math.lgamma(3 / alpha)
        mean = (sigma_r - sigma_l) * math.exp(0.5 * (lg1 - lg3) + lg2 - lg1)
    else:  # only from scipy's fallback on degenerate input (no root)
        mean = math.nan
    return float(alpha), mean, sigma_l, sigma_r


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit of any array: (alpha, mean, sigma_left, sigma_right)."""
    return aggd_from_sums(aggd_sums(x))


def scale_features(gray: np.ndarray) -> list[float]:
    """The 18 features of one scale: the fit of the MSCN map, then of its products with the
    right, lower and two diagonal neighbours; the sums of all five come from one compiled pass."""
    from mfhq.models import brisque_kernels as kernels

    sums = kernels.orientation_stats(mscn(gray))
    alpha, _, sigma_l, sigma_r = aggd_from_sums(sums[kernels.MSCN])
    features = [alpha, (sigma_l**2 + sigma_r**2) / 2]
    for row in (kernels.HORIZONTAL, kernels.VERTICAL, kernels.MAIN_DIAGONAL, kernels.ANTI_DIAGONAL):
        alpha, mean, sigma_l, sigma_r = aggd_from_sums(sums[row])
        features += [alpha, mean, sigma_l**2, sigma_r**2]
    return features


_GRAY_BGR = np.array([0.0721, 0.7154, 0.2125]) / 255.0


def brisque_features(bgr: np.ndarray, dtype=np.float32) -> np.ndarray:
    """The 36 features. The reference computes in float64; float32 images (the default) make
    the features ~3x faster on a 448 crop (~1.4 ms; the filters ~5x) and move the BRISQUE
    score by under 0.1 of its 0-100 scale (~0.005 measured; 0.001 of quality;
    tests/mfhq/models/test_brisque_iqa.py), far below what separates a sharp face from a blurred one. float64
    gives the reference's features (tests). The fit's sums are float64 in both."""
    import cv2

    # skimage's rgb2gray weights (the reference implementation's conversion), on BGR with the
    # 1/255 folded into the weights, by OpenCV (one thread in a worker): 4x faster than numpy
    # on a reversed view, the same to ~1e-16.
    gray = cv2.transform(bgr.astype(dtype), _GRAY_BGR[None].astype(dtype))
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    return np.array(scale_features(gray) + scale_features(half), np.float64)


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
        # Score one crop-sized texture here, once per worker: it compiles (or loads from numba's
        # cache) the kernels extract uses (float32) and takes OpenCV's and libsvm's first-call
        # costs, so none of it lands in the first clip's stage time. scipy is not imported: its
        # root finder is only the fallback for maps with no root (none on real crops). The
        # float64 path (the reference check in tests) compiles on its first call.
        y, x = np.mgrid[:448, :448]
        texture = 128 + 60 * np.sin(x / 3.0) * np.cos(y / 5.0) + x / 8
        self.raw_score(np.repeat(texture[..., None], 3, axis=2).astype(np.uint8))

    def raw_score(self, bgr: np.ndarray, dtype=np.float32) -> float:
        """The BRISQUE score itself: 0 pristine, ~100 badly distorted (dtype: see brisque_features)."""
        return self.predict(brisque_features(bgr, dtype))

    def predict(self, features: np.ndarray) -> float:
        """The SVM's BRISQUE score of the 36 features."""
        scaled = -1 + 2.0 / (self._max - self._min) * (features - self._min)
        nodes, _ = self._svmutil.gen_svm_nodearray([float(v) for v in scaled], isKernel=False)
        estimates = (self._svmutil.c_double * 1)()
        return float(self._svmutil.libsvm.svm_predict_probability(self._model, nodes, estimates))

    def score(self, crops: np.ndarray) -> np.ndarray:
        return np.array([np.clip(1.0 - self.raw_score(c) / 100.0, 0.0, 1.0) for c in crops], np.float32)
