"""The worker process: loads the models once, then processes clips sent by the executor.

Messages to the parent: ("ready", provenance) | ("fatal", message) |
("phase", clip_key, phase) | ("result", clip_key, face_rows, clip_row).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path


def worker_main(conn, cfg_dict: dict, run_dir: str, models_dir: str | None) -> None:
    # One thread per library per process: parallelism comes from processes, and oversubscribed
    # BLAS/OpenMP pools make a 2-core machine crawl.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    logging.basicConfig(level=logging.WARNING)
    import cv2

    cv2.setNumThreads(1)
    from mfhq.config import config_from_dict
    from mfhq.pipeline import ClipProcessor

    try:
        processor = ClipProcessor(config_from_dict(cfg_dict), Path(run_dir), models_dir)
        processor.setup()
    except Exception as exc:  # missing weights, unknown backend: the run cannot go on
        conn.send(("fatal", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", processor.provenance))
    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        _, clip = message
        faces, row = processor.process(clip, lambda phase: conn.send(("phase", clip.key, phase)))
        conn.send(("result", clip.key, faces, row))
