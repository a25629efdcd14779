"""Every pair of unit vectors at or above a cosine, exactly, by blocked matrix products (ours).

All pairs are compared: a block of rows times a block of columns is one matrix product, so the
work is the clip count squared, on the CPU's matrix units. Where torch is installed and the
input is large, the products run in bfloat16 if that is faster here (AMX / AVX512-BF16: about
4x float32 on the 2-core benchmark machine) as a filter only: a pair is a candidate when its
product clears the threshold less MARGIN, and every candidate's cosine is then computed in
float32 the way `cosines` computes it, which alone decides. So the pairs do not depend on the
machine, the library or the arithmetic that filtered them.

MARGIN covers bfloat16 (8 significant bits, unit roundoff u = 2^-8): rounding both unit inputs
moves a product by at most (2u + u^2) * sum |a_i b_i| <= 2u + u^2 (Cauchy-Schwarz), the float32
sum adds d * 2^-24, and rounding the product to bfloat16 u * |s|: under 0.012 for |s| <= 1.
Without torch, numpy's float32 products (BLAS) run the same blocks, about 3x slower here.
"""
from __future__ import annotations

import functools
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

MARGIN = 0.02          # how far under the threshold a filtered product still makes a candidate
ROWS, COLS = 4096, 4096  # one product's block: 16M products, 32 MB in bfloat16, reused (2048 x 8192: 15% slower)
TORCH_FROM = 20_000    # vectors; below, importing torch (about 1 s) costs more than it saves


def cat(parts, dtype):
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def cosines(emb: np.ndarray, a: np.ndarray, b: np.ndarray, block: int = 8192) -> np.ndarray:
    """emb[a] . emb[b] row by row in float32, in blocks gathered into two reused buffers (fresh
    pages are the slow part of a large gather, not the arithmetic)."""
    out = np.empty(len(a), np.float32)
    rows = min(block, len(a))
    left, right = np.empty((rows, emb.shape[1]), emb.dtype), np.empty((rows, emb.shape[1]), emb.dtype)
    for begin in range(0, len(a), block):
        end = min(begin + block, len(a))
        m = end - begin
        np.take(emb, a[begin:end], axis=0, out=left[:m])
        np.take(emb, b[begin:end], axis=0, out=right[:m])
        out[begin:end] = np.einsum("ij,ij->i", left[:m], right[:m])
    return out


@dataclass
class PairSearch:
    """What similar_pairs did, for the log and the benchmark."""
    arithmetic: str = ""   # the filter's: "bfloat16 (torch)", "float32 (torch)" or "float32 (numpy)"
    candidates: int = 0    # pairs that cleared the filter
    pairs: int = 0         # pairs whose float32 cosine clears the threshold
    seconds: float = 0.0


def similar_pairs(emb: np.ndarray, threshold: float, search: PairSearch | None = None):
    """(a, b, cosine) of every pair a < b of rows of emb (unit float32 vectors) whose float32
    cosine is at least threshold, ordered by a, then b."""
    started = time.perf_counter()
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    search = search if search is not None else PairSearch()
    torch = _torch() if len(emb) >= TORCH_FROM or "torch" in sys.modules else None
    dtype = _faster_dtype(torch, emb.shape[1]) if torch is not None else None
    search.arithmetic = _name(dtype)
    if dtype is not None:
        a, b = _candidates_torch(torch, emb, threshold - MARGIN, dtype)
    else:
        a, b = _candidates_numpy(emb, threshold - MARGIN)
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    s = cosines(emb, a, b)
    keep = s >= threshold
    search.candidates, search.pairs = len(a), int(keep.sum())
    search.seconds = time.perf_counter() - started
    return a[keep], b[keep], s[keep]


def large_input_arithmetic(dim: int) -> str:
    """The filter's arithmetic for TORCH_FROM vectors or more of this width, here."""
    torch = _torch()
    return _name(_faster_dtype(torch, dim) if torch is not None else None)


def _name(dtype) -> str:
    return "float32 (numpy)" if dtype is None else f"{str(dtype).removeprefix('torch.')} (torch)"


_setup: threading.Thread | None = None  # the torch import started by set_up_in_background


def set_up_in_background(n_vectors: int) -> None:
    """Start importing torch (about 1 s) on a thread of its own when a search of n_vectors will
    use it, so that it overlaps what the caller reads first (DuckDB reads without the GIL). The
    search waits for it; nothing else changes. Not a daemon: an exit waits for the import."""
    global _setup
    if n_vectors >= TORCH_FROM and _setup is None and "torch" not in sys.modules:
        _setup = threading.Thread(target=_import_torch, name="mfhq-pairs-setup")
        _setup.start()


def _torch():
    if _setup is not None:
        _setup.join()
    return _import_torch()


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


@functools.cache
def _faster_dtype(torch, dim: int):
    """bfloat16 where the matrix units make it faster than float32 here (most x86 CPUs since
    2020, Apple and ARM with BF16), else float32: the pairs are the same either way."""
    dtypes = (torch.bfloat16, torch.float32)
    x = {dtype: torch.ones(4096, dim, dtype=dtype) for dtype in dtypes}
    out = {dtype: torch.empty(1024, 4096, dtype=dtype) for dtype in dtypes}
    best = dict.fromkeys(dtypes, float("inf"))
    # Interleaved, the best of five each: three of each in a row once picked float32, 4x slower
    # here, for a whole run, when another process's work landed on the bfloat16 ones.
    for _ in range(5):
        for dtype in dtypes:
            started = time.perf_counter()
            torch.matmul(x[dtype][:1024], x[dtype].T, out=out[dtype])
            best[dtype] = min(best[dtype], time.perf_counter() - started)
    return torch.bfloat16 if best[torch.bfloat16] < best[torch.float32] else torch.float32


def _blocks(n: int):
    """(row begin, row end, column begin, column end) of the blocks on and above the diagonal."""
    for r in range(0, n, ROWS):
        for c in range(r, n, COLS):
            yield r, min(r + ROWS, n), c, min(c + COLS, n)


def _keep_above_diagonal(rows, cols, a_all, b_all, r, c):
    rows, cols = rows + r, cols + c
    above = cols > rows
    a_all.append(rows[above])
    b_all.append(cols[above])


def _candidates_torch(torch, emb: np.ndarray, low: float, dtype):
    x = torch.from_numpy(emb).to(dtype)
    xt = x.T.contiguous()
    buf = torch.empty(ROWS * COLS, dtype=dtype)
    # Positive bfloat16 values order like their bits read as int16 (negative ones read negative):
    # a row's largest product is then an integer maximum, 3x faster than a bfloat16 one.
    bits = low > 0 and dtype == torch.bfloat16
    if bits:
        low_t = torch.tensor(low, dtype=torch.float32).to(dtype)
        floor = int(low_t.view(torch.int16)) - (1 if float(low_t) > low else 0)  # rounded down: never fewer
    a_all, b_all = [], []
    for r, r_end, c, c_end in _blocks(len(emb)):
        block = buf[:(r_end - r) * (c_end - c)].view(r_end - r, c_end - c)
        torch.matmul(x[r:r_end], xt[:, c:c_end], out=block)
        if c == r:
            block[:, :r_end - r].diagonal().fill_(-1)  # a vector and itself
        if bits:
            block, limit = block.view(torch.int16), floor
        else:
            limit = low
        hot = torch.nonzero(block.amax(1) >= limit).ravel()
        if len(hot):
            rows, cols = torch.nonzero(block[hot] >= limit).unbind(1)
            _keep_above_diagonal(hot[rows].numpy(), cols.numpy(), a_all, b_all, r, c)
    return cat(a_all, np.int64), cat(b_all, np.int64)


def _candidates_numpy(emb: np.ndarray, low: float):
    xt = np.ascontiguousarray(emb.T)
    buf = np.empty(ROWS * COLS, np.float32)
    a_all, b_all = [], []
    for r, r_end, c, c_end in _blocks(len(emb)):
        block = buf[:(r_end - r) * (c_end - c)].reshape(r_end - r, c_end - c)
        np.matmul(emb[r:r_end], xt[:, c:c_end], out=block)
        if c == r:
            np.fill_diagonal(block[:, :r_end - r], -1)
        hot = np.flatnonzero(block.max(1) >= low)
        if len(hot):
            rows, cols = np.nonzero(block[hot] >= low)
            _keep_above_diagonal(hot[rows], cols, a_all, b_all, r, c)
    return cat(a_all, np.int64), cat(b_all, np.int64)
