"""Per-identity pose over-clustering and 8-face selection over a stream of faces.

Faces arrive sorted by identity; the stream is cut into jobs at identity boundaries and each job
goes to the compiled kernels (`mfhq.curate.kernels`) on one of `workers` threads. A face's
k-means seeding draws from a hash of (seed, its global row number, step), so the result is the
same for any batch size and any number of threads.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from mfhq.curate import kernels

POSE = ("yaw", "pitch", "roll")


def identity_starts(seg: np.ndarray) -> np.ndarray:
    """Row offsets [m + 1] of the runs of equal identity codes in seg."""
    cuts = np.flatnonzero(seg[1:] != seg[:-1]) + 1
    return np.concatenate(([0], cuts, [len(seg)])).astype(np.int64) if len(seg) else np.zeros(1, np.int64)


def select_rows(x: np.ndarray, y: np.ndarray, z: np.ndarray, quality: np.ndarray, starts: np.ndarray, k: int,
                per_id: int, iters: int, seed: int, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole identities (rows starts[s]:starts[s + 1] of float32 pose columns x, y, z): (rows
    chosen, their rank, their pose cluster), job-local; offset: the job's first global row."""
    m = len(starts) - 1
    chosen, ranks, clusters = (np.empty((m, per_id), np.int64) for _ in range(3))
    kernels.select_columns(x, y, z, quality, starts, k, per_id, iters, kernels.seed_mix(seed), offset, chosen,
                           ranks, clusters, np.empty(0, np.int32))
    ok = chosen >= 0
    return chosen[ok], ranks[ok], clusters[ok]


def select_job(pose: np.ndarray, quality: np.ndarray, seg: np.ndarray, k: int, per_id: int, iters: int,
               seed: int, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One job of whole identities: (rows chosen, their rank, their pose cluster), job-local.

    pose [n, 3] (used as float32); seg: identity code per row, equal codes contiguous; offset:
    the job's first global row."""
    pose = np.asarray(pose, np.float32)
    x, y, z = (np.ascontiguousarray(pose[:, d]) for d in range(3))
    return select_rows(x, y, z, kernels.quality_column(quality), identity_starts(np.asarray(seg)), k, per_id,
                       iters, seed, offset)


class _JobBuffer:
    """A job's columns as numpy arrays, filled batch by batch and reused from job to job: fresh
    memory is slow to fault in (on some machines more than all the copying), so these arrays
    are allocated once, at the size of a job, and only grow for an identity larger than that."""

    def __init__(self):
        self.rows, self.columns = 0, {}

    def _room(self, name: str, dtype: np.dtype, end: int) -> np.ndarray:
        column = self.columns.get(name)
        if column is None or len(column) < end or column.dtype != dtype:
            grown = np.empty(max(end, 2 * len(column) if column is not None else 0), dtype)
            if column is not None:
                grown[:self.rows] = column[:self.rows]
            self.columns[name] = column = grown
        return column[self.rows:end]

    def append(self, batch: pa.RecordBatch, keys: list[str], identity_of: np.ndarray) -> None:
        end = self.rows + batch.num_rows
        codes = batch.column(keys[0]).to_numpy()
        np.take(identity_of, codes, out=self._room("identity", identity_of.dtype, end), mode="clip")
        for name in keys:
            values = batch.column(name).to_numpy()
            self._room(name, values.dtype, end)[:] = values
        for name in POSE:  # the kernels run in float32, as the face table stores pose
            self._room(name, np.dtype(np.float32), end)[:] = batch.column(name).to_numpy()
        quality = batch.column("quality").to_numpy()
        self._room("quality", kernels.quality_column(quality[:0]).dtype, end)[:] = quality
        self.rows = end

    def take_tail_of(self, other: "_JobBuffer", cut: int) -> None:
        """This buffer's rows become the other's from row cut on (an identity that goes on)."""
        self.rows = 0
        for name, column in other.columns.items():
            self._room(name, column.dtype, max(len(column), other.rows - cut))
            self.columns[name][:other.rows - cut] = column[cut:other.rows]
        self.rows = other.rows - cut

    def last_identity_start(self) -> int:
        identity = self.columns["identity"][:self.rows]
        return int(np.searchsorted(identity, identity[-1]))


JOB_FACES = 1 << 16  # small jobs keep the buffers small, warm, and the kernel busy while the next is read


class NotInKeyOrder(Exception):
    """A stream that was to arrive in key order did not."""


def stream_select(batches, k: int, per_id: int, iters: int, seed: int, chunk_faces: int, workers: int,
                  keys: list[str], identity_of: np.ndarray, check_order: bool = False):
    """Select faces from a stream of Arrow record batches sorted by keys[0], a code whose value v
    belongs to identity identity_of[v] (non-decreasing in v). check_order: raise NotInKeyOrder
    unless the three keys increase strictly, from row to row: the one order an ORDER BY of the
    keys gives, so that a stream that passes selects exactly what the sorted one does.

    The stream is cut into jobs of about min(chunk_faces, JOB_FACES) faces at identity boundaries
    (the rows of an identity that continues in the next batch wait for it). `workers` threads
    run one job each (the kernels hold no GIL) while this thread reads the next, so memory holds
    workers + 1 jobs, not the table. Yields, per job and in order, the chosen rows' `keys`
    columns (numeric) with sample_rank and pose_cluster."""
    workers = max(1, workers)
    free, running, offset = [_JobBuffer() for _ in range(workers + 1)], deque(), 0
    buf, job_faces = free.pop(), min(chunk_faces, JOB_FACES)
    job = dict(keys=keys, k=k, per_id=per_id, iters=iters, seed=seed)
    last = (-1, -1, -1) if check_order else None
    with ThreadPoolExecutor(workers) as pool:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if last is not None:
                last = _check_order(batch, keys, last)
            buf.append(batch, keys, identity_of)
            cut = buf.last_identity_start() if buf.rows >= job_faces else 0
            if cut == 0:
                continue
            if len(running) == workers:
                done, done_buf = running.popleft()
                yield done.result()
                free.append(done_buf)
            running.append((pool.submit(_job, buf, cut, offset, **job), buf))
            offset += cut
            free[-1].take_tail_of(buf, cut)
            buf = free.pop()
        if buf.rows:
            running.append((pool.submit(_job, buf, buf.rows, offset, **job), buf))
        for done, _ in running:
            yield done.result()


def _check_order(batch: pa.RecordBatch, keys: list[str], last: tuple) -> tuple:
    a, b, c = (batch.column(name).to_numpy() for name in keys)
    if not kernels.increasing_from(a, b, c, *last):
        raise NotInKeyOrder(f"rows not in the order of {keys}")
    return int(a[-1]), int(b[-1]), int(c[-1])


def _job(buf: _JobBuffer, rows: int, offset: int, keys: list[str], k: int, per_id: int, iters: int,
         seed: int) -> pa.Table:
    cols = {name: column[:rows] for name, column in buf.columns.items()}
    index, rank, cluster = select_rows(cols["yaw"], cols["pitch"], cols["roll"], cols["quality"],
                                       identity_starts(cols["identity"]), k, per_id, iters, seed, offset)
    picked = {name: pa.array(cols[name][index]) for name in keys}
    return pa.table({**picked, "sample_rank": pa.array(rank.astype(np.int16)),
                     "pose_cluster": pa.array(cluster.astype(np.int16))})
