"""The worker process, under its runner's Watchdog: loads the models once, then processes the
clips it is sent.

Messages to its parent: ("ready", provenance) | ("fatal", message) | ("oom", message) | ("diskfull", message) |
("phase", clip_key, phase, *other_keys) | ("result", clip_key, face_rows, clip_row) | ("log", record) (log_relay.py).
Phases "open", "decode" and "process" say what the main thread does ("process" names every clip
whose chunks are in the models together, batched); "open-ahead", "read" and "read-done" come
from the reader thread (mfhq.decode_ahead.DecodeAhead, mfhq.worker.clip_open.ReadAcross), so
sends are serialised by a lock, and each is sent before the work it names begins: whatever the
worker was doing when it died, its parent had been told. It is sent
("clips", [Clip], read_across) | ("stop",).
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from pathlib import Path


def quiet_process() -> None:
    """Signals belong to the driver: Ctrl-C reaches the whole process group, and a runner or a
    worker that raised KeyboardInterrupt would print a traceback. If the parent dies, so does
    this process (one stuck in native code would otherwise outlive it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (AttributeError, OSError):
        pass


def exit_now(conn) -> None:
    """End a child process that has handed back everything it owes (every clip's result sent,
    every shard's files renamed and its marker written: a worker or runner only reads "stop"
    between batches) without the interpreter's teardown: with torch, cv2 and onnxruntime loaded,
    that teardown (module clean-up, library atexit hooks) took about 0.3 s per process, after the
    last clip, on every run. Its log records have already gone up the pipe (sent synchronously);
    the streams are flushed for anything a library printed."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    conn.close()
    os._exit(0)


def worker_process_main(conn, cfg_dict: dict, run_dir: str, models_dir: str | None, kind: str = "extract",
                        log_level: int = logging.WARNING) -> None:
    """kind: extract (clips through every stage) or materialize (sampled faces' crops and masks).
    Log records at log_level and above go to the parent as ("log", record) messages."""
    quiet_process()
    from mfhq.worker.log_relay import Sender, send_logs_to_parent

    send = Sender(conn)  # the main thread, the decode-ahead thread and the log handler share the pipe
    send_logs_to_parent(send, log_level)
    # One thread per library per process: parallelism comes from processes, and oversubscribed
    # BLAS/OpenMP pools make a 2-core machine crawl.
    from mfhq.models.runtime import limit_threads
    from mfhq.worker.heap import give_back_freed_heap

    limit_threads()
    from mfhq.config import config_from_dict
    from mfhq.manifest.io import is_disk_full
    if kind == "materialize":
        from mfhq.worker.materialize_clip import MaterializeProcessor as ClipProcessor
    else:
        from mfhq.worker.clip import ClipProcessor
    from mfhq.errors import is_out_of_memory
    from mfhq.worker.memory import out_of_memory_message

    cfg = config_from_dict(cfg_dict)
    processor = None
    try:
        try:
            processor = ClipProcessor(cfg, Path(run_dir), models_dir)
            processor.setup()
            give_back_freed_heap()
        except Exception as exc:  # missing weights, unknown backend, no memory: the run cannot go on
            if is_out_of_memory(exc):
                send(("oom", out_of_memory_message(getattr(processor, "loading", None), exc, cfg.run)))
            else:
                send(("fatal", f"{type(exc).__name__}: {exc}"))
            return
        send(("ready", processor.provenance))

        def on_result(clip, faces, row) -> None:
            send(("result", clip.key, faces, row))
            give_back_freed_heap()  # the clip's frames and crops: not carried into the next peak

        while True:
            message = conn.recv()
            if message[0] == "stop":
                exit_now(conn)
            try:
                on_phase = lambda key, phase, *others: send(("phase", key, phase, *others))  # noqa: E731
                processor.process_many(message[1], on_phase, on_result, read_across=message[2])
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                send(("diskfull", f"{exc.filename or run_dir}: {exc.strerror or exc}"))
                return
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the parent is gone (stopped or killed): nothing to report to
