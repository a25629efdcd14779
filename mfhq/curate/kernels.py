"""Compiled per-identity pose k-means and 8-face selection (numba).

One identity's faces are a contiguous run of rows (faces sorted by identity). Each identity is
independent, so callers split whole identities between threads (the kernels hold no GIL), never
one identity's arithmetic, and the result is the same for any number of threads. Inside, everything
runs over the identity's few hundred faces held in per-thread scratch, so no [faces x K] array
ever exists, and the loops that touch every face (hashing, distances, the assignment) run
across faces, which the compiler turns into vector instructions.

Pose arrives as three float32 columns (yaw, pitch, roll), as the face table stores it.
Randomness (k-means++ seeding) comes from a hash of (seed, global face ordinal, step), so a face's
draw does not depend on how faces are batched.
"""
from __future__ import annotations

import numpy as np
from mfhq.compiled import compiled

_FAR = np.float32(1e15)  # unused centroids (identities with fewer than K faces) sit here
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_STEP = np.uint64(0xD1B54A32D192ED03)


@compiled(inline="always")
def _uniform(ordinal_mix: np.uint64, step_mix: np.uint64) -> float:
    """Uniform (0, 1]: splitmix64 of (ordinal * golden) ^ (seed_mix + step * C)."""
    x = ordinal_mix ^ step_mix
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    # int64 first: below 2**53 it converts exactly, and faster than an unsigned one
    return (float(np.int64(x >> np.uint64(11))) + 1.0) / 9007199254740992.0  # 2**53


@compiled(inline="always")
def _floor_bits(w, u):
    """A lower bound of w / -log(u), as the bits of a float32 (non-negative floats order as
    their bits): -log(u) <= (1 - u) / u, so the score is at least w u / (1 - u), here in float32
    (relative error under 1e-6). u = 1 scores -inf and NaN weights never win, so they bound
    nothing; tiny and huge bounds are dropped, so float32 underflow and overflow cannot raise it."""
    t = 1.0 - u
    low = np.float32(w) * np.float32(u) / np.float32(t)
    bound = np.float32(low if t > 0.0 and low > 1e-30 and low < 1e30 else 0.0)
    return bound.view(np.int32)


@compiled(inline="always")
def _race(n, ws, us, floor_bits, may_win, words):
    """The exponential race over faces 0:n: argmax of w_i / -log(u_i), the lowest face on ties.
    floor_bits: the largest _floor_bits of the faces; may_win (words: its uint64 view, zero from
    n to the next multiple of 8) is scratch.

    The winner scores at least that bound less 1e-6, and -log(u) >= 1 - u bounds each score from
    above by w / (1 - u) (a margin of 1e-9 covers rounding): faces whose upper bound falls short
    cannot win, ruled out in vector code. When one face is left it needs no logarithm, else the
    few left race one by one."""
    least = np.float64(np.int32(floor_bits).view(np.float32)) * (1.0 - 1e-6)
    count = 0
    for i in range(n):
        flag = np.uint8(0) if ws[i] * (1.0 + 1e-9) < least * (1.0 - us[i]) else np.uint8(1)
        may_win[i] = flag
        count += flag
    best, pick = -1.0, 0
    for word in range((n + 7) // 8):
        if words[word] == 0:
            continue
        for i in range(8 * word, min(8 * word + 8, n)):
            if may_win[i] == 0:
                continue
            if count == 1:  # the only face that can win
                return i
            w, u = ws[i], us[i]
            if w * (1.0 + 1e-9) < best * (1.0 - u):
                continue
            score = w / -np.log(u)
            if score > best:
                best, pick = score, i
    return pick


@compiled(error_model="numpy")
def _seed(xs, ys, zs, k, ordinal0, seed_mix, cent, d2, ws, us, mixes, may_win, words):
    """k-means++ seeding of one identity's faces (xs, ys, zs) into cent [3, k] by an exponential
    race: the argmax of w_i / E_i with E_i ~ Exp(1) picks face i with probability w_i / sum(w),
    w being the squared distance to the nearest chosen centre. d2, ws, us, mixes [>= n] and the
    race's may_win [>= n rounded up to 8] are scratch."""
    n = len(xs)
    cent[:, :] = _FAR
    base = np.uint64(ordinal0) * _GOLDEN
    for i in range(n):
        mixes[i] = base + np.uint64(i) * _GOLDEN  # ordinal * golden, mod 2**64
        d2[i] = np.inf
    for i in range(n, (n + 7) // 8 * 8):
        may_win[i] = 0
    for j in range(min(n, k)):
        step_mix = seed_mix + np.uint64(j) * _STEP
        top = np.int32(0)
        if j == 0:  # the first centre: every face weighs the same
            for i in range(n):
                us[i] = _uniform(mixes[i], step_mix)
                ws[i] = 1.0
                top = max(top, _floor_bits(1.0, us[i]))
        else:  # the draws, and the squared distance to the nearest centre with the one just chosen
            cx, cy, cz = cent[0, j - 1], cent[1, j - 1], cent[2, j - 1]
            for i in range(n):
                us[i] = _uniform(mixes[i], step_mix)
                a = xs[i] - cx
                b = ys[i] - cy
                c = zs[i] - cz
                e = a * a + b * b + c * c
                d2[i] = e if e < d2[i] else d2[i]
                ws[i] = np.float64(d2[i])
                top = max(top, _floor_bits(ws[i], us[i]))
        pick = _race(n, ws, us, top, may_win, words)
        cent[0, j], cent[1, j], cent[2, j] = xs[pick], ys[pick], zs[pick]


@compiled(error_model="numpy")
def _lloyd(xs, ys, zs, k, iters, labels, cent, near_d, near_j, sums, counts):
    """Lloyd iterations from the seeded cent [3, k] into labels [n] (int32), stopping once no
    label changes. near_d, near_j [>= n], sums [k, 3], counts [k] are scratch."""
    n = len(xs)
    rounds = max(iters, 1)  # at least one assignment
    for it in range(rounds):
        for i in range(n):  # nearest centroid, across faces: centroid 0, then strictly closer ones
            a = cent[0, 0] - xs[i]
            b = cent[1, 0] - ys[i]
            c = cent[2, 0] - zs[i]
            near_d[i] = a * a + b * b + c * c
            near_j[i] = 0
        for j in range(1, k):
            cx, cy, cz, label = cent[0, j], cent[1, j], cent[2, j], np.int32(j)
            for i in range(n):
                a = cx - xs[i]
                b = cy - ys[i]
                c = cz - zs[i]
                e = a * a + b * b + c * c
                closer = e < near_d[i]
                near_d[i] = e if closer else near_d[i]
                near_j[i] = label if closer else near_j[i]
        changed = it == 0
        for i in range(n):
            changed |= labels[i] != near_j[i]
            labels[i] = near_j[i]
        if not changed or it == rounds - 1:  # settled, or no further assignment uses the centroids
            break
        sums[:, :] = 0.0
        counts[:] = 0
        for i in range(n):  # the clusters' sums in row order (float64), as the update was tuned
            j = labels[i]
            counts[j] += 1
            sums[j, 0] += np.float64(xs[i])
            sums[j, 1] += np.float64(ys[i])
            sums[j, 2] += np.float64(zs[i])
        for j in range(k):
            if counts[j] > 0:  # an emptied cluster keeps its centre
                for d in range(3):
                    cent[d, j] = np.float32(sums[j, d] / counts[j])


@compiled()
def _select_one(xs, ys, zs, quality, k, per_id, labels, out_index, out_rank, rep, rep_q, mind, taken):
    """Best-quality face per pose cluster, then `per_id` of them spread by farthest-point.

    Writes rows (of the identity) and ranks into out_index/out_rank[0:per_id]; returns how many.
    Ties go to the lower row. An identity with fewer clusters than `per_id` fills with its best
    other faces; one with fewer faces than `per_id` gets all of them."""
    n = len(xs)
    for j in range(k):
        rep[j] = -1
        rep_q[j] = -np.inf
    for i in range(n):
        j = labels[i]
        q = quality[i]
        if rep[j] < 0 or q > rep_q[j]:
            rep[j], rep_q[j] = i, q
    current, best_q = 0, -np.inf
    for j in range(k):
        mind[j] = np.inf if rep[j] >= 0 else -np.inf
        if rep[j] >= 0 and rep_q[j] > best_q:
            current, best_q = j, rep_q[j]
    got = 0
    for s in range(per_id):
        if mind[current] == -np.inf:
            break
        r = rep[current]
        out_index[got], out_rank[got] = r, s
        got += 1
        mind[current] = -np.inf
        nxt, far = 0, -np.inf
        for j in range(k):
            if rep[j] >= 0:
                a = np.float64(xs[rep[j]]) - np.float64(xs[r])
                b = np.float64(ys[rep[j]]) - np.float64(ys[r])
                c = np.float64(zs[rep[j]]) - np.float64(zs[r])
                dist = a * a + b * b + c * c  # float64, as the farthest-point rule was tuned
                if dist < mind[j]:
                    mind[j] = dist
            if mind[j] > far:
                nxt, far = j, mind[j]
        current = nxt
    if got < per_id:
        taken[:n] = False
        for t in range(got):
            taken[out_index[t]] = True
        while got < per_id:  # best remaining face, lowest row on ties
            pick, best_q = -1, -np.inf
            for i in range(n):
                if not taken[i] and (pick < 0 or quality[i] > best_q):
                    pick, best_q = i, quality[i]
            if pick < 0:
                break
            taken[pick] = True
            out_index[got], out_rank[got] = pick, got
            got += 1
    return got


@compiled(nogil=True)
def select_columns(x, y, z, quality, starts, k, per_id, iters, seed_mix, ordinal0, chosen, ranks, clusters,
                   all_labels):
    """Every identity s (rows starts[s]:starts[s + 1] of the float32 pose columns x, y, z):
    chosen[s] its rows (job rows, -1 past the last), ranks[s] their order of choice, clusters[s]
    their pose cluster; all_labels [n] receives every face's cluster unless it is empty.
    ordinal0: the job's first global row (the seeding hashes global rows)."""
    m, longest = len(starts) - 1, 0
    for s in range(m):  # scratch for the largest identity, allocated once
        longest = max(longest, starts[s + 1] - starts[s])
    cent, sums, counts = np.empty((3, k), np.float32), np.empty((k, 3)), np.empty(k, np.int64)
    d2, ws, us, mixes = np.empty(longest, np.float32), np.empty(longest), np.empty(longest), np.empty(longest, np.uint64)
    may_win = np.empty((longest + 7) // 8 * 8, np.uint8)
    words = may_win.view(np.uint64)
    labels, near_d, near_j = np.empty(longest, np.int32), np.empty(longest, np.float32), np.empty(longest, np.int32)
    rep, rep_q, mind, taken = np.empty(k, np.int64), np.empty(k), np.empty(k), np.empty(longest, np.bool_)
    for s in range(m):
        lo, hi = starts[s], starts[s + 1]
        chosen[s, :], ranks[s, :], clusters[s, :] = -1, -1, -1
        if hi == lo:
            continue
        xs, ys, zs, n = x[lo:hi], y[lo:hi], z[lo:hi], hi - lo
        _seed(xs, ys, zs, k, ordinal0 + lo, seed_mix, cent, d2, ws, us, mixes, may_win, words)
        _lloyd(xs, ys, zs, k, iters, labels[:n], cent, near_d, near_j, sums, counts)
        got = _select_one(xs, ys, zs, quality[lo:hi], k, per_id, labels[:n], chosen[s], ranks[s], rep, rep_q,
                          mind, taken)
        for t in range(got):
            clusters[s, t] = labels[chosen[s, t]]
            chosen[s, t] += lo
        if len(all_labels):
            all_labels[lo:hi] = labels[:n]


@compiled()
def increasing_from(a, b, c, last_a, last_b, last_c) -> bool:
    """Whether rows (a, b, c) increase strictly, lexicographically, from the row (last_a, ...)."""
    for i in range(len(a)):
        if a[i] < last_a or (a[i] == last_a and (b[i] < last_b or (b[i] == last_b and c[i] <= last_c))):
            return False
        last_a, last_b, last_c = a[i], b[i], c[i]
    return True


def select_all(pose: np.ndarray, quality: np.ndarray, starts: np.ndarray, k: int, per_id: int, iters: int,
               seed_mix: np.uint64, ordinal0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every identity: (labels [n], chosen [m, per_id] rows or -1, rank [m, per_id]).

    pose: [n, 3] sorted by identity (used as float32); starts: [m + 1] row offsets of the identities."""
    pose = np.asarray(pose, np.float32)
    x, y, z = (np.ascontiguousarray(pose[:, d]) for d in range(3))
    m = len(starts) - 1
    chosen, ranks, clusters = (np.empty((m, per_id), np.int64) for _ in range(3))
    labels = np.empty(len(pose), np.int32)
    select_columns(x, y, z, quality_column(quality), np.asarray(starts, np.int64), k, per_id, iters, seed_mix,
                   ordinal0, chosen, ranks, clusters, labels)
    return labels.astype(np.int64), chosen, ranks


def quality_column(quality: np.ndarray) -> np.ndarray:
    """float32 or float64 as given (comparisons are the same after widening), else float64."""
    quality = np.asarray(quality)
    return np.ascontiguousarray(quality if quality.dtype in (np.float32, np.float64) else quality.astype(np.float64))


def seed_mix(seed: int) -> np.uint64:
    return np.uint64((seed * 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF)
