"""Per-identity pose over-clustering and 8-face selection over a stream of faces.

Faces arrive sorted by identity; the stream is cut into jobs at identity boundaries and each job
goes to the compiled kernels (`mfhq.curate.kernels`), which run one identity per thread. A face's
k-means seeding draws from a hash of (seed, its global row number, step), so the result is the
same for any batch size and any number of threads.
"""
from __future__ import annotations

import numpy as np

from mfhq.curate import kernels


def select_job(pose: np.ndarray, quality: np.ndarray, seg: np.ndarray, k: int, per_id: int, iters: int,
               seed: int, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One job of whole identities: (rows chosen, their rank, their pose cluster), job-local.

    seg: identity code per row, non-decreasing from 0; offset: the job's first global row."""
    starts = np.searchsorted(seg, np.arange(int(seg[-1]) + 2)) if len(seg) else np.zeros(1, np.int64)
    labels, chosen, ranks = kernels.select_all(np.ascontiguousarray(pose, np.float32),
                                               np.ascontiguousarray(quality, np.float64),
                                               starts.astype(np.int64), k, per_id, iters, kernels.seed_mix(seed), offset)
    ok = chosen >= 0
    index = chosen[ok]
    return index, ranks[ok], labels[index]


def stream_select(batches, k: int, per_id: int, iters: int, seed: int, chunk_faces: int, workers: int,
                  keys: list[str]):
    """Select faces from a stream of Arrow record batches sorted by `id_code`.

    The stream is cut into jobs of about `chunk_faces` faces at identity boundaries (the rows of
    an identity that continues in the next batch wait for it), so memory holds one job, not the
    table. `workers` threads share a job's identities. Yields, per job and in order, the chosen
    rows' `keys` columns with sample_rank and pose_cluster."""
    import numba
    import pyarrow as pa

    def jobs():
        pending, rows_before = [], 0
        for batch in batches:
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            if sum(b.num_rows for b in pending) < chunk_faces:
                continue
            table = pa.Table.from_batches(pending)
            seg = table.column("id_code").to_numpy()
            cut = int(np.searchsorted(seg, seg[-1]))  # the last identity may go on in the next batch
            if cut == 0:
                continue
            yield table.slice(0, cut), rows_before
            rows_before += cut
            pending = table.slice(cut).to_batches()
        if pending:
            table = pa.Table.from_batches(pending)
            if table.num_rows:
                yield table, rows_before

    threads = numba.get_num_threads()
    numba.set_num_threads(max(1, min(workers, numba.config.NUMBA_NUM_THREADS)))
    try:
        for table, offset in jobs():
            seg = table.column("id_code").to_numpy().astype(np.int64)
            pose = np.stack([table.column(c).to_numpy() for c in ("yaw", "pitch", "roll")], 1)
            quality = table.column("quality").to_numpy()
            index, rank, labels = select_job(pose, quality, seg - seg[0], k, per_id, iters, seed, offset)
            picked = table.select(keys).take(pa.array(index))
            picked = picked.append_column("sample_rank", pa.array(rank.astype(np.int16)))
            yield picked.append_column("pose_cluster", pa.array(labels.astype(np.int16)))
    finally:
        numba.set_num_threads(threads)
