"""Compiled BRISQUE pieces (numba, one thread): the MSCN map (filtered and normalised in one
pass for float32; normalised after OpenCV's filters for float64), the fused sums the asymmetric
generalised Gaussian fit needs, and its shape parameter's root.

The fit of one orientation needs only four numbers: how many values are negative, the sum of
squares of the negative ones, the sum of all squares and the sum of absolute values. One pass
over two rows at a time gives them for the MSCN map and its four neighbour products at once, so
the products are never stored (the numpy formulation wrote and re-read five arrays of the crop's
size, and ran five passes over each). Sums are float64 whatever the image dtype: a float32
product of two float32 values is exact in float64, and the sums keep ~1e-13 relative accuracy.
"""
from __future__ import annotations

import math

import numpy as np

from mfhq.compiled import compiled


@compiled(error_model="numpy")
def mscn_into(gray, mean, mean_sq, c, out):
    """out = (gray - mean) / (sqrt(|mean^2 - mean_sq|) + c), elementwise in the arrays' dtype with
    numpy's order of operations (so numpy's result bit for bit, in one pass instead of seven).
    numpy's error model: no zero-division check per element, which kept LLVM from vectorising."""
    for i in range(gray.shape[0]):
        for j in range(gray.shape[1]):
            mu = mean[i, j]
            deviation = np.sqrt(np.abs(mu * mu - mean_sq[i, j]))
            out[i, j] = (gray[i, j] - mu) / (deviation + c)


@compiled(error_model="numpy")
def mscn_filtered(gray, kernel, c, out):
    """mscn_into with the local mean and mean square computed here too: the 7-tap symmetric
    Gaussian `kernel` in both directions with zero padding, in the image's dtype, one pass over
    rows (2.2x faster than two OpenCV filters, a product and mscn_into in float32). The same
    filter as OpenCV's to the dtype's rounding, summed in another order; used for float32 only
    (the float64 path keeps OpenCV's, checked against the reference package)."""
    h, w = gray.shape
    k0, k1, k2, k3 = kernel[0], kernel[1], kernel[2], kernel[3]
    zeros = np.zeros(w, gray.dtype)
    v_mean = np.zeros(w + 6, gray.dtype)  # the vertical pass of row i, 3 zeros either side
    v_sq = np.zeros(w + 6, gray.dtype)
    for i in range(h):
        r0 = gray[i - 3] if i >= 3 else zeros
        r1 = gray[i - 2] if i >= 2 else zeros
        r2 = gray[i - 1] if i >= 1 else zeros
        r3 = gray[i]
        r4 = gray[i + 1] if i + 1 < h else zeros
        r5 = gray[i + 2] if i + 2 < h else zeros
        r6 = gray[i + 3] if i + 3 < h else zeros
        for j in range(w):
            g0, g1, g2, g3, g4, g5, g6 = r0[j], r1[j], r2[j], r3[j], r4[j], r5[j], r6[j]
            v_mean[j + 3] = k0 * (g0 + g6) + k1 * (g1 + g5) + k2 * (g2 + g4) + k3 * g3
            v_sq[j + 3] = k0 * (g0 * g0 + g6 * g6) + k1 * (g1 * g1 + g5 * g5) \
                + k2 * (g2 * g2 + g4 * g4) + k3 * (g3 * g3)
        for j in range(w):
            mu = k0 * (v_mean[j] + v_mean[j + 6]) + k1 * (v_mean[j + 1] + v_mean[j + 5]) \
                + k2 * (v_mean[j + 2] + v_mean[j + 4]) + k3 * v_mean[j + 3]
            sq = k0 * (v_sq[j] + v_sq[j + 6]) + k1 * (v_sq[j + 1] + v_sq[j + 5]) \
                + k2 * (v_sq[j + 2] + v_sq[j + 4]) + k3 * v_sq[j + 3]
            deviation = np.sqrt(np.abs(mu * mu - sq))
            out[i, j] = (r3[j] - mu) / (deviation + c)


# Rows of the statistics table, one per orientation, in `scale_features`' order.
MSCN, HORIZONTAL, VERTICAL, MAIN_DIAGONAL, ANTI_DIAGONAL = range(5)
N, N_LEFT, LEFT_SQ, TOTAL_SQ, ABS_SUM = range(5)


@compiled(inline="always")
def _accumulate(a, b, stats, row):
    """Add the sums of x = a * b (float64) to stats[row]. Inlined into orientation_stats, whose
    `reassoc` lets LLVM keep the four sums in vector lanes: the same sums to float64 rounding,
    in a different order."""
    n_left = 0
    left_sq = 0.0
    total_sq = 0.0
    abs_sum = 0.0
    for j in range(a.shape[0]):
        x = np.float64(a[j]) * np.float64(b[j])
        square = x * x
        negative = x < 0.0
        n_left += 1 if negative else 0
        left_sq += square if negative else 0.0
        total_sq += square
        abs_sum += abs(x)
    stats[row, N] += a.shape[0]
    stats[row, N_LEFT] += n_left
    stats[row, LEFT_SQ] += left_sq
    stats[row, TOTAL_SQ] += total_sq
    stats[row, ABS_SUM] += abs_sum


@compiled(fastmath={"reassoc"})
def orientation_stats(m):
    """[5 orientations, 5 sums] (N, N_LEFT, LEFT_SQ, TOTAL_SQ, ABS_SUM) of the MSCN map m and of
    its products with the right, lower, lower-right and (anti-diagonal) lower-left neighbours,
    i.e. of m, m[:, :-1] * m[:, 1:], m[:-1] * m[1:], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]."""
    stats = np.zeros((5, 5))
    h, w = m.shape
    ones = np.ones(w, m.dtype)  # the map itself as a product with 1 (exact)
    for i in range(h):
        top = m[i]
        _accumulate(top, ones, stats, MSCN)
        _accumulate(top[:-1], top[1:], stats, HORIZONTAL)
        if i + 1 < h:
            below = m[i + 1]
            _accumulate(top, below, stats, VERTICAL)
            _accumulate(top[:-1], below[1:], stats, MAIN_DIAGONAL)
            _accumulate(below[:-1], top[1:], stats, ANTI_DIAGONAL)
    return stats


@compiled()
def digamma(x):
    """psi(x) for x > 0: the recurrence psi(x) = psi(x + 1) - 1/x up to x >= 10, then the
    asymptotic series (truncation error below 2e-14 there)."""
    result = 0.0
    while x < 10.0:
        result -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    series = f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f * (1 / 132)))))
    return result + math.log(x) - 0.5 / x - series


@compiled()
def newton_alpha(big_r):
    """The shape alpha with gamma(2/a)^2 / (gamma(1/a) gamma(3/a)) = big_r, by Newton's method on
    the log of that ratio with its exact derivative, from the reference's start 0.2; NaN where it
    does not settle (no root: big_r outside (0, 0.75); the caller then asks scipy)."""
    if not big_r > 0.0:
        return np.nan
    target = math.log(big_r)
    alpha = 0.2
    for _ in range(60):
        a1, a2, a3 = 1.0 / alpha, 2.0 / alpha, 3.0 / alpha
        value = 2.0 * math.lgamma(a2) - math.lgamma(a1) - math.lgamma(a3) - target
        slope = -(4.0 * digamma(a2) - digamma(a1) - 3.0 * digamma(a3)) / (alpha * alpha)
        if not (np.isfinite(value) and np.isfinite(slope)) or slope == 0.0:
            return np.nan
        new = alpha - value / slope
        if new <= 0.0:  # damped where a full step would leave alpha's domain (alpha > 0)
            new = alpha / 2.0
        if abs(new - alpha) <= 1e-12 * max(alpha, 1.0):
            return new
        alpha = new
    return np.nan
